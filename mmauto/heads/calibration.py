"""Post-hoc calibration on validation predictions, shared by the heads (numpy and scipy only):
temperature scaling (Guo et al., 2017; the other scalings and the choice among them are in
heads/scaling.py), expected calibration error and its floor on a finite set, decision
thresholds and split-conformal intervals. The heads decide which applies to their task (heads/*.py `calibrate`)
and apply the fitted values in `serve` (TF) and `expected` (numpy) alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import numpy as np

ECE_BINS = 15
# Probabilities are clipped before log/logit; float32 sigmoid outputs reach exactly 0 and 1.
EPS_SOFTMAX = 1e-12
EPS_SIGMOID = 1e-7
TEMPERATURE_BOUNDS = (0.05, 20.0)
# Calibration is kept only when it lowers the validation log loss by more than this.
MIN_GAIN = 1e-6
FLOOR_DRAWS = 100


def ece(confidence, correct, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy - mean confidence| per equal-width bin of the
    confidence, weighted by the bin's share of the rows. For a binary prediction, `confidence`
    is p and `correct` whether the row is positive (a reliability curve on p)."""
    conf = np.asarray(confidence, "float64").reshape(-1)
    hit = np.asarray(correct, "float64").reshape(-1)
    if not len(conf):
        return 0.0
    which = np.clip(np.floor(conf * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    hit_sum = np.bincount(which, weights=hit, minlength=bins)
    used = counts > 0
    return float(np.sum(np.abs(hit_sum[used] - conf_sum[used])) / len(conf))


def ece_floor(confidence, bins: int = ECE_BINS, draws: int = FLOOR_DRAWS, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these confidences would show on this many
    rows: the mean over `draws` of the ECE with each row right with probability equal to its
    confidence. ECE is biased upwards on a finite set (about 0.05 for a 10-class model at 80%
    accuracy on 300 rows); an ECE at or below the floor cannot be told from calibrated."""
    conf = np.asarray(confidence, "float64").reshape(-1)
    if not len(conf):
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.mean([ece(conf, rng.random(len(conf)) < conf, bins) for _ in range(draws)]))


# === Temperature scaling ===


# The clipping is done in float32, as the served graph does it (TF), so both see the same values.


def softmax_logits(p) -> np.ndarray:
    """Log-probabilities (any constant offset is harmless under softmax)."""
    p = np.maximum(np.asarray(p, "float32"), np.float32(EPS_SOFTMAX))
    return np.log(p.astype("float64"))


def sigmoid_logits(p) -> np.ndarray:
    p = np.clip(np.asarray(p, "float32"), np.float32(EPS_SIGMOID), np.float32(1.0 - EPS_SIGMOID)).astype("float64")
    return np.log(p) - np.log1p(-p)


def tf_softmax_scaled(y, temperature: float):
    """softmax(log(y) / T) in the served graph (TF, float32)."""
    import tensorflow as tf

    return tf.nn.softmax(tf.math.log(tf.maximum(y, EPS_SOFTMAX)) / temperature, axis=-1)


def tf_sigmoid_scaled(p, temperature: float):
    """sigmoid(logit(p) / T) in the served graph (TF, float32)."""
    import tensorflow as tf

    p = tf.clip_by_value(p, EPS_SIGMOID, 1.0 - EPS_SIGMOID)
    return tf.sigmoid((tf.math.log(p) - tf.math.log1p(-p)) / temperature)


def softmax(z) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, "float64")))


def softmax_nll(z: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of class indices `y` under softmax(z / T)."""
    return float(np.mean(row_nll(z / temperature, y, "softmax")))


def sigmoid_nll(z: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of 0/1 targets `y` under sigmoid(z / T) (every element)."""
    return float(np.mean(row_nll(z / temperature, y, "sigmoid")))


def row_nll(z, y, kind: str) -> np.ndarray:
    """Each row's log loss of softmax(z) (class indices y) or sigmoid(z) (0/1 y; every element,
    computed stably)."""
    if kind == "sigmoid":
        return np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)
    s = z - z.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y]


def fit_temperature(nll: Callable[[float], float]) -> float:
    """The temperature in TEMPERATURE_BOUNDS minimising `nll(T)` (a bounded 1-D search on log T;
    the NLL is convex in 1/T)."""
    from scipy.optimize import minimize_scalar

    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    res = minimize_scalar(lambda u: nll(math.exp(u)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(res.x))


def at_temperature_bound(t: float, bounds: tuple = TEMPERATURE_BOUNDS) -> bool:
    """Whether a fitted temperature sits at one of `bounds` (both TEMPERATURE_BOUNDS unless given)."""
    return any(abs(math.log(t / b)) < 0.01 for b in bounds)


def temperature_report(z, nll: Callable[[float], float], ece_at: Callable[[float], float], enabled: bool) -> dict:
    """Fit T; `applied` only when it lowers the validation log loss and lies inside
    TEMPERATURE_BOUNDS. ECE and log loss before (T = 1) and after (the served T) on validation."""
    before = nll(1.0)
    t = fit_temperature(nll) if enabled else 1.0
    after = nll(t)
    # At a bound the log loss was still falling: validation rows that the model separates
    # perfectly (T -> 0) or predicts no better than chance (T -> inf); neither is a
    # temperature to serve.
    at_bound = at_temperature_bound(t)
    applied = bool(enabled and after < before - MIN_GAIN and not at_bound)
    why = None if applied or not enabled else (
        f"the fitted temperature is at its bound {t:.3g} (the validation rows are separated perfectly, or not at all)"
        if at_bound else "it did not lower the validation log loss")
    return {"method": "temperature" if enabled else None, "applied": applied, "temperature": round(t, 6) if applied else 1.0,
            "fitted_temperature": round(t, 6), "not_kept": why, "split": "validation", "rows": int(len(z)),
            "log_loss_before": round(before, 6), "log_loss_after": round(after if applied else before, 6),
            "ece_before": round(ece_at(1.0), 6), "ece_after": round(ece_at(t if applied else 1.0), 6),
            "ece_bins": ECE_BINS}


# === Thresholds ===


def _scores(y: np.ndarray, pred: np.ndarray, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(pred == y))
    tp = float(np.sum(pred & y))
    denom = float(np.sum(pred) + np.sum(y))
    return 2 * tp / denom if denom else 0.0


def choose_threshold(p, y, metric: str = "accuracy", default: float = 0.5) -> float:
    """The threshold on p (label positive when p >= threshold) that maximises `metric`
    ("accuracy" or "f1") on these rows; ties go to the candidate nearest `default`, so the
    default stays unless a different threshold is strictly better. Candidates are the
    midpoints between consecutive distinct probabilities."""
    p = np.asarray(p, "float64").reshape(-1)
    y = np.asarray(y).reshape(-1).astype(bool)
    if not len(p) or y.all() or not y.any():
        return float(default)
    u = np.unique(p)
    cands = np.concatenate([[default], (u[:-1] + u[1:]) / 2.0]) if len(u) > 1 else np.array([default])
    cands = cands[(cands > 0) & (cands < 1)]
    best, best_t = -1.0, float(default)
    for t in sorted(cands, key=lambda c: abs(c - default)):
        s = _scores(y, p >= t, metric)
        if s > best + 1e-12:
            best, best_t = s, float(t)
    return round(best_t, 6)


# === Conformal intervals ===


def conformal_half_width(residuals, coverage: float) -> Optional[float]:
    """Split conformal prediction: the ceil((n + 1) * coverage)-th smallest |y - yhat| on the
    calibration rows, so a new exchangeable row falls within +- it with probability >= coverage.
    None when there are too few rows for that coverage (n < coverage / (1 - coverage))."""
    r = np.sort(np.abs(np.asarray(residuals, "float64").reshape(-1)))
    n = len(r)
    k = math.ceil((n + 1) * coverage)
    if n == 0 or k > n:
        return None
    return float(r[k - 1])


# === An ensemble member's blocks rescaled (heads' `member_scaling`, layers.ScaleProbabilities) ===


def scaled_blocks(y, blocks: list[dict]) -> np.ndarray:
    """`y` (N, D) with each block's columns [start, stop) rescaled by its temperature:
    sigmoid(logit p / T) per column ("sigmoid") or softmax(log p / T) over the block
    ("softmax"); the other columns unchanged. The numpy twin of layers.ScaleProbabilities."""
    out = np.array(y, "float32", copy=True)
    for b in blocks:
        p, t = out[:, b["start"]: b["stop"]], float(b["temperature"])
        if b["kind"] == "sigmoid":
            out[:, b["start"]: b["stop"]] = sigmoid(sigmoid_logits(p) / t)
        else:
            out[:, b["start"]: b["stop"]] = softmax(softmax_logits(p) / t)
    return out
