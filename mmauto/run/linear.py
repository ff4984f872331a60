"""Stage `linear`: before the search, scikit-learn's logistic regression (ridge regression for a
regression target) over the text inputs' TF-IDF vectors, kept as one more candidate of the
ensemble (stage `ensemble`).

Why: on the clothing reviews a TF-IDF + logistic regression matched every network the search
found, and its errors differ from theirs: the networks, trained by Adam and stopped after the
epoch the validation rows liked best, all land near one solution, the regression at its convex
optimum somewhere else. Averaging the two beat both (bench/RESULTS.md, issue 13). It costs
seconds of CPU, and runs before the search so those seconds come out of the budget the search
plans with. With several targets, one regression per served classification or regression
target (its weights chosen per target by the ensemble). Only with text inputs a TF-IDF encoder
may read; `search.linear: false` turns it off.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np

from mmauto import events
from mmauto.data.keys import present_key
from mmauto.run.context import Prepared, Run

# The member's id beside the trials' in the ensemble, its card and the leaderboard's message.
LINEAR_ID = "linear"
# Inverse regularisation strengths tried (C; ridge: 1 / alpha); the one with the lowest
# validation loss is kept.
STRENGTHS = (0.3, 1.0, 3.0, 10.0)
# Training rows the regression sees at most (the first ones): its cost stays seconds.
MAX_ROWS = 50_000
# Under a time budget, no further strength is tried once the stage has used this share of it.
BUDGET_SHARE = 0.1
BATCH = 1024


@dataclasses.dataclass
class LinearMember:
    """The fitted linear model as an ensemble candidate."""

    model: Any  # keras.Model over the prepared inputs (model/linear.py)
    input_keys: list
    encoders: dict  # input -> "tfidf"
    val_predictions: np.ndarray  # (rows, head units), as the trials keep theirs (NaN: a target not fitted)
    fits: dict  # target column -> TargetFit, for the targets it fitted

    @property
    def strength(self) -> float:
        """The first fitted target's strength (scikit-learn's C; ridge: 1 / alpha)."""
        return next(iter(self.fits.values())).strength


@dataclasses.dataclass
class TargetFit:
    """One target's regression: its strength and validation loss (log loss; squared error in
    standard deviations for a regression target)."""

    kind: str  # "logistic" or "ridge"
    strength: float
    validation: float
    estimator: Any


@dataclasses.dataclass
class Block:
    """One target's columns of the model's output, and what the stage does with them."""

    column: str
    head: Any
    label_column: Optional[int]  # its column in the training targets array; None: the only target
    pred_slice: tuple
    kind: Optional[str]  # "logistic", "ridge", or None (not fitted: zero logits)


def linear(run: Run, data: Prepared) -> Optional[LinearMember]:
    names = _text_inputs(run, data)
    blocks = _blocks(data.prep.head) if names else []
    if not any(b.kind for b in blocks):
        return None
    from mmauto.model.linear import linear_model
    from mmauto.search.oracles import save_npy_atomic

    t0 = time.time()
    prep = data.prep
    feeds = {n: prep.encoder_inputs(n, "tfidf")["tfidf"][:2] for n in names}
    x_train, x_val = (_features(prep, data.datasets[s], feeds, limit) for s, limit in (("train", MAX_ROWS), ("validation", None)))
    y_train, y_val = (np.asarray(prep.targets(data.splits[s].frame), "float64") for s in ("train", "validation"))
    fits = {}
    for b in blocks:
        got = _fit(run, t0, b, (x_train, _labels(y_train[: x_train.shape[0]], b)), (x_val, _labels(y_val, b))) if b.kind else None
        if got is not None:
            fits[b.column] = got
    if not fits:
        return None
    kernel, bias = _layout(blocks, fits, x_train.shape[1])
    model, keys = linear_model(prep.head, {n: (k, s) for n, (k, s) in feeds.items()}, kernel, bias)
    val = prep.batches(data.datasets["validation"], BATCH, {n: "tfidf" for n in names}, keys)
    # Through the Keras model, not scikit-learn's predict_proba: the kept predictions are then
    # exactly what the exported graph serves (one more TF-IDF pass over validation, seconds).
    preds = np.asarray(model.predict(val, verbose=0), "float32")
    preds = preds.reshape(len(preds), -1)
    for b in blocks:  # a target it did not fit: the ensemble selection leaves it out for that target
        if b.column not in fits:
            preds[:, b.pred_slice[0] : b.pred_slice[1]] = np.nan
    # Beside the trials' (search/trial_<id>/val_predictions.npy), outside keras-tuner's folder.
    save_npy_atomic(run.run_dir / LINEAR_ID / "val_predictions.npy", preds)
    said = "; ".join(f"{c}: {'logistic regression C' if f.kind == 'logistic' else 'ridge 1/alpha'}={f.strength:g}, validation "
                     f"{'log loss' if f.kind == 'logistic' else 'squared error'} {f.validation:.4f}" for c, f in fits.items())
    run.emit(events.Info(text=f"linear model (TF-IDF of {', '.join(names)}; {said}): an ensemble candidate ({time.time() - t0:.0f}s)"))
    return LinearMember(model, keys, {n: "tfidf" for n in names}, preds, fits)


def _text_inputs(run: Run, data: Prepared) -> list[str]:
    """The inputs the linear model reads; none where it does not apply."""
    m = run.manifest
    if not m.search.linear or m.train.ensemble is False or m.retrieval or run.role == "worker":
        return []
    return [n for n in m.inputs if "tfidf" in data.prep.candidates(n)]


def _blocks(head) -> list[Block]:
    """Per target, in the order of the model's output: a logistic regression for a served
    classification target (one label per row), a ridge regression for a served regression
    target, nothing (zero logits) for a multilabel or auxiliary one."""
    from mmauto.heads.binary import BinaryHead
    from mmauto.heads.classification import MulticlassHead
    from mmauto.heads.multi import MultiHead
    from mmauto.heads.regression import RegressionHead
    from mmauto.heads.wrapper import unwrapped

    def kind(h, auxiliary=False):
        if auxiliary:
            return None
        return {BinaryHead: "logistic", MulticlassHead: "logistic", RegressionHead: "ridge"}.get(type(h))

    head = unwrapped(head)
    if isinstance(head, MultiHead):
        return [Block(s.column, h, a, p, kind(h, s.auxiliary))
                for s, h, (a, _), p in zip(head.specs, head.heads, head.true_slices, head.pred_slices)]
    return [Block(head.target, head, None, (0, head.units), kind(head))] if kind(head) else []


def _labels(y: np.ndarray, b: Block) -> np.ndarray:
    """The block's training target per row, as its head encodes it (class index, or the value
    in standard deviations); NaN where the row has none (several targets)."""
    if b.label_column is not None:
        y = y[:, b.label_column]
    elif y.ndim > 1 and y.shape[1] > 1:  # one-hot classes
        y = y.argmax(axis=1)
    return y.reshape(-1)


def _fit(run: Run, t0: float, b: Block, train: tuple, val: tuple) -> Optional[TargetFit]:
    """The block's regression at the strength with the lowest validation loss (no further
    strength once the stage has used BUDGET_SHARE of a time budget); None when its training
    rows hold one class, or none."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import log_loss

    (x, y), (xv, yv) = ((m[~np.isnan(t)], t[~np.isnan(t)]) for m, t in (train, val))
    if not len(y) or not len(yv) or (b.kind == "logistic" and len(np.unique(y)) < 2):
        return None
    classes = max(b.head.units, 2)  # a binary head's one unit: two classes
    best = None
    for c in STRENGTHS:
        if best is not None and run.budget is not None and time.time() - t0 > BUDGET_SHARE * run.budget:
            break
        if b.kind == "ridge":
            est = Ridge(alpha=1.0 / c).fit(x, y)
            loss = float(np.mean((est.predict(xv) - yv) ** 2))
        else:
            est = LogisticRegression(C=c, max_iter=1000).fit(x, y.astype(int))
            proba = np.zeros((xv.shape[0], classes))
            proba[:, est.classes_] = est.predict_proba(xv)
            proba = np.clip(proba, 1e-7, 1.0)
            loss = float(log_loss(yv.astype(int), proba / proba.sum(axis=1, keepdims=True), labels=list(range(classes))))
        if best is None or loss < best.validation:
            best = TargetFit(b.kind, c, loss, est)
    return best


