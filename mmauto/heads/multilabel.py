"""Multi-label classification: one sigmoid per label, labels joined with `|` at `threshold`."""

from __future__ import annotations

import numpy as np

from mmauto.heads.base import HEADS, Head
from mmauto.heads.classification import _auc


@HEADS.register("multilabel")
class MultilabelHead(Head):
    """Independent sigmoids; serves `probabilities` (N, L) and `label`, the labels at or above
    `threshold` joined by `|`."""

    activation = "sigmoid"
    default_objective = "val_loss"
    main_metric = "macro_f1"

    @classmethod
    def accepts(cls, task, classes):
        return task == "multilabel"

    @property
    def units(self):
        return len(self.classes)

    def loss(self):
        import keras

        return keras.losses.BinaryCrossentropy()

    def metrics(self):
        import keras

        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=self.threshold), keras.metrics.AUC(name="auc", multi_label=True)]

    def _indicators(self, values) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.zeros((len(values), len(self.classes)), "float32")
        for r, labels in enumerate(values):
            for label in labels:
                if label in index:
                    y[r, index[label]] = 1.0
        return y

    def encode(self, values):
        return self._indicators(values)

    def serve(self, y):
        import tensorflow as tf

        names = tf.where(y >= self.threshold, tf.broadcast_to(tf.constant(self.classes), tf.shape(y)), "")
        joined = tf.strings.reduce_join(names, axis=1, separator="|")
        joined = tf.strings.regex_replace(tf.strings.regex_replace(joined, r"\|+", "|"), r"^\||\|$", "")
        return {self.key("probabilities"): y, self.key("label"): joined}

    def expected(self, y):
        return np.asarray(y, "float32")

    def output_specs(self):
        return {self.key("probabilities"): {"dtype": "float32", "shape": [None, len(self.classes)]},
                self.key("label"): {"dtype": "string", "shape": [None], "separator": "|"}}

    def card(self):
        return {**super().card(), "threshold": self.threshold}

    def columns(self, outputs):
        labels = outputs[self.key("label")]
        cols = {f"{self.prefix}prediction": [x.decode() if isinstance(x, bytes) else str(x) for x in labels]}
        probs = outputs[self.key("probabilities")]
        cols.update({f"{self.prefix}prob_{c}": probs[:, i] for i, c in enumerate(self.classes)})
        return cols

    def score(self, values, outputs):
        from sklearn.metrics import accuracy_score, f1_score

        probs = np.asarray(outputs[self.key("probabilities")])
        y = self._indicators(values).astype(bool)
        pred = probs >= self.threshold
        aucs = [a for a in (_auc(y[:, i], probs[:, i]) for i in range(len(self.classes))) if a is not None]
        return {"rows": int(len(y)), "subset_accuracy": float(accuracy_score(y, pred)),
                "label_accuracy": float((pred == y).mean()),
                "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
                "roc_auc": float(np.mean(aucs)) if aucs else None}
