"""Two-class classification: one sigmoid unit for the second class."""

from __future__ import annotations

import numpy as np

from mmauto.heads.base import HEADS
from mmauto.heads.classification import MulticlassHead


@HEADS.register("binary")
class BinaryHead(MulticlassHead):
    """One sigmoid unit (the probability of `classes[1]`); serves both classes' probabilities
    and the label at `threshold`, like the multiclass head."""

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

    def probabilities(self, y):
        import tensorflow as tf

        return tf.stack([1.0 - y[:, 0], y[:, 0]], axis=1)

    def expected(self, y):
        y = np.asarray(y, "float32")
        return np.stack([1.0 - y[:, 0], y[:, 0]], axis=1)
