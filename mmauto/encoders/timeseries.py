"""Time-series encoders over standardised series (B, T, C) and their step mask (B, T); the
tokens are the time steps (the transformer's, patches of steps for long series).

`tcn`: a temporal convolutional network: residual blocks of dilated causal 1-D convolutions
(dilation 1, 2, 4, ...), so the receptive field doubles per block; mean-pooled over the
observed steps. `ts_transformer`: steps (or patches of steps) projected to tokens, learned
positions and a few self-attention blocks; mean-pooled.
"""

import math

from keras import layers

from mmauto.encoders.base import ENCODERS, Encoded, Encoder, setting
from mmauto.hp import pick
from mmauto.layers import MaskedMean, PositionEmbedding, transformer_block

MAX_TOKENS = 64  # the transformer groups longer series into patches of steps


def _with_mask(inputs, scope):
    """The series with its mask as one more channel: padding is not a value at the mean."""
    mask = layers.Reshape((-1, 1), name=f"{scope}_mask_channel")(inputs["mask"])
    return layers.Concatenate(name=f"{scope}_with_mask")([inputs["series"], mask])


@ENCODERS.register("tcn")
class TCNEncoder(Encoder):
    """Residual blocks of dilated causal convolutions (TCN)."""

    modalities = ("timeseries",)

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/tcn/width", setting(self.spec, "width"), [16, 32, 64], default=32)
        steps = inputs["series"].shape[1]
        most = max(1, math.ceil(math.log2(steps)))  # beyond this, the field exceeds the series
        depth = pick(hp, f"{scope}/tcn/depth", setting(self.spec, "depth"), sorted({min(d, most) for d in (2, 4, 6)}), default=min(4, most))
        kernel = pick(hp, f"{scope}/tcn/kernel", None, [3, 5], default=3)
        x = layers.Conv1D(width, 1, name=f"{scope}_in")(_with_mask(inputs, scope))
        for i in range(depth):
            h = layers.Conv1D(width, kernel, padding="causal", dilation_rate=2 ** i, activation="relu", name=f"{scope}_b{i}_conv1")(x)
            h = layers.Dropout(0.1, name=f"{scope}_b{i}_drop")(h)
            h = layers.Conv1D(width, kernel, padding="causal", dilation_rate=2 ** i, name=f"{scope}_b{i}_conv2")(h)
            x = layers.Activation("relu", name=f"{scope}_b{i}_relu")(layers.Add(name=f"{scope}_b{i}_add")([x, h]))
        x = layers.LayerNormalization(name=f"{scope}_ln")(x)
        return Encoded(MaskedMean(name=f"{scope}_meanpool")(x, inputs["mask"]), x)


@ENCODERS.register("ts_transformer")
class TimeseriesTransformerEncoder(Encoder):
    """Steps (patches of ceil(T / 64) steps) -> tokens, positions, self-attention blocks."""

    modalities = ("timeseries",)

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/ts_transformer/width", setting(self.spec, "width"), [16, 32], default=32)
        depth = pick(hp, f"{scope}/ts_transformer/depth", setting(self.spec, "depth"), [1, 2], default=1)
        steps = inputs["series"].shape[1]
        patch = math.ceil(steps / MAX_TOKENS)
        x = _with_mask(inputs, scope)
        mask = inputs["mask"]
        if patch > 1:
            pad = -steps % patch
            if pad:
                x = layers.ZeroPadding1D((0, pad), name=f"{scope}_patchpad")(x)
                mask = layers.Reshape((-1,), name=f"{scope}_maskflat")(
                    layers.ZeroPadding1D((0, pad), name=f"{scope}_maskpad")(layers.Reshape((-1, 1), name=f"{scope}_mask3")(mask)))
            mask = layers.Reshape((-1,), name=f"{scope}_patchmask")(
                layers.MaxPooling1D(patch, name=f"{scope}_maskpool")(layers.Reshape((-1, 1), name=f"{scope}_mask3p")(mask)))
        if patch > 1:
            x = layers.Conv1D(width, patch, strides=patch, name=f"{scope}_embed")(x)
        else:  # a token sees its neighbours (Informer's token embedding): slopes, not just levels
            x = layers.Conv1D(width, 3, padding="same", name=f"{scope}_embed")(x)
        x = PositionEmbedding(name=f"{scope}_pos")(x)
        for i in range(depth):
            x = transformer_block(x, 2, width, 0.1, f"{scope}_block{i}")
        x = layers.LayerNormalization(name=f"{scope}_ln")(x)
        return Encoded(MaskedMean(name=f"{scope}_meanpool")(x, mask), x)
