"""Stage `linear`: before the search, scikit-learn's logistic regression over the text inputs'
TF-IDF vectors, kept as one more candidate of the ensemble (stage `ensemble`).

Why: on the clothing reviews a TF-IDF + logistic regression matched every network the search
found, and its errors differ from theirs: the networks, trained by Adam and stopped after the
epoch the validation rows liked best, all land near one solution, the regression at its convex
optimum somewhere else. Averaging the two beat both (bench/RESULTS.md, issue 13). It costs
seconds of CPU, and runs before the search so those seconds come out of the budget the search
plans with. Only for a classification head of one target with text inputs a TF-IDF encoder
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
# Inverse regularisation strengths tried; the one with the lowest validation log loss is kept.
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
    val_predictions: np.ndarray  # (rows, head units), as the trials keep theirs
    strength: float  # scikit-learn's C
    validation: float  # validation log loss


def linear(run: Run, data: Prepared) -> Optional[LinearMember]:
    names = _text_inputs(run, data)
    if not names:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from mmauto.heads.wrapper import unwrapped
    from mmauto.model.linear import linear_model
    from mmauto.search.oracles import save_npy_atomic

    t0 = time.time()
    prep = data.prep
    feeds = {n: prep.encoder_inputs(n, "tfidf")["tfidf"][:2] for n in names}
    x_train, x_val = (_features(prep, data.datasets[s], feeds, limit) for s, limit in (("train", MAX_ROWS), ("validation", None)))
    y_train = _labels(prep, data.splits["train"].frame)[: x_train.shape[0]]
    y_val = _labels(prep, data.splits["validation"].frame)
    classes = max(unwrapped(prep.head).units, 2)  # a binary head's one unit: two classes
    if len(np.unique(y_train)) < 2:
        return None
    best = None
    for c in STRENGTHS:
        if best is not None and run.budget is not None and time.time() - t0 > BUDGET_SHARE * run.budget:
            break
        fitted = LogisticRegression(C=c, max_iter=1000).fit(x_train, y_train)
        proba = np.zeros((x_val.shape[0], classes))
        proba[:, fitted.classes_] = fitted.predict_proba(x_val)
        proba = np.clip(proba, 1e-7, 1.0)
        loss = log_loss(y_val, proba / proba.sum(axis=1, keepdims=True), labels=list(range(classes)))
        if best is None or loss < best[0]:
            best = (loss, c, fitted)
    loss, c, fitted = best
    kernel, bias = _weights(fitted, classes, x_train.shape[1])
    model, keys = linear_model(prep.head, {n: (k, s) for n, (k, s) in feeds.items()}, kernel, bias)
    val = prep.batches(data.datasets["validation"], BATCH, {n: "tfidf" for n in names}, keys)
    # Through the Keras model, not scikit-learn's predict_proba: the kept predictions are then
    # exactly what the exported graph serves (one more TF-IDF pass over validation, seconds).
    preds = np.asarray(model.predict(val, verbose=0), "float32")
    preds = preds.reshape(len(preds), -1)
    # Beside the trials' (search/trial_<id>/val_predictions.npy), outside keras-tuner's folder.
    save_npy_atomic(run.run_dir / LINEAR_ID / "val_predictions.npy", preds)
    run.emit(events.Notice(text=f"linear model (TF-IDF of {', '.join(names)}, logistic regression C={c:g}): validation "
                                f"log loss {loss:.4f}, an ensemble candidate ({time.time() - t0:.0f}s)"))
    return LinearMember(model, keys, {n: "tfidf" for n in names}, preds, c, float(loss))


def _text_inputs(run: Run, data: Prepared) -> list[str]:
    """The inputs the linear model reads; none where it does not apply."""
    from mmauto.heads.binary import BinaryHead
    from mmauto.heads.classification import MulticlassHead
    from mmauto.heads.wrapper import unwrapped

    m = run.manifest
    if not m.search.linear or m.train.ensemble is False or m.retrieval or run.role == "worker":
        return []
    if type(unwrapped(data.prep.head)) not in (BinaryHead, MulticlassHead):
        return []
    return [n for n in m.inputs if "tfidf" in data.prep.candidates(n)]


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


def _labels(prep, frame) -> np.ndarray:
    """Class indices as the model trains on them (binary: 0/1)."""
    y = np.asarray(prep.targets(frame))
    return (y.reshape(-1) if y.ndim == 1 or y.shape[1] == 1 else y.argmax(axis=1)).astype(int)


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