def _layout(blocks: list[Block], fits: dict, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The Dense layer's kernel (features, units) and bias: each fitted target's logits in its
    columns, zeros in the others'."""
    kernel, bias = np.zeros((width, blocks[-1].pred_slice[1])), np.zeros(blocks[-1].pred_slice[1])
    for b in blocks:
        f = fits.get(b.column)
        if f is None:
            continue
        a, e = b.pred_slice
        if f.kind == "ridge":
            kernel[:, a], bias[a] = f.estimator.coef_.reshape(-1), float(np.ravel(f.estimator.intercept_)[0])
        else:
            kernel[:, a:e], bias[a:e] = _weights(f.estimator, max(b.head.units, 2), width)
    return kernel, bias


def _features(prep, decoded, feeds: dict, limit: Optional[int]):
    """The rows' L2-normalised TF-IDF vectors side by side, sparse (at most `limit` rows)."""
    from scipy import sparse

    from mmauto.model.linear import tfidf_rows

    keys = [k for n, (key, _) in feeds.items() for k in (key, present_key(n))]
    blocks, rows = [], 0
    for item in prep.batches(decoded, BATCH, {n: "tfidf" for n in feeds}, keys):
        feats = item[0] if isinstance(item, tuple) else item
        parts = [sparse.csr_matrix(tfidf_rows(feats[key].numpy(), feats[present_key(n)].numpy())) for n, (key, _) in feeds.items()]
        blocks.append(sparse.hstack(parts, format="csr"))
        rows += blocks[-1].shape[0]
        if limit is not None and rows >= limit:
            break
    x = sparse.vstack(blocks, format="csr")
    return x if limit is None else x[:limit]


def _weights(fitted, classes: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The regression's coefficients as a Dense layer's kernel (features, units) and bias:
    one logit for a binary head, one per class for a multiclass one (a class the training
    rows lack gets a logit that never wins)."""
    if classes == 2:
        return fitted.coef_.T.copy(), fitted.intercept_.copy()
    kernel, bias = np.zeros((width, classes)), np.full(classes, -30.0)
    if len(fitted.classes_) == 2:  # two classes seen: scikit-learn's one logit is the second's against 0
        bias[fitted.classes_[0]] = 0.0
        kernel[:, fitted.classes_[1]], bias[fitted.classes_[1]] = fitted.coef_[0], fitted.intercept_[0]
    else:
        kernel[:, fitted.classes_] = fitted.coef_.T
        bias[fitted.classes_] = fitted.intercept_
    return kernel, bias
