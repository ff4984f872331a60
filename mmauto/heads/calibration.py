"""Post-hoc calibration on validation predictions, shared by the heads (numpy and scipy only):
temperature and vector scaling (Guo et al., 2017; for one logit vector scaling is Platt's),
expected calibration error and its floor on a finite set, decision thresholds and
split-conformal intervals. The heads decide which applies to their task (heads/*.py `calibrate`)
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
# Vector scaling: a scale and a bias per logit, L2-pulled towards one shared scale and no bias
# (so with few rows it falls back towards temperature scaling) with a weight of VECTOR_PRIOR /
# rows (a Gaussian prior worth a fixed number of rows; 4 is 0.01 on the AV-digits' 400
# validation rows, the best of 0.001 / 0.01 / 0.1 there by held-out log loss). `calibrate: true` serves it
# only when its log loss on held-out validation rows (CV_FOLDS-fold cross-validation) is lower
# than temperature scaling's by VECTOR_MARGIN (relative): one parameter per class overfits
# small validation splits, where temperature scaling stays the safer fit. Sigmoid outputs
# share one scale and one bias (Platt scaling: a single parameter more than temperature
# scaling, which cannot move a shifted base rate), kept whenever the cross-validation prefers
# it: on four kept fits of the reviews (3,523 test rows) test ECE 0.018 on average against
# temperature scaling's 0.020, 0.015 against 0.024 on the one whose cross-validated gain was
# 0.35% (bench/RESULTS.md).
VECTOR_PRIOR = 4.0
VECTOR_MARGIN = {"softmax": 0.01, "sigmoid": 0.0}
CV_FOLDS = 5
# With `calibrate: true` a scaling is served only when its cross-validated log-loss gain over
# the raw probabilities is this many standard errors of the per-row gains or more. The
# validation rows chose each trial's epoch and the ensemble's weights, so a small gain on them
# does not carry over: on the reviews (3,523 validation rows) temperature scaling won the
# cross-validation by 1.4 standard errors and raised the test ECE from 0.019 to 0.022
# (bench/RESULTS.md); where calibration matters the gain is many standard errors.
CV_SIGNIFICANCE = 2.0
MIN_CV_ROWS = 100
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


def tf_softmax_vector(y, scale, bias):
    """softmax(log(y) * scale + bias) in the served graph (TF, float32)."""
    import tensorflow as tf

    return tf.nn.softmax(tf.math.log(tf.maximum(y, EPS_SOFTMAX)) * scale + bias, axis=-1)


def tf_sigmoid_vector(p, scale, bias):
    """sigmoid(logit(p) * scale + bias) in the served graph (TF, float32)."""
    import tensorflow as tf

    p = tf.clip_by_value(p, EPS_SIGMOID, 1.0 - EPS_SIGMOID)
    return tf.sigmoid((tf.math.log(p) - tf.math.log1p(-p)) * scale + bias)


def softmax(z) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, "float64")))


def softmax_nll(z: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of class indices `y` under softmax(z / T)."""
    return float(np.mean(_row_nll(z / temperature, y, "softmax")))


