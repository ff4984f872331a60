"""Shared text preprocessing of the built-in text encoders: a vocabulary from the training
split, run in tf.data and in the exported graph by Keras `TextVectorization`.

Fitting counts tokens ourselves, in batches, with the very TF ops TextVectorization uses
(lower-case, strip punctuation, split on whitespace, n-grams): Keras' own `adapt` took 30 s and
870 MB for 80k short reviews with bigrams, and memory must not grow with the data.
tests/test_text_vocab.py checks that the result matches `adapt`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

# TextVectorization's "lower_and_strip_punctuation".
STRIP = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
BATCH = 4096


def count_tokens(texts, ngrams: int = 1) -> tuple[Counter, Counter, int]:
    """(term counts, document counts, documents) over non-empty texts."""
    import tensorflow as tf

    terms, docs, n_docs = Counter(), Counter(), 0
    texts = [t for t in texts.tolist() if t]
    for start in range(0, len(texts), BATCH):
        x = tf.strings.regex_replace(tf.strings.lower(tf.constant(texts[start : start + BATCH])), STRIP, "")
        tokens = tf.strings.split(x)
        if ngrams > 1:
            tokens = tf.strings.ngrams(tokens, ngram_width=tuple(range(1, ngrams + 1)), separator=" ")
        for row in tokens.to_list():
            row = [t.decode("utf-8", "replace") for t in row]
            terms.update(row)
            docs.update(set(row))
            n_docs += 1
    return terms, docs, n_docs


def top(terms: Counter, size: int) -> list[str]:
    # Most frequent first; ties in a fixed order so a refit gives the same vocabulary.
    return [t for t, _ in sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))][:size]


def fit_ids(options, texts) -> dict:
    terms, _, _ = count_tokens(texts)
    return {"vocab": top(terms, options.vocab_size - 2)}  # ids 0 and 1: padding and out-of-vocabulary


def fit_tfidf(options, texts) -> dict:
    terms, docs, n = count_tokens(texts, options.ngrams)
    vocab = top(terms, options.vocab_size - 1)  # id 0: out-of-vocabulary
    # Keras' formula, so weights read like those of TextVectorization.adapt.
    idf = [float(np.log(1 + n / (1 + docs[t]))) for t in vocab]
    return {"vocab": vocab, "idf": idf}


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
