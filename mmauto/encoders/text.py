"""Built-in text encoders: TF-IDF bag of n-grams (strong on small data), a conv stack and a
small transformer over a training-split vocabulary."""

from keras import layers

from mmauto.encoders import _text_vocab as vocab
from mmauto.encoders.base import ENCODERS, Encoded, Encoder, setting
from mmauto.hp import pick
from mmauto.layers import MaskedMean, PositionEmbedding, TokenMask, transformer_block


@ENCODERS.register("tfidf")
class TfidfEncoder(Encoder):
    """TF-IDF of word n-grams, L2-normalised, then one linear projection (no tokens)."""

    modalities = ("text",)
    prep = "tfidf"

    def fit_prep(self, raw_train):
        return vocab.fit_tfidf(self.options, raw_train[self.spec.name])

    def make_prep(self, state):
        return vocab.TfidfPrep(self.options, state)

    def prep_spec(self, state):
        return {"tfidf": ((len(state["vocab"] or ["empty"]) + 1,), "float32")}

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/tfidf/width", setting(self.spec, "width"), [32, 64], default=64)
        x = layers.UnitNormalization(name=f"{scope}_l2")(inputs["tfidf"])
        x = layers.Dropout(0.2, name=f"{scope}_drop")(x)
        return Encoded(layers.Dense(width, name=f"{scope}_proj")(x))


class _IdsEncoder(Encoder):
    modalities = ("text",)
    prep = "ids"

    def fit_prep(self, raw_train):
        return vocab.fit_ids(self.options, raw_train[self.spec.name])

    def make_prep(self, state):
        return vocab.IdsPrep(self.options, state)

    def prep_spec(self, state):
        return {"ids": ((self.options.max_length,), "int32")}

    def embed(self, inputs, width, scope):
        size = len(self.prep_state["vocab"] or ["empty"]) + 2
        return layers.Embedding(size, width, name=f"{scope}_embed")(inputs["ids"])


@ENCODERS.register("textcnn")
class TextConvEncoder(_IdsEncoder):
    """Word embeddings and a 1-D conv stack; max-pooled vector, conv outputs as tokens."""

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/textcnn/width", setting(self.spec, "width"), [32, 64], default=32)
        depth = pick(hp, f"{scope}/textcnn/depth", setting(self.spec, "depth"), [1, 2], default=1)
        x = self.embed(inputs, width, scope)
        for i in range(depth):
            x = layers.Conv1D(width, 3, padding="same", activation="relu", name=f"{scope}_conv{i}")(x)
        return Encoded(layers.GlobalMaxPooling1D(name=f"{scope}_maxpool")(x), x, TokenMask(name=f"{scope}_mask")(inputs["ids"]))


@ENCODERS.register("transformer")
class TextTransformerEncoder(_IdsEncoder):
    """Word and position embeddings and a few self-attention blocks; mean-pooled."""

    def build(self, hp, inputs, scope):
        width = pick(hp, f"{scope}/transformer/width", setting(self.spec, "width"), [32, 64], default=32)
        depth = pick(hp, f"{scope}/transformer/depth", setting(self.spec, "depth"), [1, 2], default=1)
        mask = TokenMask(name=f"{scope}_mask")(inputs["ids"])
        x = PositionEmbedding(name=f"{scope}_pos")(self.embed(inputs, width, scope))
        for i in range(depth):
            x = transformer_block(x, 2, width, 0.1, f"{scope}_block{i}", mask=mask)
        x = layers.LayerNormalization(name=f"{scope}_ln")(x)
        return Encoded(MaskedMean(name=f"{scope}_meanpool")(x, mask), x, mask)
