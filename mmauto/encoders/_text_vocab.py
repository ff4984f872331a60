"""Shared text preprocessing of the built-in text encoders: a vocabulary from the training
split, run in tf.data and in the exported graph by Keras `TextVectorization`."""

from __future__ import annotations

import numpy as np


def _texts(texts):
    return [t for t in texts.tolist() if t] or ["empty"]


def fit_ids(options, texts) -> dict:
    import keras

    tv = keras.layers.TextVectorization(max_tokens=options.vocab_size, output_mode="int")
    tv.adapt(np.array(_texts(texts), dtype=object), batch_size=1024)
    return {"vocab": [str(v) for v in tv.get_vocabulary(include_special_tokens=False)]}


def fit_tfidf(options, texts) -> dict:
    import keras

    tv = keras.layers.TextVectorization(max_tokens=options.vocab_size, ngrams=options.ngrams, output_mode="tf_idf")
    tv.adapt(np.array(_texts(texts), dtype=object), batch_size=1024)
    vocab = [str(v) for v in tv.get_vocabulary(include_special_tokens=False)]
    idf = np.asarray(tv._lookup_layer.idf_weights.numpy(), dtype="float64")[1:]  # [0] is the OOV token
    return {"vocab": vocab, "idf": [float(x) for x in idf]}


class IdsPrep:
    """strings -> int32 token ids [N, max_length] (0 = padding, 1 = out of vocabulary)."""

    def __init__(self, options, state):
        import keras

        self.layer = keras.layers.TextVectorization(
            output_mode="int", output_sequence_length=options.max_length, vocabulary=state["vocab"] or ["empty"]
        )
        self.vocab_size = self.layer.vocabulary_size()

    def __call__(self, decoded):
        import tensorflow as tf

        return {"ids": tf.cast(self.layer(decoded["text"]), tf.int32)}


class TfidfPrep:
    """strings -> TF-IDF weights of word n-grams [N, vocabulary]."""

    def __init__(self, options, state):
        import keras

        vocab, idf = (state["vocab"], state["idf"]) if state["vocab"] else (["empty"], [1.0])
        self.layer = keras.layers.TextVectorization(
            output_mode="tf_idf", ngrams=options.ngrams, vocabulary=vocab, idf_weights=np.array(idf, "float32")
        )
        self.vocab_size = self.layer.vocabulary_size()

    def __call__(self, decoded):
        return {"tfidf": self.layer(decoded["text"])}
