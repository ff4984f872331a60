"""Single-label classification with three or more classes: softmax over the classes."""

from __future__ import annotations

from typing import Optional

import numpy as np

from mmauto.heads import calibration as cal
from mmauto.heads import scaling
from mmauto.heads.base import HEADS, Head, label_columns


def _auc(y: np.ndarray, score: np.ndarray) -> Optional[float]:
    """Binary ROC-AUC, or None where only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(bool)
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else None


def _normalised(probs: np.ndarray) -> np.ndarray:
    """Probabilities clipped away from 0 and summing to 1 in float64 (served float32 rows sum
    to 1 only within rounding, which scikit-learn's log loss warns about)."""
    p = np.clip(probs, 1e-12, 1.0)
    return p / p.sum(axis=1, keepdims=True)


@HEADS.register("multiclass")
class MulticlassHead(Head):
    """Softmax over `classes`; serves `probabilities` (N, C) and the arg-max `label`."""

    activation = "softmax"
    default_objective = "val_accuracy"
    main_metric = "accuracy"
    lower_is_better = ("log_loss",)

    @classmethod
    def accepts(cls, task, classes):
        return task == "classification" and classes is not None and len(classes) > 2

    @property
    def units(self):
        return len(self.classes)

    def loss(self):
        import keras

        return keras.losses.SparseCategoricalCrossentropy()

    def metrics(self):
        import keras

        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def class_weight(self, y):
        from sklearn.utils.class_weight import compute_class_weight

        y = np.asarray(y).reshape(-1).astype(int)
        present = np.unique(y)
        weights = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y).tolist()))
        return {i: weights.get(i, 0.0) for i in range(len(self.classes))}

    def _index(self, values) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[v] for v in values], "int32")

    def encode(self, values):
        return self._index(values)

    def probabilities(self, y):
        """(N, C) served probabilities from the model's output (TF): temperature-, vector- or
        matrix-scaled when fitted."""
        t, v, m = self.temperature, self.vector_scaling, self.matrix_scaling
        if m is not None:
            return scaling.tf_softmax_matrix(y, *m)
        if v is not None:
            return scaling.tf_softmax_vector(y, *v)
        return y if t is None else cal.tf_softmax_scaled(y, t)

    def serve(self, y):
        import tensorflow as tf

        probs = self.probabilities(y)
        labels = tf.gather(tf.constant(self.classes), tf.argmax(probs, axis=1))
        return {self.key("probabilities"): probs, self.key("label"): labels}

    def expected(self, y):
        y = np.asarray(y, "float32")
        t, v, m = self.temperature, self.vector_scaling, self.matrix_scaling
        if m is not None:
            return cal.softmax(cal.softmax_logits(y) @ m[0] + m[1]).astype("float32")
        if v is not None:
            return cal.softmax(cal.softmax_logits(y) * v[0] + v[1]).astype("float32")
        return y if t is None else cal.softmax(cal.softmax_logits(y) / t).astype("float32")

    def predicted(self, probs: np.ndarray) -> np.ndarray:
        """The class index served as `label`, from served probabilities (numpy)."""
        return np.asarray(probs).argmax(axis=1)

    def ece(self, probs: np.ndarray, index: np.ndarray) -> float:
        """ECE on the top-class probability (heads/calibration.py)."""
        probs = np.asarray(probs, "float64")
        return cal.ece(probs.max(axis=1), probs.argmax(axis=1) == index)

    def ece_floor(self, probs: np.ndarray) -> float:
        """What `ece` would read for a perfectly calibrated model with these probabilities on
        this many rows (heads/calibration.py `ece_floor`)."""
        return cal.ece_floor(np.asarray(probs, "float64").max(axis=1))

    def calibrate(self, y, targets, train):
        index = np.asarray(targets).reshape(-1).astype(int)
        z = cal.softmax_logits(y)
        info = cal.temperature_report(z, lambda t: cal.softmax_nll(z, index, t),
                                      lambda t: self.ece(cal.softmax(z / t), index), train.calibrate in (True, "temperature"))
        if train.calibrate in (True, "vector", "matrix"):
            info = scaling.scaling_report(z, index, "softmax", train.calibrate, info, lambda s: self.ece(cal.softmax(s), index))
        self.state["calibration"] = info
        return {"calibration": info}

    def member_scaling(self, y, targets):
        index = np.asarray(targets).reshape(-1).astype(int)
        z = cal.softmax_logits(np.asarray(y)[:, : self.units])
        t = scaling.member_temperature(lambda t: cal.softmax_nll(z, index, t), len(index))
        return [{"kind": "softmax", "start": 0, "stop": self.units, "temperature": t, "eps": cal.EPS_SOFTMAX}]

    def card(self):
        return {**super().card(), "calibration": self.calibration}

    def output_specs(self):
        return {self.key("probabilities"): {"dtype": "float32", "shape": [None, len(self.classes)]},
                self.key("label"): {"dtype": "string", "shape": [None]}}

    def columns(self, outputs):
        return label_columns(self, outputs)

    def contribution(self, full, without):
        """The predicted class's probability with the input, minus without it."""
        import tensorflow as tf

        p, q = full[self.key("probabilities")], without[self.key("probabilities")]
        idx = tf.argmax(p, axis=1, output_type=tf.int32)
        return tf.gather(p, idx, batch_dims=1) - tf.gather(q, idx, batch_dims=1)

    def check_values(self, values):
        unknown = sorted({v for v in values if v not in self.classes})
        return f"target '{self.target}' holds label(s) the model never saw: {', '.join(unknown[:5])}" if unknown else None

    def score(self, values, outputs):
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

        probs = np.asarray(outputs[self.key("probabilities")], "float64")
        n = len(self.classes)
        y, pred = self._index(values), self.predicted(probs)
        labels = list(range(n))
        prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        aucs = [_auc(y == i, probs[:, i]) for i in (range(1, 2) if n == 2 else range(n))]
        aucs = [a for a in aucs if a is not None]
        return {
            "rows": int(len(y)),
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
            "log_loss": float(log_loss(y, _normalised(probs), labels=labels)),
            "roc_auc": float(np.mean(aucs)) if aucs else None,
            "ece": self.ece(probs, y),
            "ece_floor": self.ece_floor(probs),
            "confusion_matrix": {"labels": self.classes, "matrix": confusion_matrix(y, pred, labels=labels).tolist()},
            "per_class": {c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
                          for i, c in enumerate(self.classes)},
        }