def sigmoid_nll(z: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of 0/1 targets `y` under sigmoid(z / T) (every element)."""
    return float(np.mean(_row_nll(z / temperature, y, "sigmoid")))


def _row_nll(z, y, kind: str) -> np.ndarray:
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


def at_temperature_bound(t: float) -> bool:
    return any(abs(math.log(t / b)) < 0.01 for b in TEMPERATURE_BOUNDS)


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


# === Vector scaling ===


def _affine_loss(z, y, kind: str, l2: float):
    """Log loss (and its gradient) of softmax or sigmoid(z * scale + bias), plus the L2 pull of
    the scales towards their mean and of the biases towards 0; `w` = scales then biases."""
    if kind == "sigmoid":
        z = z.reshape(-1, 1)
        onehot = y.reshape(-1, 1).astype("float64")
    else:
        onehot = np.eye(z.shape[1])[y]
    c, n = z.shape[1], len(z)

    def loss(w):
        a, b = w[:c], w[c:]
        s = z * a + b
        if kind == "sigmoid":
            p = sigmoid(s)
            value = float(np.mean(np.logaddexp(0.0, -s) * onehot + np.logaddexp(0.0, s) * (1 - onehot)))
        else:
            s = s - s.max(axis=1, keepdims=True)
            logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
            p, value = np.exp(logp), float(-np.mean(np.sum(logp * onehot, axis=1)))
        g = (p - onehot) / n
        da = a - a.mean() if c > 1 else a - 1.0
        value += l2 * float(np.sum(da ** 2) + np.sum(b ** 2))
        return value, np.concatenate([(g * z).sum(axis=0) + 2 * l2 * da, g.sum(axis=0) + 2 * l2 * b])

    return loss, c


def fit_vector(z, y, kind: str, prior: float = VECTOR_PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """Scales and biases minimising the regularised log loss of `kind` ("softmax": z (N, C) and
    class indices y; "sigmoid": z (N,) and 0/1 y, Platt scaling) (L-BFGS from the identity)."""
    from scipy.optimize import minimize

    z, y = np.asarray(z, "float64"), np.asarray(y).astype(int)
    loss, c = _affine_loss(z, y, kind, prior / max(len(y), 1))
    res = minimize(loss, np.concatenate([np.ones(c), np.zeros(c)]), jac=True, method="L-BFGS-B")
    return res.x[:c], res.x[c:]


def _nll(z, y, kind: str, temperature: float = 1.0) -> float:
    return softmax_nll(z, y, temperature) if kind == "softmax" else sigmoid_nll(z, y, temperature)


def _vector_logits(z, scale, bias, kind: str) -> np.ndarray:
    return z * scale + bias if kind == "softmax" else z * scale[0] + bias[0]


def _held_out_losses(z, y, kind: str) -> tuple:
    """Per-row log loss of (none, temperature, vector) on the second half of (z, y), fitted on the first."""
    (zf, zh), (yf, yh) = z, y
    t = fit_temperature(lambda t: _nll(zf, yf, kind, t))
    a, b = fit_vector(zf, yf, kind)
    return _row_nll(zh, yh, kind), _row_nll(zh / t, yh, kind), _row_nll(_vector_logits(zh, a, b, kind), yh, kind)


def cross_validated_nll(z, y, kind: str, folds: int = CV_FOLDS, seed: int = 0) -> tuple[dict, dict]:
    """Held-out log loss of no scaling, temperature and vector scaling, each fitted on the
    other folds of these rows (the same folds for all three); and how many standard errors of
    the per-row differences each scaling's gain over no scaling is."""
    z, y = np.asarray(z, "float64"), np.asarray(y).astype(int)
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    rows = np.zeros((3, len(y)))
    for k in range(folds):
        held = fold == k
        rows[:, held] = _held_out_losses((z[~held], z[held]), (y[~held], y[held]), kind)
    means = {name: round(float(v), 6) for name, v in zip(("none", "temperature", "vector"), rows.mean(axis=1))}
    gains = rows[0] - rows[1:]
    se = gains.std(axis=1, ddof=1) / math.sqrt(len(y))
    z_scores = {name: round(float(g.mean() / e), 3) if e > 0 else 0.0 for name, g, e in zip(("temperature", "vector"), gains, se)}
    return means, z_scores


def _not_significant(report: dict, cv: dict, z_scores: dict, method: str) -> dict:
    """`report` with no scaling served: `method`'s cross-validated gain is too small to tell from noise."""
    gain = cv["none"] - cv[method]
    return {**report, "method": method, "applied": False, "temperature": 1.0, "log_loss_after": report["log_loss_before"],
            "ece_after": report["ece_before"], "cross_validated_log_loss": cv, "cross_validated_gain_z": z_scores,
            "not_kept": f"its cross-validated gain over the raw probabilities ({gain:.4f} log loss, {z_scores[method]:.1f} "
                        f"standard errors on {report['rows']} validation rows) is under the {CV_SIGNIFICANCE:g} needed"}


def vector_report(z, y, kind: str, mode, report: dict, ece_of: Callable[[np.ndarray], float]) -> dict:
    """Vector scaling in place of `report`'s temperature scaling, when `mode` is "vector"
    (and it lowers the validation log loss) or True (and it wins the cross-validation by
    VECTOR_MARGIN); otherwise `report` with the cross-validated log losses added. With `mode`
    True, the scaling chosen is served only when its cross-validated gain over no scaling is
    CV_SIGNIFICANCE standard errors or more."""
    if at_temperature_bound(report["fitted_temperature"]):  # separated perfectly, or not at all: nothing to fit
        return {**report, "cross_validated_log_loss": None}
    z, y = np.asarray(z, "float64"), np.asarray(y).astype(int)
    cv, z_scores = cross_validated_nll(z, y, kind) if mode is True and len(y) >= MIN_CV_ROWS else (None, None)
    if mode is True and (cv is None or not cv["vector"] < min(cv["none"], cv["temperature"] * (1 - VECTOR_MARGIN[kind]))):
        if cv is not None and report["applied"] and z_scores["temperature"] < CV_SIGNIFICANCE:
            return _not_significant(report, cv, z_scores, "temperature")
        return {**report, "cross_validated_log_loss": cv, "cross_validated_gain_z": z_scores}
    if mode is True and z_scores["vector"] < CV_SIGNIFICANCE:
        return _not_significant(report, cv, z_scores, "vector")
    a, b = (np.round(v, 6) for v in fit_vector(z, y, kind))  # as served (the state holds them rounded)
    s = _vector_logits(z, a, b, kind)
    after = _nll(s, y, kind)
    if not after < report["log_loss_before"] - MIN_GAIN:
        if mode == "vector":
            report = {**report, "method": "vector", "not_kept": "it did not lower the validation log loss"}
        return {**report, "cross_validated_log_loss": cv, "cross_validated_gain_z": z_scores}
    return {**report, "method": "vector", "applied": True, "temperature": 1.0, "not_kept": None,
            "scale": [float(v) for v in a], "bias": [float(v) for v in b],
            "log_loss_after": round(after, 6), "ece_after": round(ece_of(s), 6), "cross_validated_log_loss": cv,
            "cross_validated_gain_z": z_scores}


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
