"""Video encoders over uint8 frames (B, F, H, W, C); the tokens are the frames.

`frame_cnn`: one small CNN applied to every frame (shared weights), then the frame vectors are
pooled over time by their mean, or by self-attention over the frames (learned frame
positions, so the order of events counts) followed by the mean: the pooling is searched.
`temporal_conv`: a (2+1)-D convolution stack, each block a spatial 1x3x3 convolution followed
by a temporal 3x1x1 one, so motion is seen from the first block on.
"""

import keras
from keras import layers

from mmauto.encoders.base import ENCODERS, Encoded, Encoder, setting
from mmauto.hp import pick
from mmauto.layers import PositionEmbedding, transformer_block


def _conv_bn_relu(x, filters, kernel, name):
    x = layers.Conv3D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # momentum 0.9: moving statistics settle within a small trial (see the image cnn).
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


@ENCODERS.register("frame_cnn")
class FrameCNNEncoder(Encoder):
    """A per-frame CNN (TimeDistributed) and mean or attention pooling over the frames."""

    modalities = ("video",)

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/frame_cnn/width", setting(self.spec, "width"), [16, 32], default=16)
        depth = pick(hp, f"{scope}/frame_cnn/depth", setting(self.spec, "depth"), [2, 3], default=2)
        pool = pick(hp, f"{scope}/frame_cnn/pool", None, ["mean", "attention"], default="mean")
        frames = inputs["frames"]
        f, h, w, c = frames.shape[1:]
        image = keras.Input((h, w, c), dtype=frames.dtype, name=f"{scope}_frame")
        x = layers.Rescaling(1.0 / 255.0, name=f"{scope}_rescale")(image)
        for i in range(depth):
            x = layers.Conv2D(width * (2 ** min(i, 2)), 3, padding="same", use_bias=False, name=f"{scope}_conv{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"{scope}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{scope}_relu{i}")(x)
            if x.shape[1] >= 4 and x.shape[2] >= 4:
                x = layers.MaxPooling2D(2, name=f"{scope}_pool{i}")(x)
        per_frame = keras.Model(image, layers.GlobalAveragePooling2D(name=f"{scope}_gap")(x), name=f"{scope}_frame_cnn")
        tokens = layers.TimeDistributed(per_frame, name=f"{scope}_frames")(frames)  # (B, F, D)
        if pool == "attention":
            d = tokens.shape[-1]
            x = PositionEmbedding(name=f"{scope}_pos")(tokens)
            x = transformer_block(x, 2 if d % 2 == 0 else 1, d, 0.1, f"{scope}_tblock")
            tokens = layers.LayerNormalization(name=f"{scope}_ln")(x)
        return Encoded(layers.GlobalAveragePooling1D(name=f"{scope}_meanpool")(tokens), tokens)


@ENCODERS.register("temporal_conv")
class TemporalConvEncoder(Encoder):
    """(2+1)-D convolutions: spatial 1x3x3 then temporal 3x1x1 per block, space pooled 2x."""

    modalities = ("video",)

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/temporal_conv/width", setting(self.spec, "width"), [16, 32], default=16)
        depth = pick(hp, f"{scope}/temporal_conv/depth", setting(self.spec, "depth"), [2, 3], default=2)
        x = layers.Rescaling(1.0 / 255.0, name=f"{scope}_rescale")(inputs["frames"])
        for i in range(depth):
            filters = width * (2 ** min(i, 2))
            x = _conv_bn_relu(x, filters, (1, 3, 3), f"{scope}_s{i}")
            x = _conv_bn_relu(x, filters, (3, 1, 1), f"{scope}_t{i}")
            # Spatial pooling frame by frame: the 3-D pooling ops have no float16 CPU kernel.
            if x.shape[2] >= 4 and x.shape[3] >= 4:
                x = layers.TimeDistributed(layers.MaxPooling2D(2), name=f"{scope}_pool{i}")(x)
        # Average out space: one token per frame.
        tokens = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name=f"{scope}_spacepool")(x)
        return Encoded(layers.GlobalAveragePooling1D(name=f"{scope}_meanpool")(tokens), tokens)
