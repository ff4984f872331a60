"""Regression: one linear unit on the standardised target; serves the value in the target's units."""

from __future__ import annotations

from typing import Optional

import numpy as np

from mmauto.heads import calibration as cal
from mmauto.heads.base import HEADS, Head


@HEADS.register("regression")
class RegressionHead(Head):
    """Trained on (y - mean) / std (`state`); the SavedModel serves `value` in the original units,
    and `value_lower` / `value_upper` when a split-conformal interval was fitted (`state["interval"]`)."""

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

    @property
    def interval(self) -> Optional[dict]:
        """The fitted split-conformal interval ({coverage, half_width, ...}), or None."""
        return self.state.get("interval")

    def serve(self, y):
        value = y[:, 0] * self.state["std"] + self.state["mean"]
        out = {self.key("value"): value}
        if self.interval:
            out[self.key("value_lower")] = value - self.interval["half_width"]
            out[self.key("value_upper")] = value + self.interval["half_width"]
        return out

    def expected(self, y):
        return np.asarray(y, "float32")[:, 0] * self.state["std"] + self.state["mean"]

    def output_specs(self):
        out = {self.key("value"): {"dtype": "float32", "shape": [None]}}
        if self.interval:
            what = f"value -+ {self.interval['half_width']:.6g}: a {self.interval['coverage']:.0%} split-conformal prediction interval"
            out[self.key("value_lower")] = {"dtype": "float32", "shape": [None], "description": what}
            out[self.key("value_upper")] = {"dtype": "float32", "shape": [None], "description": what}
        return out

    def contribution(self, full, without):
        """The served value with the input, minus without it (in the target's units)."""
        return full[self.key("value")] - without[self.key("value")]

    def columns(self, outputs):
        cols = {f"{self.prefix}prediction": outputs[self.key("value")]}
        if self.key("value_lower") in outputs:
            cols[f"{self.prefix}prediction_lower"] = outputs[self.key("value_lower")]
            cols[f"{self.prefix}prediction_upper"] = outputs[self.key("value_upper")]
        return cols

    def calibrate(self, y, targets, train):
        if not train.calibrate:
            self.state.pop("interval", None)
            return None
        value = self.expected(y).astype("float64")
        truth = np.asarray(targets, "float64")[:, 0] * self.state["std"] + self.state["mean"]
        coverage = float(train.interval_coverage)
        half = cal.conformal_half_width(truth - value, coverage)
        if half is None:
            self.state.pop("interval", None)
            return {"interval": None, "why": f"{len(value)} validation rows are too few for a {coverage:.0%} interval"}
        inside = float(np.mean(np.abs(truth - value) <= half))
        self.state["interval"] = {"method": "split conformal", "coverage": coverage, "half_width": half,
                                  "split": "validation", "rows": int(len(value)), "validation_coverage": round(inside, 6)}
        return {"interval": self.state["interval"]}

    def card(self):
        return {**super().card(), "interval": self.interval}

    def score(self, values, outputs):
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        y, p = np.asarray(values, float), np.asarray(outputs[self.key("value")], float)
        out = {"rows": int(len(y)), "mae": float(mean_absolute_error(y, p)), "rmse": float(np.sqrt(mean_squared_error(y, p))),
               "r2": float(r2_score(y, p)) if len(y) > 1 and np.var(y) > 0 else None}
        if self.key("value_lower") in outputs:  # the share of rows inside the served interval
            lo, hi = np.asarray(outputs[self.key("value_lower")], float), np.asarray(outputs[self.key("value_upper")], float)
            out["interval_coverage"] = float(np.mean((y >= lo) & (y <= hi)))
        return out
