"""Two-class classification: one sigmoid unit for the second class."""

from __future__ import annotations

import numpy as np

from mmauto.heads import calibration as cal
from mmauto.heads import scaling
from mmauto.heads.base import HEADS
from mmauto.heads.classification import MulticlassHead


@HEADS.register("binary")
class BinaryHead(MulticlassHead):
    """One sigmoid unit (the probability of `classes[1]`); serves both classes' probabilities
    (temperature-, Platt- or beta-scaled when fitted) and the label: `classes[1]` where its probability is at or
    above the decision threshold (chosen on validation, or `train.threshold` when pinned)."""

    activation = "sigmoid"
    default_objective = "val_auc"

    @classmethod
    def accepts(cls, task, classes):
        return task == "classification" and classes is not None and len(classes) == 2

    @property
    def units(self):
        return 1

    def loss(self):
        import keras

        return keras.losses.BinaryCrossentropy()

    def metrics(self):
        import keras

        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]

    def encode(self, values):
        return self._index(values).astype("float32").reshape(-1, 1)

    @property
    def decision_threshold(self) -> float:
        """The served label's threshold on the probability of `classes[1]`."""
        return float(self.state.get("threshold", self.threshold))

    @property
    def beta_calibration(self):
        """The (a, b, c) of the beta calibration `serve` applies (heads/scaling.py), or None."""
        c = self.calibration
        return [float(v) for v in c["beta"]] if c and c.get("applied") and c.get("method") == "beta" else None

    def probabilities(self, y):
        import tensorflow as tf

        t, v, w = self.temperature, self.vector_scaling, self.beta_calibration
        if w is not None:
            p = scaling.tf_sigmoid_beta(y[:, 0], w)
        elif v is not None:
            p = scaling.tf_sigmoid_vector(y[:, 0], v[0][0], v[1][0])
        else:
            p = y[:, 0] if t is None else cal.tf_sigmoid_scaled(y[:, 0], t)
        return tf.stack([1.0 - p, p], axis=1)

    def serve(self, y):
        import tensorflow as tf

        probs = self.probabilities(y)
        labels = tf.where(probs[:, 1] >= self.decision_threshold, tf.constant(self.classes[1]), tf.constant(self.classes[0]))
        return {self.key("probabilities"): probs, self.key("label"): labels}

    def _positive(self, y) -> np.ndarray:
        """The served probability of `classes[1]` (numpy, float32) from the model's output."""
        p = np.asarray(y, "float32")[:, 0]
        t, v, w = self.temperature, self.vector_scaling, self.beta_calibration
        if w is not None:
            return cal.sigmoid(scaling.beta_logits(cal.sigmoid_logits(p), w)).astype("float32")
        if v is not None:
            return cal.sigmoid(cal.sigmoid_logits(p) * v[0][0] + v[1][0]).astype("float32")
        return p if t is None else cal.sigmoid(cal.sigmoid_logits(p) / t).astype("float32")

    def expected(self, y):
        p = self._positive(y)
        return np.stack([1.0 - p, p], axis=1)

    def predicted(self, probs):
        return (np.asarray(probs)[:, 1] >= self.decision_threshold).astype(int)

    def ece(self, probs, index):
        """ECE on the probability of `classes[1]` against the rows being `classes[1]`."""
        return cal.ece(np.asarray(probs, "float64")[:, 1], np.asarray(index) == 1)

    def ece_floor(self, probs):
        return cal.ece_floor(np.asarray(probs, "float64")[:, 1])

    def calibrate(self, y, targets, train):
        positive = np.asarray(targets).reshape(-1).astype(int)
        z = cal.sigmoid_logits(np.asarray(y)[:, 0])
        info = cal.temperature_report(z, lambda t: cal.sigmoid_nll(z, positive, t),
                                      lambda t: cal.ece(cal.sigmoid(z / t), positive), train.calibrate in (True, "temperature"))
        if train.calibrate in (True, "vector", "beta", "matrix"):  # Platt scaling (a scale and a bias) or beta calibration
            # For two classes, Dirichlet calibration (matrix scaling) is beta calibration (Kull et al., 2019).
            mode = "beta" if train.calibrate == "matrix" else train.calibrate
            info = scaling.scaling_report(z, positive, "sigmoid", mode, info, lambda s: cal.ece(cal.sigmoid(s), positive))
        self.state["calibration"] = info
        if train.threshold is None:  # chosen on the calibrated probabilities, as served
            threshold = cal.choose_threshold(self._positive(y), positive, train.threshold_metric)
            self.state["threshold_chosen_for"] = train.threshold_metric
        else:
            threshold, self.state["threshold_chosen_for"] = float(train.threshold), None
        self.state["threshold"] = threshold
        return {"calibration": info, "threshold": threshold, "threshold_chosen_for": self.state["threshold_chosen_for"]}

    def member_scaling(self, y, targets):
        positive = np.asarray(targets).reshape(-1).astype(int)
        z = cal.sigmoid_logits(np.asarray(y)[:, 0])
        t = scaling.member_temperature(lambda t: cal.sigmoid_nll(z, positive, t), len(positive))
        return [{"kind": "sigmoid", "start": 0, "stop": 1, "temperature": t, "eps": cal.EPS_SIGMOID}]

    def card(self):
        return {**super().card(), "threshold": self.decision_threshold,
                # the validation metric it was chosen for; None: pinned by train.threshold
                "threshold_chosen_for": self.state.get("threshold_chosen_for")}
