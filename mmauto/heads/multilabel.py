"""Multi-label classification: one sigmoid per label, labels joined with `|` at their thresholds."""

from __future__ import annotations

import numpy as np

from mmauto.heads import calibration as cal
from mmauto.heads.base import HEADS, Head, label_columns
from mmauto.heads.classification import _auc
from mmauto.heads.scaling import member_temperature, shrunk_temperature


@HEADS.register("multilabel")
class MultilabelHead(Head):
    """Independent sigmoids; serves `probabilities` (N, L), temperature-scaled with one shared
    temperature when fitted, and `label`, the labels at or above their threshold joined by `|`
    (one threshold per label chosen on validation for F1, or `train.threshold` for all when pinned)."""

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

    @property
    def thresholds(self) -> list[float]:
        """One threshold per label (the served label list's)."""
        return [float(t) for t in self.state.get("thresholds") or [self.threshold] * len(self.classes)]

    def serve(self, y):
        import tensorflow as tf

        t = self.temperature
        probs = y if t is None else cal.tf_sigmoid_scaled(y, t)
        names = tf.where(probs >= tf.constant(self.thresholds, tf.float32), tf.broadcast_to(tf.constant(self.classes), tf.shape(probs)), "")
        joined = tf.strings.reduce_join(names, axis=1, separator="|")
        joined = tf.strings.regex_replace(tf.strings.regex_replace(joined, r"\|+", "|"), r"^\||\|$", "")
        return {self.key("probabilities"): probs, self.key("label"): joined}

    def expected(self, y):
        y = np.asarray(y, "float32")
        t = self.temperature
        return y if t is None else cal.sigmoid(cal.sigmoid_logits(y) / t).astype("float32")

    def predicted(self, probs: np.ndarray) -> np.ndarray:
        """(N, L) booleans: the labels served in `label`."""
        return np.asarray(probs) >= np.asarray(self.thresholds, "float32")

    def calibrate(self, y, targets, train):
        truth = np.asarray(targets).astype(int)
        z = cal.sigmoid_logits(y)
        # One temperature shared by the labels: one parameter fits on small validation splits;
        # ECE over every (row, label) probability against the label being present.
        nll, ece_at = (lambda t: cal.sigmoid_nll(z, truth, t)), (lambda t: cal.ece(cal.sigmoid(z / t), truth))
        info = cal.temperature_report(z, nll, ece_at, train.calibrate)
        if train.calibrate is True:  # served shrunk by its evidence, as the other heads' scalings are
            info = shrunk_temperature(info, truth.size, nll, ece_at)
        self.state["calibration"] = info
        if train.threshold is None:
            probs = self.expected(y)
            self.state["thresholds"] = [cal.choose_threshold(probs[:, i], truth[:, i], "f1", self.threshold) for i in range(len(self.classes))]
            self.state["threshold_chosen_for"] = "f1"
        else:
            self.state["thresholds"], self.state["threshold_chosen_for"] = [float(train.threshold)] * len(self.classes), None
        return {"calibration": info, "thresholds": dict(zip(self.classes, self.thresholds)),
                "threshold_chosen_for": self.state["threshold_chosen_for"]}

    def member_scaling(self, y, targets):
        truth = np.asarray(targets).astype(int)
        z = cal.sigmoid_logits(np.asarray(y)[:, : self.units])
        t = member_temperature(lambda t: cal.sigmoid_nll(z, truth, t), truth.size)  # one shared, as `calibrate` fits
        return [{"kind": "sigmoid", "start": 0, "stop": self.units, "temperature": t, "eps": cal.EPS_SIGMOID}]

    def output_specs(self):
        return {self.key("probabilities"): {"dtype": "float32", "shape": [None, len(self.classes)]},
                self.key("label"): {"dtype": "string", "shape": [None], "separator": "|"}}

    def card(self):
        # `threshold`: the default (or pinned) one; `thresholds`: what `label` uses, per label.
        return {**super().card(), "threshold": self.threshold, "thresholds": dict(zip(self.classes, self.thresholds)),
                "threshold_chosen_for": self.state.get("threshold_chosen_for"), "calibration": self.calibration}

    def contribution(self, full, without):
        """The mean absolute change of the labels' probabilities when the input is missing."""
        import tensorflow as tf

        return tf.reduce_mean(tf.abs(full[self.key("probabilities")] - without[self.key("probabilities")]), axis=1)

    def columns(self, outputs):
        return label_columns(self, outputs)

    def score(self, values, outputs):
        from sklearn.metrics import accuracy_score, f1_score

        probs = np.asarray(outputs[self.key("probabilities")])
        y = self._indicators(values).astype(bool)
        pred = self.predicted(probs)
        aucs = [a for a in (_auc(y[:, i], probs[:, i]) for i in range(len(self.classes))) if a is not None]
        return {"rows": int(len(y)), "subset_accuracy": float(accuracy_score(y, pred)),
                "label_accuracy": float((pred == y).mean()),
                "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
                "roc_auc": float(np.mean(aucs)) if aucs else None,
                "ece": cal.ece(probs, y), "ece_floor": cal.ece_floor(probs)}  # every (row, label) probability against the label being present
