"""A head wrapped with an auxiliary loss whose model output carries extra columns after the
head's own (input_heads.py: a copy of the head per input; matching.py: the inputs' embeddings
for a contrastive loss).

Everything that reads a model's output for serving, calibration, ensembles or scores reads the
head's block, the first `head.units` columns, so what the SavedModel serves is the head's; the
training metrics are the head's, on that block, under the same names; the loss is the head's on
that block plus what the wrapper adds.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops


def unwrapped(head, stop: tuple = ()):
    """The head inside `head`'s wrappers (input heads, matching); with `stop`, the first
    wrapper of one of those types, if any."""
    while isinstance(head, HeadWrapper) and not isinstance(head, stop):
        head = head.head
    return head


class HeadWrapper:
    """Forwards everything about targets, serving and scores to `head`, on its block of the
    output. Subclasses define `units`, the model's output and the loss."""

    def __init__(self, head, inputs: list[str], setting=None):
        self.head, self.inputs, self.setting = head, list(inputs), setting

    def __getattr__(self, name):  # everything about targets, serving and scores: the head's
        if name == "head" or name.startswith("__"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.head, name)

    def _main(self, y):
        return y[:, : self.head.units]

    def main_metrics(self, metrics: list) -> list:
        return [MainBlockMetric(m, self.head.units) for m in metrics]

    def serve(self, y) -> dict:
        return self.head.serve(self._main(y))

    def expected(self, y):
        return self.head.expected(self._main(y))

    def numpy_outputs(self, y) -> dict:
        return self.head.numpy_outputs(self._main(y))

    def calibrate(self, y, targets, train) -> Optional[dict]:
        return self.head.calibrate(self._main(y), targets, train)

    def member_scaling(self, y, targets) -> list[dict]:
        return self.head.member_scaling(self._main(y), targets)

    def primary_view(self, preds: dict, targets):
        return self.head.primary_view({k: self._main(p) for k, p in preds.items()}, targets)

    def target_views(self, preds: dict, targets) -> dict:
        return self.head.target_views({k: self._main(p) for k, p in preds.items()}, targets)


class BlockLoss(keras.losses.Loss):
    """The head's loss `inner` on the output's first `units` columns, plus `extra(y_true,
    y_pred)` (float32, per row), which subclasses override; keyword settings are saved."""

    def __init__(self, inner, units: int, name: str, **settings):
        super().__init__(name=name)
        self.inner, self.units, self.settings = inner, int(units), settings

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        return ops.cast(self.inner.call(y_true, y_pred[:, : self.units]), "float32") + self.extra(y_true, y_pred)

    def extra(self, y_true, y_pred):
        """What the wrapper adds to the head's loss, per row; nothing here."""
        return 0.0

    def get_config(self):
        return {"name": self.name, "inner": keras.losses.serialize(self.inner), "units": self.units, **self.settings}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "inner": keras.losses.deserialize(config["inner"])})


class MainBlockMetric(keras.metrics.Metric):
    """A head's training metric on the output's first `units` columns, under its own name."""

    def __init__(self, inner, units: int):
        super().__init__(name=inner.name)
        self.inner, self.units = inner, int(units)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return self.inner.update_state(y_true, y_pred[:, : self.units], sample_weight=sample_weight)

    def result(self):
        return self.inner.result()

    def reset_state(self):
        self.inner.reset_state()
