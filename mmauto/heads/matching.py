"""Matched pairs teach the encoders: for a binary target over two or more inputs (alone, or the
primary target of a multi-target model), a contrastive loss on the rows of the positive class,
beside the head's own loss.

Why: when the label says whether the inputs belong together (the digit shown is the digit
spoken; a caption describes its image; two records are the same person), the head's binary
cross-entropy gives each encoder one weak bit per row, through its interaction with the other
encoder's features, which start random: the same-digit bench stayed on the chance plateau for
8 epochs and reached 0.82 in 600 s (bench/RESULTS.md, issue 14). The positive rows are pairs
that match, and a pair that matches is what a contrastive loss learns from: among the positive
rows of a batch, each input's embedding must pick out its own row's other input (InfoNCE over
in-batch negatives, both directions, as CLIP). Vision-language models train the two together
for this reason: ALBEF and BLIP (Li et al., 2021, 2022) add image-text contrastive learning on
the matched pairs beside the image-text matching head.

The positive class is the binary head's `classes[1]` (the label's second class in sorted order:
`yes`, `true`, `1`, `same`, `match`...). When it is not the class of matching rows the loss
teaches the wrong thing, and the search weighs it down: its weight (`train.match_weight`,
pinned, or `search.space.match_weight`, searched; unset: searched among WEIGHTS, 0 first) may be
0. Rows where an input is missing (or removed by modality dropout) take no part.

The model's output is the head's columns, then each input's L2-normalised projection (DIM
columns per input, zeros where the input is missing); everything that reads the output for
serving, calibration, ensembles or scores reads the head's block, so the SavedModel serves what
it served without the loss.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mmauto.heads.wrapper import BlockLoss, HeadWrapper
from mmauto.hp import pick

# The wrapped head's own output layer.
ANSWER_OUTPUT = "answer_output"
# Each input's projection for the contrastive loss (CLIP-style: a linear map, then L2 norm).
DIM = 32
TEMPERATURE = 0.1
# Searched when unset: the contrastive loss's weight relative to the head's; 0 first, so a
# search's default trial is the model without it.
WEIGHTS = [0.0, 0.1, 0.5, 1.0]


def with_matching(head, inputs: list[str], setting):
    """`head` wrapped with the contrastive loss when it serves one binary target, the model has
    two or more inputs and the manifest does not turn it off (`match_weight: 0`)."""
    if len(inputs) < 2 or setting == 0 or getattr(head, "name", None) != "binary":
        return head
    return Matching(head, inputs, setting)


def primary(head):
    """The binary head whose positive rows are matched pairs (a multi-target head's primary)."""
    return getattr(head, "primary", head)


class Matching(HeadWrapper):
    """A binary head (or a multi-target head whose primary target is binary, or their
    `InputHeads` wrapper) plus the contrastive loss on matched pairs (see the module
    docstring). Answers what the wrapped head answers."""

    @property
    def units(self) -> int:
        return self.head.units + DIM * len(self.inputs)

    # === Model ===

    def output(self, answer, pooled: dict, keeps: dict):
        """The model's output: the wrapped head's output `answer`, then the inputs' normalised
        projections (`pooled` and `keeps` by input name, in the order of `inputs`)."""
        z = MatchEmbeddings(len(self.inputs), name="match_embeddings")([*(pooled[n] for n in self.inputs), *(keeps[n] for n in self.inputs)])
        return layers.Concatenate(dtype="float32", name="output")([answer, z])

    def weight(self, hp) -> float:
        return pick(hp, "match_weight", self.setting, WEIGHTS, default=0.0)

    def training(self, hp, model, output: str = "output") -> tuple:
        """The head's loss plus `weight` times the contrastive loss; the head's metrics on its block."""
        loss, metrics = self.head.training(hp, model, output=ANSWER_OUTPUT)
        # The primary target's column of the training targets (0 but in a multi-target model).
        column = getattr(self.head, "primary_column", 0)
        return MatchingLoss(loss, self.head.units, len(self.inputs), self.weight(hp), column), self.main_metrics(metrics)

    def column_targets(self) -> list:
        return self.head.column_targets() + [primary(self.head).target] * (DIM * len(self.inputs))

    def card(self) -> dict:
        return {**self.head.card(), "matching": {"inputs": self.inputs, "positive_class": primary(self.head).classes[1]}}


@keras.saving.register_keras_serializable("mmauto")
class MatchEmbeddings(layers.Layer):
    """Each of n inputs' pooled vectors projected to DIM and L2-normalised (float32), times the
    input's keep (1 present, 0 missing or dropped), side by side: [N, n * DIM]."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)
        self.proj = [layers.Dense(DIM, name=f"proj{i}") for i in range(self.n)]

    def build(self, shapes):
        for i, p in enumerate(self.proj):
            p.build(shapes[i])

    def call(self, inputs):
        pooled, keeps = inputs[: self.n], inputs[self.n :]
        out = []
        for p, x, k in zip(self.proj, pooled, keeps):
            z = ops.normalize(ops.cast(p(x), "float32"), axis=-1)
            out.append(z * ops.reshape(ops.cast(k, "float32"), (-1, 1)))
        return ops.concatenate(out, axis=-1)

    def compute_output_shape(self, shapes):
        return (shapes[0][0], DIM * self.n)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


def matched_pairs_loss(positive, z: list):
    """Per row: the mean over input pairs of the symmetric InfoNCE among the rows that are
    positive with both inputs present (0 elsewhere), scaled so that the batch mean is the
    mean over those rows. `positive`: [N] 0/1; `z`: per input [N, DIM], zero rows = missing."""
    total, pairs = 0.0, 0
    rows = ops.cast(ops.shape(positive)[0], "float32")
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            present = [ops.cast(ops.sum(ops.square(x), axis=-1) > 0.5, "float32") for x in (z[i], z[j])]
            valid = positive * present[0] * present[1]
            # Rows outside the set neither anchor nor serve as negatives: the mask goes on the
            # candidates (columns) of each direction.
            off = (1.0 - ops.expand_dims(valid, 0)) * -1e9
            logits = ops.matmul(z[i], ops.transpose(z[j])) / TEMPERATURE
            labels = ops.arange(ops.shape(logits)[0])
            ce = keras.losses.sparse_categorical_crossentropy(labels, logits + off, from_logits=True)
            ce_t = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits) + off, from_logits=True)
            total = total + 0.5 * (ce + ce_t) * valid * rows / ops.maximum(ops.sum(valid), 1.0)
            pairs += 1
    return total / max(pairs, 1)


@keras.saving.register_keras_serializable("mmauto")
class MatchingLoss(BlockLoss):
    """The head's loss on the output's first `units` columns plus `weight` times the
    contrastive loss on the `inputs` blocks of DIM columns after them (per row); the positive
    rows are those whose targets' `column` is 1."""

    def __init__(self, inner, units: int, inputs: int, weight: float, column: int = 0, name="matching_loss"):
        super().__init__(inner, units, name, inputs=int(inputs), weight=float(weight), column=int(column))

    def extra(self, y_true, y_pred):
        u, w, c = self.units, self.settings["weight"], self.settings["column"]
        if not w:
            return 0.0
        # A row without the target (NaN, multi-target models) is not a positive row.
        positive = ops.cast(ops.cast(y_true, "float32")[:, c] > 0.5, "float32")
        z = [y_pred[:, u + i * DIM : u + (i + 1) * DIM] for i in range(self.settings["inputs"])]
        return w * matched_pairs_loss(positive, z)
