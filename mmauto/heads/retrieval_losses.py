"""The Keras loss and metric of a retrieval model (see retrieval.py): both read the model's
output, the n inputs' L2-normalised embeddings side by side ([N, n * dim]). The rows
themselves are the matching pairs; `y_true` is [N, n], 1.0 where the row has the input and
0.0 where it is missing: a row missing either side of a pair neither anchors that pair's loss
nor serves as a negative in it (as in model/objectives.py ContrastiveAlignment). Imported only
when a model is built."""

from __future__ import annotations

import keras
from keras import ops

from mmauto.layers import RETRIEVAL_MAX_LOGIT_SCALE


def _blocks(y_pred, n: int) -> list:
    return ops.split(ops.cast(y_pred, "float32"), n, axis=-1)


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


class InfoNCELoss(keras.losses.Loss):
    """Symmetric InfoNCE over in-batch negatives (CLIP, Radford et al., 2021), for every pair of
    the n inputs: logits = exp(s) * A @ B.T with s the learned log-scale (clipped to
    [0, log 100]); per row, the mean over pairs of (CE(row -> its match among B) + CE(its match
    -> row among A)) / 2. Keras averages the rows."""

    def __init__(self, n: int, logit_scale, name="infonce"):
        super().__init__(name=name)
        self.n, self.logit_scale = int(n), logit_scale

    def scale(self):
        return ops.exp(ops.clip(ops.cast(self.logit_scale, "float32"), 0.0, RETRIEVAL_MAX_LOGIT_SCALE))

    def call(self, y_true, y_pred):
        z = _blocks(y_pred, self.n)
        have = ops.cast(y_true, "float32")
        scale = self.scale()
        rows = ops.shape(z[0])[0]
        labels = ops.arange(rows)
        total = 0.0
        for i, j in _pairs(self.n):
            both = have[:, i] * have[:, j]
            # Rows without the pair: out of the softmax as candidates (in both directions: the
            # mask goes on the columns after the transpose), and out of the mean.
            logits = scale * ops.matmul(z[i], ops.transpose(z[j]))
            off = (1.0 - ops.expand_dims(both, 0)) * -1e9
            a = keras.losses.sparse_categorical_crossentropy(labels, logits + off, from_logits=True)
            b = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits) + off, from_logits=True)
            # Keras averages over all rows: rescale to the mean over the rows that have the pair.
            total = total + (a + b) * 0.5 * both * ops.cast(rows, "float32") / ops.maximum(ops.sum(both), 1.0)
        return total / len(_pairs(self.n))


class InBatchRecall(keras.metrics.Metric):
    """Recall@1 within each batch: the share of rows whose own match is the most similar
    (cosine) of the batch's rows of the other input, over both directions of every pair. It
    depends on the batch size (more candidates: harder); the search compares trials with it,
    `mmauto evaluate` ranks over the whole split (retrieval.py `score`)."""

    def __init__(self, n: int, name="recall_at_1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n = int(n)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        z = _blocks(y_pred, self.n)
        have = ops.cast(y_true, "float32")
        rows = ops.shape(z[0])[0]
        idx = ops.arange(rows)
        for i, j in _pairs(self.n):
            both = have[:, i] * have[:, j]  # rows with the pair: the queries and the candidates
            sim = ops.matmul(z[i], ops.transpose(z[j]))
            for s in (sim, ops.transpose(sim)):
                # The match counts as found when no other candidate scores strictly higher.
                own = ops.sum(s * ops.one_hot(idx, rows), axis=-1, keepdims=True)
                better = ops.cast(s > own, "float32") * ops.expand_dims(both, 0)
                found = ops.cast(ops.sum(better, axis=-1) == 0, "float32") * both
                self.hits.assign_add(ops.sum(found))
                self.count.assign_add(ops.sum(both))

    def result(self):
        return ops.divide_no_nan(self.hits, self.count)

    def reset_state(self):
        self.hits.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "n": self.n}
