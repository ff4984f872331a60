"""Pairwise comparison fusion: for every pair of inputs, the element-wise product and the
absolute difference of their vectors and their cosine similarity, concatenated (optionally
with the vectors themselves), then an MLP of `depth` layers (0: the head reads the comparison
features directly, a learned bilinear match).

The other fusions add or select features, so a label that depends only on whether two inputs
agree (same digit in an image and a recording) has to be learned by an MLP from a
concatenation, which small data does not teach. Here agreement is a feature: once the encoders
map matching inputs to nearby vectors, the product and the difference say so.

Before the comparison every input may pass one more projection (`pairwise/project`): `none`
(the default: the inputs' own vectors, which the hypermodel has already projected per input to
the fusion width and layer-normalised), or `shared` (a siamese map: one dense layer with the
same weights for every input); then one shared layer normalisation, so the products are on one
scale whatever the encoder. Measured on the same-digit bench (bench/RESULTS.md, issue 14): all
variants learn at a learning rate of 3.5e-4 (test accuracy 0.77-0.82 after 12 epochs, concat
0.78), but at 2e-3 only `none` with depth 0 (the head reads the products directly: a learned
bilinear match) escaped the chance plateau, in 3 of 3 seeds (shared depth 0: 1 of 2; any depth
1 variant: 0 of 3; concat: 0). A projection per input (`separate`) gained nothing and was
dropped from the search.
"""

from __future__ import annotations

from itertools import combinations

import keras
from keras import layers, ops

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.hp import pick
from mmauto.layers import mlp


@keras.saving.register_keras_serializable("mmauto")
class PairFeatures(layers.Layer):
    """[a * b, |a - b|, cos(a, b)] for two (B, D) vectors: (B, 2D + 1), symmetric in a and b."""

    def call(self, a, b):
        dot = ops.sum(a * b, axis=-1, keepdims=True)
        norms = ops.sqrt(ops.sum(a * a, axis=-1, keepdims=True) * ops.sum(b * b, axis=-1, keepdims=True))
        cos = dot / ops.maximum(norms, ops.cast(1e-6, a.dtype))
        return ops.concatenate([a * b, ops.abs(a - b), cos], axis=-1)

    def compute_output_shape(self, a_shape, b_shape):
        return (a_shape[0], 2 * a_shape[-1] + 1)


@FUSIONS.register("pairwise")
class PairwiseFusion(Fusion):
    min_inputs = 2
    # Searched choices, default first (class attributes, so an experiment can narrow them).
    PROJECT = ("none", "shared")
    VECTORS = (False, True)
    DEPTH = (0, 1)

    def build(self, hp, encoded, width, dropout):
        project = pick(hp, f"{self.name}/project", None, self.PROJECT, default=self.PROJECT[0])
        vectors = pick(hp, f"{self.name}/vectors", None, self.VECTORS, default=self.VECTORS[0])
        depth = self.depth(hp, self.DEPTH)
        names = list(encoded)
        shared = layers.Dense(width, name="pairwise_shared") if project == "shared" else None
        norm = layers.LayerNormalization(name="pairwise_norm")
        z = {}
        for n in names:
            x = encoded[n].pooled
            if project == "shared":
                x = shared(x)
            z[n] = norm(x)
        parts = [PairFeatures(name=f"pairwise_{a}_{b}")(z[a], z[b]) for a, b in combinations(names, 2)]
        if vectors:
            parts += [encoded[n].pooled for n in names]
        x = parts[0] if len(parts) == 1 else layers.Concatenate(name="pairwise_features")(parts)
        if dropout:
            x = layers.Dropout(dropout, name="pairwise_drop")(x)
        return mlp(x, width, depth, dropout, "pairwise_mlp")
