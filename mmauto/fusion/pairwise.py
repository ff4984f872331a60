"""Pairwise comparison fusion: for every pair of inputs, the element-wise product and the
absolute difference of their vectors and their cosine similarity, concatenated (optionally
with the vectors themselves), then an MLP of `depth` layers (0: the head reads the comparison
features directly, a learned bilinear match).

The other fusions add or select features, so a label that depends only on whether two inputs
agree (same digit in an image and a recording) has to be learned by an MLP from a
concatenation, which small data does not teach. Here agreement is a feature: once the encoders
map matching inputs to nearby vectors, the product and the difference say so.

Before the comparison every input passes one projection (`pairwise/project`): `shared` (a
siamese map: one dense layer with the same weights for every input, so they are compared in
one space), `separate` (a dense layer per input) or `none`; then one shared layer
normalisation, so the products are on one scale whatever the encoder.
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
    PROJECT = ("shared", "separate", "none")
    VECTORS = (False, True)
    DEPTH = (1, 0, 2)

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
            elif project == "separate":
                x = layers.Dense(width, name=f"pairwise_{n}_proj")(x)
            z[n] = norm(x)
        parts = [PairFeatures(name=f"pairwise_{a}_{b}")(z[a], z[b]) for a, b in combinations(names, 2)]
        if vectors:
            parts += [encoded[n].pooled for n in names]
        x = parts[0] if len(parts) == 1 else layers.Concatenate(name="pairwise_features")(parts)
        if dropout:
            x = layers.Dropout(dropout, name="pairwise_drop")(x)
        return mlp(x, width, depth, dropout, "pairwise_mlp")
