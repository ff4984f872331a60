"""Perceiver fusion (Jaegle et al. 2021): a few learned latent tokens (`perceiver/latents`,
searched) cross-attend to the tokens of every input at once (each input's own tokens, or its
pooled vector as one token; learned positions per input tell the inputs apart), then `depth`
self-attention blocks run over the latents alone, and their mean is the fused vector. The cost
grows with the latent count, not with the inputs' tokens squared. Padded tokens get no
attention (the inputs' masks are joined into the cross-attention's key mask).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mmauto.fusion.base import FUSIONS, Fusion, token_seq
from mmauto.hp import pick
from mmauto.layers import PositionEmbedding, joint_mask, transformer_block


@keras.saving.register_keras_serializable("mmauto")
class PerceiverLatents(layers.Layer):
    """`count` learned (D,) latent tokens, one copy per row of the (B, T, D) sequence it is given."""

    def __init__(self, count: int, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def build(self, shape):
        self.latents = self.add_weight(name="latents", shape=(1, self.count, shape[-1]),
                                       initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, x):
        return ops.tile(ops.cast(self.latents, x.dtype), (ops.shape(x)[0], 1, 1))

    def compute_output_shape(self, shape):
        return (shape[0], self.count, shape[-1])

    def get_config(self):
        return {**super().get_config(), "count": self.count}


@FUSIONS.register("perceiver")
class PerceiverFusion(Fusion):
    attention = True
    tokens = True

    def build(self, hp, encoded, width, dropout):
        count = pick(hp, f"{self.name}/latents", None, [4, 8, 16], default=8)
        depth = self.depth(hp, (1, 2))
        heads = self.heads(hp, width)
        seqs = [PositionEmbedding(name=f"perceiver_{n}_pos")(token_seq(e, f"perceiver_{n}")) for n, e in encoded.items()]
        ctx = seqs[0] if len(seqs) == 1 else layers.Concatenate(axis=1, name="perceiver_tokens")(seqs)
        mask = joint_mask([(t, e.mask) for t, e in zip(seqs, encoded.values())], "perceiver")
        x = PerceiverLatents(count, name="perceiver_latents")(ctx)
        x = transformer_block(x, heads, width, dropout, "perceiver_cross", context=ctx, context_mask=mask)
        for i in range(depth):
            x = transformer_block(x, heads, width, dropout, f"perceiver_self{i}")
        x = layers.LayerNormalization(name="perceiver_ln")(x)
        return layers.GlobalAveragePooling1D(name="perceiver_pool")(x)
