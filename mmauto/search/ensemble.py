"""Greedy ensemble selection over the search's trials (Caruana et al., 2004), in numpy.

Each completed trial keeps its validation predictions (search/trial_<id>/val_predictions.npy;
see MmautoTuner._save_val_predictions). Starting from an empty ensemble, each step adds, with
replacement, the trial whose predictions, averaged into the ensemble's, lower the validation
loss most; after `size` steps the ensemble is cut back to the step with the lowest loss. A
trial picked k times of n gets weight k / n. This is the algorithm AutoGluon's
`EnsembleSelection` and auto-sklearn use, without their random tie-breaking: a tie goes to the
trial already in the ensemble (fewer members), then to the better single trial, then to the
smaller trial id, so the result depends on the inputs only.

Predictions are what the model outputs: (rows, classes) probabilities for multiclass,
(rows, 1) sigmoid for binary, (rows, labels) sigmoids for multilabel, (rows, 1) values for
regression. Targets as the model trains on them: class indices for multiclass, 0/1 for binary
and multilabel, (standardised) values for regression.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

KINDS = ("multiclass", "binary", "multilabel", "regression")
# Probabilities are clipped this far from 0 and 1 before a log loss (as scikit-learn does for float32).
EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A validation loss: `fn(targets, predictions)`, lower is better."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]

    def __call__(self, targets: np.ndarray, predictions: np.ndarray) -> float:
        return float(self.fn(targets, predictions))


@dataclasses.dataclass
class Ensemble:
    members: list[str]  # trial ids, in the order they first joined
    weights: list[float]  # one per member, summing to 1
    score: float  # the ensemble's validation loss (`metric`, lower is better)
    best_single: str  # the trial with the lowest validation loss alone
    best_single_score: float
    metric: str
    trajectory: list[float]  # the loss after each greedy step, before the cut

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def scorer(kind: str, objective: str | None = None) -> Scorer:
    """The loss ensemble selection minimises for a task kind ('multiclass', 'binary',
    'multilabel', 'regression'). Default: log loss for classification (smooth, so the greedy
    steps see small gains that accuracy would hide), RMSE for regression. `objective`, a search
    objective such as 'val_accuracy', 'val_auc', 'val_rmse' or 'val_mae', asks for that metric
    instead, as a loss (1 - accuracy, 1 - AUC); 'val_loss' or None keeps the default."""
    from sklearn import metrics

    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
    base = (objective or "loss").removeprefix("val_")
    if kind == "regression":
        if base in ("loss", "rmse", "mse"):
            return Scorer("rmse", lambda y, p: metrics.root_mean_squared_error(y.reshape(-1), p.reshape(-1)))
        if base == "mae":
            return Scorer("mae", lambda y, p: metrics.mean_absolute_error(y.reshape(-1), p.reshape(-1)))
        raise ValueError(f"no ensemble metric for objective {objective!r} in regression")
    if base in ("loss", "log_loss"):
        return Scorer("log_loss", _LOG_LOSS[kind])
    if base == "accuracy":
        return Scorer("error_rate", lambda y, p: 1.0 - metrics.accuracy_score(*_labels(kind, y, p)))
    if base == "auc":
        return Scorer("1-auc", lambda y, p: 1.0 - _auc(kind, y, p))
    raise ValueError(f"no ensemble metric for objective {objective!r} in {kind}")


def _multiclass_log_loss(y, p):
    from sklearn.metrics import log_loss

    p = np.clip(p, EPS, 1.0)
    return log_loss(y.reshape(-1).astype(int), p / p.sum(axis=1, keepdims=True), labels=np.arange(p.shape[1]))


def _binary_log_loss(y, p):
    from sklearn.metrics import log_loss

    p = np.clip(p.reshape(-1), EPS, 1.0 - EPS)
    return log_loss(y.reshape(-1).astype(int), np.stack([1.0 - p, p], axis=1), labels=[0, 1])


def _multilabel_log_loss(y, p):
    # The mean of each label's binary log loss (what the model's BinaryCrossentropy trains on).
    return float(np.mean([_binary_log_loss(y[:, j], p[:, j]) for j in range(p.shape[1])]))


_LOG_LOSS = {"multiclass": _multiclass_log_loss, "binary": _binary_log_loss, "multilabel": _multilabel_log_loss}


def _labels(kind, y, p):
    if kind == "multiclass":
        return y.reshape(-1).astype(int), p.argmax(axis=1)
    if kind == "binary":
        return y.reshape(-1).astype(int), (p.reshape(-1) >= 0.5).astype(int)
    return y.astype(int).ravel(), (p >= 0.5).astype(int).ravel()  # multilabel: per label


def _auc(kind, y, p):
    from sklearn.metrics import roc_auc_score

    if kind == "multiclass":
        return roc_auc_score(y.reshape(-1).astype(int), p / p.sum(axis=1, keepdims=True), multi_class="ovr", labels=np.arange(p.shape[1]))
    if kind == "binary":
        return roc_auc_score(y.reshape(-1).astype(int), p.reshape(-1))
    return roc_auc_score(y.astype(int), p, average="macro")


def select(predictions: Mapping[str, np.ndarray], targets: np.ndarray, loss: Scorer | Callable, size: int = 25,
           sorted_init: int = 0) -> Ensemble:
    """Greedy ensemble selection with replacement (see the module docstring).

    predictions: trial id -> validation predictions, all of one shape (rows, outputs).
    targets: the validation targets, rows first. loss: a `Scorer` or `fn(targets, predictions)`,
    lower is better. size: the greedy steps (at most this many picks). sorted_init: start from
    the n best single trials, each once (AutoGluon's and auto-sklearn's sorted initialisation).
    Trials whose predictions are not finite are left out.
    """
    if size < 1:
        raise ValueError("size: at least 1 step")
    score = loss if isinstance(loss, Scorer) else Scorer(getattr(loss, "__name__", "loss"), loss)
    y = np.asarray(targets)
    ids, preds = [], []
    for tid, p in predictions.items():
        p = np.asarray(p, dtype=np.float64)
        p = p.reshape(len(p), -1)
        if len(p) != len(y):
            raise ValueError(f"trial {tid}: {len(p)} prediction rows for {len(y)} targets")
        if preds and p.shape != preds[0].shape:
            raise ValueError(f"trial {tid}: predictions of shape {p.shape}, others {preds[0].shape}")
        if np.all(np.isfinite(p)):
            ids.append(str(tid))
            preds.append(p)
    if not preds:
        raise ValueError("no trial with finite validation predictions")

    single = [score(y, p) for p in preds]
    # Preference on equal loss: the better single trial, then the smaller id (numeric ids by value).
    rank = sorted(range(len(ids)), key=lambda i: (single[i], _id_key(ids[i])))
    picks: list[int] = rank[: min(sorted_init, size)]
    start = max(len(picks), 1)  # trajectory[k] is the loss of the first start + k picks
    total = np.sum([preds[i] for i in picks], axis=0) if picks else np.zeros_like(preds[0])
    trajectory = [score(y, total / len(picks))] if picks else []
    for _ in range(size - len(picks)):
        n = len(picks)
        best, best_loss = None, np.inf
        for i in rank:
            value = score(y, (total + preds[i]) / (n + 1))
            if best is None or _better(value, best_loss) or (_tie(value, best_loss) and i in picks and best not in picks):
                best, best_loss = i, value
        picks.append(best)
        total = total + preds[best]
        trajectory.append(best_loss)
    # Cut back to the best step; on a tie, the earliest (fewest picks).
    lowest = min(trajectory)
    cut = next(k for k, v in enumerate(trajectory) if v <= lowest or _tie(v, lowest))
    kept = picks[: start + cut]
    members = list(dict.fromkeys(kept))
    weights = [kept.count(i) / len(kept) for i in members]
    best_single = rank[0]
    return Ensemble(
        members=[ids[i] for i in members],
        weights=weights,
        score=float(trajectory[cut]),
        best_single=ids[best_single],
        best_single_score=float(single[best_single]),
        metric=score.name,
        trajectory=[float(v) for v in trajectory],
    )


def blend(predictions: Mapping[str, np.ndarray], members: list[str], weights: list[float]) -> np.ndarray:
    """The ensemble's predictions: the members' predictions weighted and summed (float32)."""
    out = None
    for tid, w in zip(members, weights):
        p = np.asarray(predictions[tid], dtype=np.float64)
        p = p.reshape(len(p), -1) * w
        out = p if out is None else out + p
    if out is None:
        raise ValueError("an ensemble of no member")
    return out.astype(np.float32)


def load(search_dir, trial_ids=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The validation predictions a search kept (trial id -> array; all trials that have
    them, or `trial_ids`) and the validation targets, from a run's `search` folder."""
    from pathlib import Path

    folder = Path(search_dir)
    targets = np.load(folder / "val_targets.npy")
    preds = {}
    for f in sorted(folder.glob("trial_*/val_predictions.npy")):
        tid = f.parent.name[len("trial_"):]
        if trial_ids is None or tid in trial_ids:
            preds[tid] = np.load(f)
    return preds, targets


# Relative tolerance under which two losses count as equal (float noise of averaging).
TIE_RTOL = 1e-9


def _tie(a: float, b: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and abs(a - b) <= TIE_RTOL * max(abs(a), abs(b), 1e-12))


def _better(a: float, b: float) -> bool:
    return a < b and not _tie(a, b)


def _id_key(tid: str):
    return (0, int(tid), tid) if tid.isdigit() else (1, 0, tid)
