"""Our streaming vocabulary fit tokenizes exactly as Keras' TextVectorization does."""

import keras
import numpy as np

from mmauto.encoders._text_vocab import count_tokens, fit_tfidf


class Opts:
    vocab_size = 1000
    ngrams = 2
    max_length = 8


TEXTS = np.array(["Great product, LOVE it!", "not great... broken? (again)", "", "it's   fine\tREALLY fine",
                  "Ünïcode wörds — and dashes-here", "great great great"], dtype=object)


def test_tokens_match_textvectorization():
    tv = keras.layers.TextVectorization(ngrams=2, output_mode="tf_idf")
    tv.adapt([t for t in TEXTS if t])
    keras_vocab = set(tv.get_vocabulary(include_special_tokens=False))
    terms, _, n = count_tokens(TEXTS, 2)
    assert set(terms) == keras_vocab and n == 5


def test_tfidf_weights_match_adapt():
    tv = keras.layers.TextVectorization(ngrams=2, output_mode="tf_idf")
    tv.adapt([t for t in TEXTS if t])
    ours = fit_tfidf(Opts, TEXTS)
    theirs = dict(zip(tv.get_vocabulary(include_special_tokens=False), tv._lookup_layer.idf_weights.numpy()[1:]))
    assert all(abs(theirs[t] - w) < 1e-5 for t, w in zip(ours["vocab"], ours["idf"]))
