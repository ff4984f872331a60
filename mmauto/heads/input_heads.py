"""Deep supervision per input: beside the model's head on the fused vector, one copy of the
head per input, on that input's own vector, trained on every row.

Why: trained only through the fused head, a multimodal model lets the input that learns
fastest carry the answer while the others stay weak (Wang et al., 2020, "What makes training
multi-modal classification networks hard?", whose Gradient-Blending adds a loss per input for
this reason). And the answers to rows with an input missing (the `fallback` heads, which are
these copies: layers.PresenceSwitch) were trained only on the rows where modality dropout
happened to remove another input, about one row in six: from one input they answered 0.07-0.09
below a model trained on that input alone (bench/RESULTS.md, issue 16).

With several targets (heads/multi.py) each input's copy has every target's head, and the
copies' losses use the head's learned loss weights (`loss_weights: auto`).

The model's output is the head's own columns, then each input's copy (the same activation),
side by side; everything that reads a model's output for serving, calibration, ensembles or
scores reads the first block (`main`), so what the SavedModel serves is unchanged. The loss is
the head's loss on the first block plus `weight` times each copy's loss on its block; the
training metrics are the head's, on the first block, under the same names.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from mmauto.hp import pick

# The wrapped head's own output layer (a multi-target head's holds its learned loss weights).
MAIN_OUTPUT = "head_output"
# Searched when `search.space.input_heads` is unset: each input's copy's loss, relative to the
# head's own. 0.5 first: with two inputs the copies weigh as much as the head together.
WEIGHTS = [0.25, 0.5, 1.0]


def with_input_heads(head, inputs: list[str], setting):
    """`head` wrapped with a copy per input when the model has two or more inputs and the
    manifest does not turn the copies off (`input_heads: 0`)."""
    if len(inputs) < 2 or setting == 0:
        return head
    return InputHeads(head, inputs, setting)


class InputHeads:
    """A head (one target's, or a multi-target `MultiHead`) plus one auxiliary copy per input
    (see the module docstring).
    Answers what the wrapped head answers; the model-facing parts read the first block."""

    def __init__(self, head, inputs: list[str], setting=None):
        self.head, self.inputs, self.setting = head, list(inputs), setting

    def __getattr__(self, name):  # everything about targets, serving and scores: the head's
        if name == "head" or name.startswith("__"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.head, name)

    @property
    def main_units(self) -> int:
        return self.head.units

    @property
    def units(self) -> int:
        return self.head.units * (1 + len(self.inputs))

    def _main(self, y):
        return y[:, : self.head.units]

    # === Model ===

    def output(self, logits, name: str = "output"):
        """The head's activation on each block of the logits, side by side."""
        from keras import layers

        from mmauto.layers import TakeColumns

        u = self.head.units
        parts = [self.head.output(TakeColumns(0, u, name="head_block")(logits), name=MAIN_OUTPUT)]
        for i, n in enumerate(self.inputs, start=1):
            block = TakeColumns(i * u, (i + 1) * u, name=f"{n}_head_block")(logits)
            parts.append(self.head.output(block, name=f"{n}_head_output", scope=f"{n}_head_"))
        return layers.Concatenate(dtype="float32", name=name)(parts)

    def weight(self, hp) -> float:
        return pick(hp, "input_heads", self.setting, WEIGHTS, default=0.5)

    def training(self, hp, model, output: str = "output") -> tuple:
        """The head's loss on each block (a multi-target head's masked, weighted sum, its
        learned weights shared by the copies); the head's metrics on the first block."""
        loss, metrics = self.head.training(hp, model, output=MAIN_OUTPUT)
        loss = InputHeadsLoss(loss, self.head.units, len(self.inputs), self.weight(hp))
        return loss, [MainBlockMetric(m, self.head.units) for m in metrics]

    # === What reads the model's output ===

    def serve(self, y) -> dict:
        return self.head.serve(self._main(y))

    def expected(self, y):
        return self.head.expected(self._main(y))

    def numpy_outputs(self, y) -> dict:
        return self.head.numpy_outputs(self._main(y))

    def calibrate(self, y, targets, train) -> Optional[dict]:
        return self.head.calibrate(self._main(y), targets, train)

    def primary_view(self, preds: dict, targets):
        return self.head.primary_view({k: self._main(p) for k, p in preds.items()}, targets)

    def target_views(self, preds: dict, targets) -> dict:
        return self.head.target_views({k: self._main(p) for k, p in preds.items()}, targets)

    def column_targets(self) -> list:
        """Each copy's columns belong to the targets of the head's columns in the same place."""
        return self.head.column_targets() * (1 + len(self.inputs))

    def card(self) -> dict:
        return {**self.head.card(), "input_heads": self.inputs}


@keras.saving.register_keras_serializable("mmauto")
class InputHeadsLoss(keras.losses.Loss):
    """The head's loss on the output's first `units` columns plus `weight` times the loss of
    each of the `copies` blocks after it (per row)."""

    def __init__(self, inner, units: int, copies: int, weight: float, name="input_heads_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.inner, self.units, self.copies, self.weight = inner, int(units), int(copies), float(weight)

    def call(self, y_true, y_pred):
        y_pred, u = ops.cast(y_pred, "float32"), self.units
        total = ops.cast(self.inner.call(y_true, y_pred[:, :u]), "float32")
        for i in range(1, self.copies + 1):
            total = total + self.weight * ops.cast(self.inner.call(y_true, y_pred[:, i * u : (i + 1) * u]), "float32")
        return total

    def get_config(self):
        return {"name": self.name, "inner": keras.losses.serialize(self.inner), "units": self.units,
                "copies": self.copies, "weight": self.weight}

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
