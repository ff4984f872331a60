"""Low-rank Multimodal Fusion (Liu et al. 2018): the tensor fusion's weight tensor factored
into `rank` (searched: `low_rank/rank`) modality-specific factors. For each input m and rank
r, a factor maps [z_m; 1] to the fused width; the factors' outputs are multiplied element-wise
across inputs and summed over the rank with learned weights. It is the tensor fusion's
multiplicative interaction at a cost linear in the number of inputs. Then an MLP of `depth`.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from mmauto.fusion.base import FUSIONS, Fusion
from mmauto.hp import pick
from mmauto.layers import mlp


@keras.saving.register_keras_serializable("mmauto")
class LowRankProduct(layers.Layer):
    """sum_r w_r * prod_m ([z_m; 1] @ W_m^r) + b, from a list of (B, d_m) to (B, units)."""

    def __init__(self, units: int, rank: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.rank = rank

    def build(self, shapes):
        self.factors = []
        for i, s in enumerate(shapes):
            # Xavier normal over each (d_m + 1, units) factor, as the paper's code initialises them.
            std = math.sqrt(2.0 / (s[-1] + 1 + self.units))
            init = keras.initializers.RandomNormal(stddev=std)
            self.factors.append(self.add_weight(name=f"factor{i}", shape=(self.rank, s[-1] + 1, self.units), initializer=init))
        self.rank_weights = self.add_weight(name="rank_weights", shape=(self.rank, 1), initializer="glorot_normal")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, xs):
        prod = None
        for x, w in zip(xs, self.factors):
            z = ops.concatenate([x, ops.ones_like(x[:, :1])], axis=-1)
            f = ops.einsum("bd,rdu->bru", z, ops.cast(w, z.dtype))
            prod = f if prod is None else prod * f
        w = ops.cast(self.rank_weights, prod.dtype)
        return ops.sum(prod * ops.expand_dims(w, 0), axis=1) + ops.cast(self.bias, prod.dtype)

    def compute_output_shape(self, shapes):
        return (shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "rank": self.rank}


@FUSIONS.register("low_rank")
class LowRankFusion(Fusion):
    min_inputs = 2

    def build(self, hp, encoded, width, dropout):
        rank = pick(hp, f"{self.name}/rank", None, [2, 4, 8, 16], default=4)
        depth = self.depth(hp, (1, 2))
        x = LowRankProduct(width, rank, name="low_rank_product")([e.pooled for e in encoded.values()])
        return mlp(x, width, depth, dropout, "low_rank_mlp")
