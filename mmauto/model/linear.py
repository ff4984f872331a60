"""A linear model over text inputs' TF-IDF vectors as a Keras model with given weights
(scikit-learn's logistic or ridge regressions', see mmauto/run/linear.py), laid out like a searched model:
the same prepared inputs, the same output columns (the head's answer in every block of a head
with input heads; zeros where a searched model outputs what only its training loss reads)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from mmauto.data.keys import present_key
from mmauto.layers import MissingGate, TakeColumns


def tfidf_rows(tfidf: np.ndarray, present: np.ndarray) -> np.ndarray:
    """What the model's first layers compute, in numpy (for fitting): the TF-IDF prep's output
    without its out-of-vocabulary column (column 0: it counts every unknown word; on the reviews
    it cost a small network on these vectors 0.002-0.006 test ROC-AUC, bench/RESULTS.md),
    L2-normalised per row, zero where the input is missing."""
    x = tfidf[:, 1:]
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return np.where(present.reshape(-1, 1) > 0, x / np.maximum(norm, 1e-12), 0.0).astype("float32")


def linear_model(head, feeds: dict[str, tuple[str, tuple]], kernel: np.ndarray, bias: np.ndarray,
                 name: str = "linear") -> tuple[keras.Model, list[str]]:
    """`feeds`: input name -> (its TF-IDF input key, that input's shape), in the order of the
    kernel's rows; `kernel` (features, units), `bias` (units,): the logits of the task's own
    head (inside `head`'s wrappers; with several targets, theirs side by side). Returns the model and its input keys."""
    inputs, parts = {}, []
    for n, (key, shape) in feeds.items():
        tfidf = inputs[key] = keras.Input(shape, name=key)
        present = inputs[present_key(n)] = keras.Input((), name=present_key(n))
        x = layers.UnitNormalization(name=f"{name}_{n}_l2")(TakeColumns(1, shape[-1], name=f"{name}_{n}_known")(tfidf))
        # A missing input's vector is zeros (the gate's "missing" weight, never trained here).
        x, _ = MissingGate(0.0, name=f"{name}_{n}_missing")(x, present)
        parts.append(x)
    x = parts[0] if len(parts) == 1 else layers.Concatenate(name=f"{name}_features")(parts)
    dense = layers.Dense(kernel.shape[1], name=f"{name}_logits")
    logits = dense(x)
    dense.set_weights([kernel.astype("float32"), bias.astype("float32")])
    out = _answer(head, logits, name)
    extra = head.units - out.shape[-1]
    if extra > 0:  # columns only a training loss reads (heads/matching.py's embeddings): zeros
        zeros = layers.Dense(extra, use_bias=False, kernel_initializer="zeros", trainable=False, name=f"{name}_unused")(logits)
        out = layers.Concatenate(dtype="float32", name=f"{name}_output")([out, zeros])
    return keras.Model(inputs, out, name=name), list(inputs)


def _answer(head, logits, name: str):
    """The head's answer from the task's logits: through its input heads' layout (the same
    logits in every copy's block) when it has them; other wrappers add columns after it."""
    from mmauto.heads.input_heads import InputHeads
    from mmauto.heads.wrapper import unwrapped

    head = unwrapped(head, (InputHeads,))
    if not isinstance(head, InputHeads):
        return head.output(logits)
    copies = head.units // logits.shape[-1]
    return head.output(layers.Concatenate(name=f"{name}_blocks")([logits] * copies))
