"""Tabular encoders: an MLP over numbers and categorical embeddings (pooled) with one token
per feature, and an FT-Transformer that attends over those feature tokens."""

from keras import layers

from mmauto.encoders.base import ENCODERS, Encoded, Encoder, setting
from mmauto.hp import pick
from mmauto.layers import NumericTokens, mlp, transformer_block
from mmauto.modalities.tabular import category_sizes


class _FeatureTokens(Encoder):
    modalities = ("tabular",)

    def tokens(self, inputs, width, scope):
        parts = []
        if "numeric" in inputs:
            parts.append(NumericTokens(width, name=f"{scope}_numtok")(inputs["numeric"]))
        if "categorical" in inputs:
            size = sum(category_sizes(self.modality_state))
            parts.append(layers.Embedding(size, width, name=f"{scope}_catembed")(inputs["categorical"]))
        return parts[0] if len(parts) == 1 else layers.Concatenate(axis=1, name=f"{scope}_tokens")(parts)


@ENCODERS.register("mlp")
class MLPEncoder(_FeatureTokens):
    """Numbers and flattened category embeddings through a small MLP."""

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/mlp/width", setting(self.spec, "width"), [32, 64], default=32)
        depth = pick(hp, f"{scope}/mlp/depth", setting(self.spec, "depth"), [1, 2], default=2)
        tokens = self.tokens(inputs, width, scope)
        flat = layers.Flatten(name=f"{scope}_flat")(tokens)
        return Encoded(mlp(flat, width, depth, 0.1, f"{scope}_mlp"), tokens)


@ENCODERS.register("ft_transformer")
class FTTransformerEncoder(_FeatureTokens):
    """One token per feature, self-attention over features, mean-pooled."""

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/ft_transformer/width", setting(self.spec, "width"), [16, 32], default=16)
        depth = pick(hp, f"{scope}/ft_transformer/depth", setting(self.spec, "depth"), [1, 2], default=1)
        x = self.tokens(inputs, width, scope)
        for i in range(depth):
            x = transformer_block(x, 2, width, 0.1, f"{scope}_block{i}")
        x = layers.LayerNormalization(name=f"{scope}_ln")(x)
        return Encoded(layers.GlobalAveragePooling1D(name=f"{scope}_meanpool")(x), x)
