"""A small CNN trained from scratch, for images and for audio spectrograms."""

from keras import layers

from mmauto.encoders.base import ENCODERS, Encoded, Encoder, setting
from mmauto.hp import pick


@ENCODERS.register("cnn")
class ConvEncoder(Encoder):
    """Built-in CNN for images (B, H, W, C) in [0, 255] and spectrograms (B, T, F)."""

    modalities = ("image", "audio")

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/cnn/width", setting(self.spec, "width"), [16, 32], default=16)
        depth = pick(hp, f"{scope}/cnn/depth", setting(self.spec, "depth"), [2, 3], default=2)
        if self.spec.modality == "image":
            x = layers.Rescaling(1.0 / 255.0, name=f"{scope}_rescale")(inputs["image"])
        else:
            x = layers.Reshape((*inputs["spectrogram"].shape[1:], 1), name=f"{scope}_channel")(inputs["spectrogram"])
            # Log-mel values sit far from zero. Per-example normalisation needs no moving
            # statistics, which a few hundred CPU steps would leave far from converged.
            x = layers.LayerNormalization(axis=[1, 2], name=f"{scope}_inorm")(x)
        for i in range(depth):
            filters = width * (2 ** min(i, 2))
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{scope}_conv{i}")(x)
            # momentum 0.9: the moving statistics used at serving time settle within the
            # few dozen steps a small-data trial takes (Keras' 0.99 needs hundreds).
            x = layers.BatchNormalization(momentum=0.9, name=f"{scope}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{scope}_relu{i}")(x)
            if x.shape[1] >= 4 and x.shape[2] >= 4:
                x = layers.MaxPooling2D(2, name=f"{scope}_pool{i}")(x)
        pooled = layers.GlobalAveragePooling2D(name=f"{scope}_gap")(x)
        if self.spec.modality == "audio":
            # Time steps are the natural tokens of a spectrogram: average out frequency.
            tokens = layers.Reshape((x.shape[1], x.shape[3]), name=f"{scope}_tok")(
                layers.AveragePooling2D((1, x.shape[2]), name=f"{scope}_freqpool")(x)
            )
        else:
            tokens = layers.Reshape((x.shape[1] * x.shape[2], x.shape[3]), name=f"{scope}_tok")(x)
        return Encoded(pooled, tokens)
