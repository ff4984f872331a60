"""The product of a trial's per-input heads, an ensemble candidate beside the trial itself.

A model with input heads (heads/input_heads.py) answers twice: from its fused head and, per
input, from that input's own copy of the head, each trained on every row. Where each input is
a noisy view of the label on its own, the product of the inputs' answers (a product of experts,
Hinton, 2002; Bayes' rule when the inputs are independent given the label) can beat the fused
head: on degraded AV-digits it did in each of the 7 + 3 trials of two kept searches, test
accuracy 0.974-0.982 against the fused heads' 0.963-0.973 (bench/RESULTS.md). Where the label
lies in how the inputs relate (the same-digit task), each input's head knows nothing and the
product is no better than the prior. So the product is offered, not imposed: the ensemble stage
adds each such trial's product as one more candidate (`<trial id>_experts`) and greedy
selection on validation takes it, mixes it with the fused heads or leaves it. Nothing is
trained: `layers.ProductOfExperts` over the trial's own outputs computes it, in the selection
(numpy) and in the served graph alike.
"""

from __future__ import annotations

import numpy as np

from mmauto.data.keys import present_key
from mmauto.heads.input_heads import InputHeads
from mmauto.heads.wrapper import unwrapped
from mmauto.layers import ProductOfExperts

SUFFIX = "_experts"
# The heads' activations whose answers multiply (heads/*.py `activation`): the product of
# several softmaxes or sigmoids is one again (a regression value or a multi-target block is not).
MULTIPLY = ("softmax", "sigmoid")


def input_heads(head) -> InputHeads | None:
    """The copies per input inside a model's (wrapped) head, when they copy a single-target
    classification head: what a product multiplies. Under the matching loss's wrapper (a binary
    label) its columns come after theirs and pass through the product untouched."""
    inner = unwrapped(head, stop=(InputHeads,))
    # A MultiHead has no one activation (its blocks are several targets'): it gets no product.
    return inner if isinstance(inner, InputHeads) and getattr(inner.head, "activation", None) in MULTIPLY else None


def candidate(trial_id: str) -> str:
    return f"{trial_id}{SUFFIX}"


def is_product(member: str) -> bool:
    return member.endswith(SUFFIX)


def trial_of(member: str) -> str:
    """The trial whose model a member reads (itself, or the trial of a product)."""
    return member[: -len(SUFFIX)] if is_product(member) else member


def prior(heads: InputHeads, targets: np.ndarray, balanced: bool) -> list[float]:
    """(`heads`: `input_heads` of the model's head, here and below.) The label's frequencies on
    the training rows, as the heads learnt them: per class
    (softmax) or the rate of each unit's 1s (sigmoid), one pseudo-row per outcome added; even
    with `class_weight: balanced`, which trains the heads as if the classes were."""
    units = heads.head.units
    if heads.head.activation == "softmax":
        if balanced:
            return [1.0 / units] * units
        counts = np.bincount(np.asarray(targets).reshape(-1).astype(int), minlength=units)[:units]
        return ((counts + 1.0) / (counts.sum() + units)).tolist()
    y = np.asarray(targets, "float64").reshape(len(targets), -1)
    return [0.5] * units if balanced else ((y.sum(axis=0) + 1.0) / (len(y) + 2.0)).tolist()


def layer(heads: InputHeads, prior_: list[float], member: str, name: str) -> ProductOfExperts:
    return ProductOfExperts(heads.head.units, len(heads.inputs), heads.head.activation, prior_, member=member,
                            dtype="float32", name=name)


def presence_keys(heads: InputHeads) -> list[str]:
    """The model inputs that say whether each input is present, in the order of its heads."""
    return [present_key(n) for n in heads.inputs]


def view(heads: InputHeads, predictions: np.ndarray, present: np.ndarray, prior_: list[float]) -> np.ndarray:
    """A trial's kept outputs (rows, columns: the head's, each input's copy's, any the matching
    loss adds) as its product serves them, from each row's presence (rows, inputs): computed
    by the served graph's own layer."""
    present = np.asarray(present, "float32").reshape(len(predictions), len(heads.inputs))
    out = layer(heads, prior_, "", "experts_view")([np.asarray(predictions, "float32"), *present.T])
    return np.asarray(out, "float32")
