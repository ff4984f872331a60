"""The encoder of precomputed embeddings: a projection and a small MLP.

It returns no tokens: a vector has no parts to attend over, and every token-reading fusion
already takes an input without tokens as one token (its pooled vector), so a (B, 1, D)
sequence would only add a second projection of the same vector.
"""

from keras import layers

from mmauto.encoders.base import ENCODERS, Encoded, Encoder, setting
from mmauto.hp import pick
from mmauto.layers import mlp


@ENCODERS.register("projection")
class ProjectionEncoder(Encoder):
    """Dense projection of the standardised vector, then `depth` ReLU layers (0: none)."""

    modalities = ("embedding",)

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/projection/width", setting(self.spec, "width"), [32, 64, 128], default=64)
        depth = pick(hp, f"{scope}/projection/depth", setting(self.spec, "depth"), [0, 1, 2], default=1)
        x = layers.Dropout(0.1, name=f"{scope}_drop")(inputs["vector"])
        x = layers.Dense(width, name=f"{scope}_proj")(x)
        return Encoded(mlp(x, width, depth, 0.1, f"{scope}_mlp"))
