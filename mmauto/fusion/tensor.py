"""Tensor Fusion Network (Zadeh et al. 2017): each input's pooled vector is projected down to a
few dimensions (searched: `tensor/dims`), a 1 is appended, and the outer product over all inputs
is flattened, so the MLP after it (`depth` layers) sees every unimodal, bimodal, ... n-modal
product term. The appended 1 keeps the lower-order terms (each input alone, each pair).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.hp import pick
from mmauto.layers import mlp

# Cap on the flattened product's size: with many inputs the per-input dims shrink to fit.
MAX_PRODUCT = 4096


@keras.saving.register_keras_serializable("mmauto")
class TensorProduct(layers.Layer):
    """[z1; 1] (x) [z2; 1] (x) ... flattened: (B, prod(d_i + 1)) from a list of (B, d_i)."""

    def call(self, xs):
        out = None
        for x in xs:
            z = ops.concatenate([x, ops.ones_like(x[:, :1])], axis=-1)
            out = z if out is None else ops.reshape(ops.expand_dims(out, -1) * ops.expand_dims(z, 1), (-1, out.shape[-1] * z.shape[-1]))
        return out

    def compute_output_shape(self, shapes):
        size = 1
        for s in shapes:
            size *= s[-1] + 1
        return (shapes[0][0], size)


def product_dims(dims: int, n: int) -> int:
    """The per-input dims, shrunk so that (dims + 1) ** n stays within MAX_PRODUCT."""
    while dims > 1 and (dims + 1) ** n > MAX_PRODUCT:
        dims -= 1
    return dims


@FUSIONS.register("tensor")
class TensorFusion(Fusion):
    min_inputs = 2

    def build(self, hp, encoded, width, dropout):
        dims = pick(hp, f"{self.name}/dims", None, [8, 16], default=8)
        depth = self.depth(hp, (1, 2))
        dims = product_dims(dims, len(encoded))
        small = [layers.Dense(dims, name=f"tensor_{n}_reduce")(e.pooled) for n, e in encoded.items()]
        x = TensorProduct(name="tensor_product")(small)
        if dropout:
            x = layers.Dropout(dropout, name="tensor_product_drop")(x)
        return mlp(x, width, depth, dropout, "tensor_mlp")
