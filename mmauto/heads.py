"""Decision heads: the last layer, loss, metrics, default objective and target encoding of
each task (multiclass, binary, multilabel, regression)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Head:
    kind: str  # multiclass | binary | multilabel | regression
    classes: Optional[list[str]]
    threshold: float = 0.5

    @property
    def units(self) -> int:
        return 1 if self.kind in ("binary", "regression") else len(self.classes)

    def activate(self, logits):
        from keras import layers

        act = {"multiclass": "softmax", "binary": "sigmoid", "multilabel": "sigmoid", "regression": "linear"}[self.kind]
        return layers.Activation(act, dtype="float32", name="output")(logits)

    def loss(self):
        import keras

        return {
            "multiclass": keras.losses.SparseCategoricalCrossentropy(),
            "binary": keras.losses.BinaryCrossentropy(),
            "multilabel": keras.losses.BinaryCrossentropy(),
            "regression": keras.losses.MeanSquaredError(),
        }[self.kind]

    def metrics(self):
        import keras

        m = keras.metrics
        if self.kind == "multiclass":
            return [m.SparseCategoricalAccuracy(name="accuracy")]
        if self.kind == "binary":
            return [m.BinaryAccuracy(name="accuracy"), m.AUC(name="auc")]
        if self.kind == "multilabel":
            return [m.BinaryAccuracy(name="accuracy", threshold=self.threshold), m.AUC(name="auc", multi_label=True)]
        return [m.RootMeanSquaredError(name="rmse"), m.MeanAbsoluteError(name="mae")]

    def default_objective(self) -> str:
        return {"multiclass": "val_accuracy", "binary": "val_auc", "multilabel": "val_loss", "regression": "val_rmse"}[self.kind]

    # --- targets -------------------------------------------------------------------------------
    def encode(self, values, target_state: dict) -> np.ndarray:
        """Parsed targets (labels, label lists or numbers) -> training arrays."""
        if self.kind == "regression":
            y = (np.asarray(values, "float64") - target_state["mean"]) / target_state["std"]
            return y.astype("float32").reshape(-1, 1)
        index = {c: i for i, c in enumerate(self.classes)}
        if self.kind == "multilabel":
            y = np.zeros((len(values), len(self.classes)), "float32")
            for r, labels in enumerate(values):
                for label in labels:
                    if label in index:
                        y[r, index[label]] = 1.0
            return y
        idx = np.array([index[v] for v in values], "int32")
        return idx.astype("float32").reshape(-1, 1) if self.kind == "binary" else idx


def head_for(task: str, classes: Optional[list[str]], threshold: float = 0.5) -> Head:
    if task == "regression":
        return Head("regression", None)
    if task == "multilabel":
        return Head("multilabel", classes, threshold)
    return Head("binary" if len(classes) == 2 else "multiclass", classes)


def objective_direction(name: str) -> str:
    base = name[4:] if name.startswith("val_") else name
    return "min" if base in ("loss", "rmse", "mae", "mse", "log_loss") else "max"
