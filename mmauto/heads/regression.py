"""Regression: one linear unit on the standardised target; serves the value in the target's units."""

from __future__ import annotations

import numpy as np

from mmauto.heads.base import HEADS, Head


@HEADS.register("regression")
class RegressionHead(Head):
    """Trained on (y - mean) / std (`state`); the SavedModel serves `value` in the original units."""

    activation = "linear"
    default_objective = "val_rmse"
    main_metric = "rmse"
    lower_is_better = ("rmse", "mae", "mse")
    parity_output = "value"

    @classmethod
    def accepts(cls, task, classes):
        return task == "regression"

    @property
    def units(self):
        return 1

    def loss(self):
        import keras

        return keras.losses.MeanSquaredError()

    def metrics(self):
        import keras

        return [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]

    def encode(self, values):
        y = (np.asarray(values, "float64") - self.state["mean"]) / self.state["std"]
        return y.astype("float32").reshape(-1, 1)

    def serve(self, y):
        return {self.key("value"): y[:, 0] * self.state["std"] + self.state["mean"]}

    def expected(self, y):
        return np.asarray(y, "float32")[:, 0] * self.state["std"] + self.state["mean"]

    def output_specs(self):
        return {self.key("value"): {"dtype": "float32", "shape": [None]}}

    def columns(self, outputs):
        return {f"{self.prefix}prediction": outputs[self.key("value")]}

    def score(self, values, outputs):
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        y, p = np.asarray(values, float), np.asarray(outputs[self.key("value")], float)
        return {"rows": int(len(y)), "mae": float(mean_absolute_error(y, p)), "rmse": float(np.sqrt(mean_squared_error(y, p))),
                "r2": float(r2_score(y, p)) if len(y) > 1 and np.var(y) > 0 else None}
