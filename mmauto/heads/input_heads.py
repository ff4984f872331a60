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

import keras
from keras import ops

from mmauto.heads.wrapper import BlockLoss, HeadWrapper
from mmauto.hp import pick

# The wrapped head's own output layer (a multi-target head's holds its learned loss weights).
MAIN_OUTPUT = "head_output"
# Searched when `search.space.input_heads` is unset: each input's copy's loss, relative to the
# head's own. 1.0 first: on degraded AV-digits (one trial takes the whole 240 s budget), the audio
# copy read 0.843 / 0.863 on validation at 0.5 against 0.878 / 0.885 / 0.838 at 1.0, and answered
# rows without the image 0.845 / 0.855 against 0.883 / 0.862 on test, the fused head as well
# (test 0.966 / 0.965 against 0.974 / 0.971): the copies answer a row with an input missing, and
# each trial's product multiplies them. A model of the audio alone reads 0.91 (bench/RESULTS.md).
WEIGHTS = [0.25, 0.5, 1.0]
FIRST_WEIGHT = 1.0


def with_input_heads(head, inputs: list[str], setting):
    """`head` wrapped with a copy per input when the model has two or more inputs and the
    manifest does not turn the copies off (`input_heads: 0`)."""
    if len(inputs) < 2 or setting == 0:
        return head
    return InputHeads(head, inputs, setting)


class InputHeads(HeadWrapper):
    """A head (one target's, or a multi-target `MultiHead`) plus one auxiliary copy per input
    (see the module docstring).
    Answers what the wrapped head answers; the model-facing parts read the first block."""

    @property
    def main_units(self) -> int:
        return self.head.units

    @property
    def units(self) -> int:
        return self.head.units * (1 + len(self.inputs))

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
        return pick(hp, "input_heads", self.setting, WEIGHTS, default=FIRST_WEIGHT)

    def training(self, hp, model, output: str = "output") -> tuple:
        """The head's loss on each block (a multi-target head's masked, weighted sum, its
        learned weights shared by the copies); the head's metrics on the first block."""
        loss, metrics = self.head.training(hp, model, output=MAIN_OUTPUT)
        return InputHeadsLoss(loss, self.head.units, len(self.inputs), self.weight(hp)), self.main_metrics(metrics)

    def column_targets(self) -> list:
        """Each copy's columns belong to the targets of the head's columns in the same place."""
        return self.head.column_targets() * (1 + len(self.inputs))

    def card(self) -> dict:
        return {**self.head.card(), "input_heads": self.inputs}


@keras.saving.register_keras_serializable("mmauto")
class InputHeadsLoss(BlockLoss):
    """The head's loss on the output's first `units` columns plus `weight` times the loss of
    each of the `copies` blocks after it (per row)."""

    def __init__(self, inner, units: int, copies: int, weight: float, name="input_heads_loss"):
        super().__init__(inner, units, name, copies=int(copies), weight=float(weight))

    def extra(self, y_true, y_pred):
        u, w = self.units, self.settings["weight"]
        return sum(w * ops.cast(self.inner.call(y_true, y_pred[:, i * u : (i + 1) * u]), "float32")
                   for i in range(1, self.settings["copies"] + 1))
