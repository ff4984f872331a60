"""The Keras loss and metric wrappers of a multi-target model (see multi.py): each target
reads its own columns of the targets array and of the model's output, and skips the rows
whose target value is NaN (missing)."""

from __future__ import annotations

import keras
from keras import ops


def _present(y_true, a: int, b: int):
    """(the target's columns with NaN as 0, float mask of the rows that have it)."""
    t = ops.cast(y_true, "float32")[:, a:b]
    mask = ops.cast(ops.logical_not(ops.isnan(t[:, 0])), "float32")
    return ops.where(ops.isnan(t), ops.zeros_like(t), t), mask


class MaskedTargetsLoss(keras.losses.Loss):
    """Sum over targets of weight * (the target's loss averaged over the rows that have it).
    `parts`: (head loss, true columns, output columns, class weights or None) per target;
    `log_vars`: the learned log-variances of `loss_weights: auto`, or None."""

    def __init__(self, parts, weights, log_vars=None, name="targets_loss"):
        super().__init__(name=name)
        self.parts, self.target_weights, self.log_vars = parts, list(weights), log_vars

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        total = 0.0
        for i, (loss, (a, b), (c, d), cw) in enumerate(self.parts):
            t, mask = _present(y_true, a, b)
            per = ops.cast(loss.call(t, y_pred[:, c:d]), "float32")
            if cw is not None:
                idx = ops.clip(ops.cast(t[:, 0], "int32"), 0, len(cw) - 1)
                per = per * ops.take(ops.convert_to_tensor(cw), idx)
            # Keras divides the sum by the batch size: this makes it the mean over the rows
            # that have the target, so a sparse target weighs as much as a full one.
            per = per * mask / ops.maximum(ops.mean(mask), 1e-6)
            if self.log_vars is None:
                total = total + self.target_weights[i] * per
            else:
                s = ops.cast(self.log_vars[i], "float32")
                total = total + ops.exp(-s) * per + s
        return total


class MaskedMetric(keras.metrics.Metric):
    """A head's metric on its target's columns, over the rows that have the target."""

    def __init__(self, inner, true_slice, pred_slice, name):
        super().__init__(name=name)
        self.inner, self.true_slice, self.pred_slice = inner, true_slice, pred_slice

    def update_state(self, y_true, y_pred, sample_weight=None):
        (a, b), (c, d) = self.true_slice, self.pred_slice
        t, mask = _present(y_true, a, b)
        return self.inner.update_state(t, y_pred[:, c:d], sample_weight=mask)

    def result(self):
        return self.inner.result()

    def reset_state(self):
        self.inner.reset_state()
