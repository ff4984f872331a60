"""Scalings of a classifier's logits beyond one temperature, fitted on validation (numpy and
scipy only): vector scaling (a scale and a bias per logit; for one sigmoid logit, Platt
scaling), matrix scaling for softmax outputs (Dirichlet calibration, Kull et al., 2019), beta
calibration for sigmoid outputs (Kull et al., 2017), and the choice among them
and temperature scaling (heads/calibration.py) that `calibrate: true` makes, by likelihood
ratio, served shrunk towards no scaling.
The heads apply the chosen values in `serve` (TF) and `expected` (numpy) alike."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mmauto.heads.calibration import (
    EPS_SIGMOID,
    EPS_SOFTMAX,
    MIN_GAIN,
    TEMPERATURE_BOUNDS,
    at_temperature_bound,
    fit_temperature,
    row_nll,
    sigmoid,
    sigmoid_nll,
    softmax_nll,
)

# Vector scaling: a scale and a bias per logit, L2-pulled towards one shared scale and no bias
# (so with few rows it falls back towards temperature scaling) with a weight of VECTOR_PRIOR /
# rows (a Gaussian prior worth a fixed number of rows; 4 is 0.01 on the AV-digits' 400
# validation rows, the best of 0.001 / 0.01 / 0.1 there by held-out log loss). Its 2 x classes
# parameters count against it in the choice below, so small validation splits keep temperature
# scaling. Sigmoid outputs share one scale and one bias (Platt scaling: a single parameter more
# than temperature scaling, which cannot move a shifted base rate).
VECTOR_PRIOR = 4.0
CV_FOLDS = 5
# With `calibrate: true` the scaling served is chosen, and shrunk towards none, by its
# likelihood-ratio statistic on the validation rows, LR = 2 n (log loss before - after), against
# the k parameters it fits: its fitted change of the logits is served times `shrinkage` =
# max(0, 1 - k / LR) (positive-part James-Stein: a scaling that gains no more than a chance fit of
# k parameters would on average is not served), and the scaling served is the one whose shrunk
# fit gains most by that estimate, (LR - k)^2 / LR (so a vector scaling's 2 x classes parameters
# must buy more than temperature scaling's one). The
# validation rows chose each trial's epoch and the ensemble's weights, so their gains carry over
# only in part. Offline on 20 kept bench fits (AV-digits, reviews, the several-target reviews),
# against an all-or-nothing gate at 2 standard errors of the cross-validated gain and against
# that gain's own shrinkage (max(0, 1 - 1/z^2)): mean test ECE 0.0200 / 0.0267 / 0.0257, mean
# test log loss 0.3112 / 0.3144 / 0.3135 (bench/RESULTS.md). The cross-validated gain was the
# weaker test: where a temperature of 0.83 fitted both 720 validation and 3,500 test rows, its
# cross-validated gain read 0.3 standard errors. The cross-validation's log losses stay in the
# card, for what each scaling does on held-out rows.
MIN_CV_ROWS = 100
# The scalings each kind of output may get, simplest first (the cross-validation's order).
SCALINGS = {"softmax": ("temperature", "vector", "matrix"), "sigmoid": ("temperature", "vector", "beta")}
# Matrix scaling's classes^2 + classes parameters are fitted (and tried by `calibrate: true`)
# only where the validation split has this many rows per parameter: a 5-class label from 600
# rows, 10 classes from 2,200. On the several-target reviews' 5-star Rating (720 validation
# rows, 30 parameters) `calibrate: true` chose it for one fit of three, and its test log loss
# fell from 0.838 (the vector scaling served before) to 0.808; fitted as pinned, 0.802, 0.812,
# 0.808 against vector scaling's 0.834, 0.824, 0.816 (bench/RESULTS.md). The bound also keeps
# the fit cheap for labels with many classes.
MATRIX_ROWS_PER_PARAMETER = 20


def _nll(z, y, kind: str, temperature: float = 1.0) -> float:
    return softmax_nll(z, y, temperature) if kind == "softmax" else sigmoid_nll(z, y, temperature)


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


def vector_logits(z, scale, bias, kind: str) -> np.ndarray:
    return z * scale + bias if kind == "softmax" else z * scale[0] + bias[0]


def tf_softmax_vector(y, scale, bias):
    """softmax(log(y) * scale + bias) in the served graph (TF, float32)."""
    import tensorflow as tf

    return tf.nn.softmax(tf.math.log(tf.maximum(y, EPS_SOFTMAX)) * scale + bias, axis=-1)


def tf_sigmoid_vector(p, scale, bias):
    """sigmoid(logit(p) * scale + bias) in the served graph (TF, float32)."""
    import tensorflow as tf

    p = tf.clip_by_value(p, EPS_SIGMOID, 1.0 - EPS_SIGMOID)
    return tf.sigmoid((tf.math.log(p) - tf.math.log1p(-p)) * scale + bias)


# === Matrix scaling ===
# softmax(log p W + b): each class's scaled logit may take from the others' (Dirichlet
# calibration, Kull et al., 2019), which fixes a model that confuses classes in a pattern, such
# as neighbouring stars of a rating, where a scale per class cannot. W is pulled towards a
# shared scale on its diagonal and 0 off it, b towards 0 (their ODIR), with vector scaling's
# prior: with few rows it falls back towards vector and temperature scaling.


def _matrix_loss(z, y, l2: float):
    """Log loss (and gradient) of softmax(z W + b) plus the L2 pulls; `w` = W row-major, then b."""
    n, c = z.shape
    onehot = np.eye(c)[y]

    def loss(w):
        m, b = w[: c * c].reshape(c, c), w[c * c:]
        s = z @ m + b
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        g = (np.exp(logp) - onehot) / n
        pull = m - np.diag(np.diag(m)) + np.diag(np.diag(m) - np.diag(m).mean())
        value = float(-np.mean(np.sum(logp * onehot, axis=1))) + l2 * float(np.sum(pull ** 2) + np.sum(b ** 2))
        return value, np.concatenate([(z.T @ g + 2 * l2 * pull).ravel(), g.sum(axis=0) + 2 * l2 * b])

    return loss, c


def fit_matrix(z, y, prior: float = VECTOR_PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """W (C, C) and b (C,) minimising the regularised log loss of softmax(z W + b) for logits
    z (N, C) and class indices y (L-BFGS from the identity)."""
    from scipy.optimize import minimize

    z, y = np.asarray(z, "float64"), np.asarray(y).astype(int)
    loss, c = _matrix_loss(z, y, prior / max(len(y), 1))
    res = minimize(loss, np.concatenate([np.eye(c).ravel(), np.zeros(c)]), jac=True, method="L-BFGS-B")
    return res.x[: c * c].reshape(c, c), res.x[c * c:]


def matrix_logits(z, matrix, bias) -> np.ndarray:
    return np.asarray(z) @ np.asarray(matrix) + bias


def tf_softmax_matrix(y, matrix, bias):
    """softmax(log(y) W + b) in the served graph (TF, float32)."""
    import tensorflow as tf

    return tf.nn.softmax(tf.matmul(tf.math.log(tf.maximum(y, EPS_SOFTMAX)), matrix) + bias, axis=-1)


def has_rows_for(method: str, kind: str, classes: int, rows: int) -> bool:
    """Whether `calibrate: true` tries `method` on this many validation rows (matrix scaling:
    MATRIX_ROWS_PER_PARAMETER per parameter)."""
    return method != "matrix" or rows >= MATRIX_ROWS_PER_PARAMETER * parameters(method, kind, classes)


# === Beta calibration ===
# logit p' = a ln p - b ln(1 - p) + c with a, b >= 0 (monotone in p); a = b is Platt scaling.
# A model's two sides may be off differently: on the reviews (3,523 validation rows) every kept
# ensemble fitted a ~ 0.6 and b ~ 1.55 (no prior), too unsure where it says positive and too sure
# where it says negative, which one scale cannot fix; offline there its test ECE was 0.016-0.020
# against 0.020-0.025 for temperature or Platt scaling (bench/RESULTS.md). Pulled towards a = b and no
# bias by a prior worth BETA_PRIOR rows: 1 gave the lowest cross-validated log loss on those
# runs' validation rows (0.5 to 2 within 0.0001 of it; none 0.0001 worse).
BETA_PRIOR = 1.0


def beta_features(z) -> np.ndarray:
    """(N, 2): ln p and -ln(1 - p) from the logits z = logit p (stably)."""
    z = np.asarray(z, "float64").reshape(-1)
    return np.stack([-np.logaddexp(0.0, -z), np.logaddexp(0.0, z)], axis=1)


def fit_beta(z, y, prior: float = BETA_PRIOR) -> np.ndarray:
    """(a, b, c) minimising the log loss of sigmoid(a ln p - b ln(1 - p) + c) on 0/1 `y`,
    plus the L2 pull of a and b towards their mean and of c towards 0 (L-BFGS-B from the
    identity, a, b >= 0)."""
    from scipy.optimize import minimize

    x, y = beta_features(z), np.asarray(y, "float64").reshape(-1)
    n = max(len(y), 1)
    l2 = prior / n

    def loss(w):
        s = x @ w[:2] + w[2]
        g = (sigmoid(s) - y) / n
        value = float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1 - y)))
        value += l2 * ((w[0] - w[1]) ** 2 / 2.0 + w[2] ** 2)  # a and b pulled to their mean, c to 0
        return value, np.concatenate([x.T @ g, [g.sum()]]) + l2 * np.array([w[0] - w[1], w[1] - w[0], 2.0 * w[2]])

    res = minimize(loss, np.array([1.0, 1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0, None), (0, None), (None, None)])
    return res.x


def beta_logits(z, w) -> np.ndarray:
    return beta_features(z) @ np.asarray(w[:2], "float64") + float(w[2])


def tf_sigmoid_beta(p, w):
    """sigmoid(a ln p - b ln(1 - p) + c) in the served graph (TF, float32)."""
    import tensorflow as tf

    p = tf.clip_by_value(p, EPS_SIGMOID, 1.0 - EPS_SIGMOID)
    return tf.sigmoid(w[0] * tf.math.log(p) - w[1] * tf.math.log1p(-p) + w[2])


# === The cross-validated choice ===


def _fitted_logits(method: str, z_fit, y_fit, kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """`method` fitted on (z_fit, y_fit), as a map from logits to scaled logits."""
    if method == "none":
        return lambda z: z
    if method == "temperature":
        t = fit_temperature(lambda t: _nll(z_fit, y_fit, kind, t))
        return lambda z: z / t
    if method == "vector":
        a, b = fit_vector(z_fit, y_fit, kind)
        return lambda z: vector_logits(z, a, b, kind)
    if method == "matrix":
        m, b = fit_matrix(z_fit, y_fit)
        return lambda z: matrix_logits(z, m, b)
    w = fit_beta(z_fit, y_fit)
    return lambda z: beta_logits(z, w)


def cross_validated_nll(z, y, kind: str, folds: int = CV_FOLDS, seed: int = 0) -> tuple[dict, dict]:
    """Held-out log loss of no scaling and of each of SCALINGS[kind], each fitted on the other
    folds of these rows (the same folds for all); and how many standard errors of the per-row
    differences each scaling's gain over no scaling is."""
    z, y = np.asarray(z, "float64"), np.asarray(y).astype(int)
    methods = ("none", *tried(kind, z, y))
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    rows = np.zeros((len(methods), len(y)))
    for k in range(folds):
        held = fold == k
        for i, m in enumerate(methods):
            rows[i, held] = row_nll(_fitted_logits(m, z[~held], y[~held], kind)(z[held]), y[held], kind)
    means = {m: round(float(v), 6) for m, v in zip(methods, rows.mean(axis=1))}
    gains = rows[0] - rows[1:]
    se = gains.std(axis=1, ddof=1) / math.sqrt(len(y))
    z_scores = {m: round(float(g.mean() / e), 3) if e > 0 else 0.0 for m, g, e in zip(methods[1:], gains, se)}
    return means, z_scores


def parameters(method: str, kind: str, classes: int) -> int:
    """The parameters a scaling fits: T; a scale and a bias per logit (one pair for a sigmoid);
    a matrix and a bias; a, b, c."""
    if method == "matrix":
        return classes * classes + classes
    return {"temperature": 1, "beta": 3}.get(method, 2 if kind == "sigmoid" else 2 * classes)


def tried(kind: str, z, y) -> tuple[str, ...]:
    """The scalings `calibrate: true` weighs on these rows: SCALINGS[kind] that `has_rows_for` them."""
    classes = z.shape[1] if np.ndim(z) > 1 else 1
    return tuple(m for m in SCALINGS[kind] if has_rows_for(m, kind, classes, len(y)))


def shrinkage(lr: float, k: int) -> float:
    """The fraction of a fitted scaling's change of the logits that is served, from its
    likelihood-ratio statistic and parameter count: max(0, 1 - k / LR)."""
    return round(1.0 - k / lr, 4) if lr > k else 0.0


def by_likelihood(z, y, kind: str, report: dict) -> tuple[dict, dict]:
    """Each scaling's likelihood-ratio statistic over the raw probabilities on these rows (the
    temperature only where `report` kept one: not at a bound) and its parameter count."""
    before, classes = _nll(z, y, kind), (z.shape[1] if z.ndim > 1 else 1)
    methods = [m for m in tried(kind, z, y) if m != "temperature" or report["applied"]]
    stats = {m: round(2 * len(y) * (before - _nll(_fitted(m, z, y, kind, 1.0, report["fitted_temperature"])[1], y, kind)), 3)
             for m in methods}
    return stats, {m: parameters(m, kind, classes) for m in methods}


def shrunk_temperature(report: dict, outcomes: int, nll: Callable[[float], float], ece_at: Callable[[float], float]) -> dict:
    """A kept temperature (`calibration.temperature_report`) served shrunk as `scaling_report`
    serves the scaling it chooses: its likelihood ratio over `outcomes` (rows x labels for a
    multilabel head, whose mean log loss `nll(T)` is per outcome) against its one parameter."""
    if not report["applied"]:
        return report
    t = report["fitted_temperature"]
    stats, k = {"temperature": round(2 * outcomes * (report["log_loss_before"] - nll(t)), 3)}, {"temperature": 1}
    weight = shrinkage(stats["temperature"], 1)
    extra = {"likelihood_ratio": stats, "parameters": k, "shrinkage": weight}
    if weight == 0.0:
        return _not_significant(report, extra, stats, k)
    served = shrunk_temperature_value(t, weight)
    return {**report, **extra, "temperature": served, "log_loss_after": round(nll(served), 6), "ece_after": round(ece_at(served), 6)}


def _not_significant(report: dict, extra: dict, stats: dict, k: dict) -> dict:
    """`report` with no scaling served: none gains more likelihood than a chance fit of its parameters would."""
    gains = ", ".join(f"{m} {v:.1f} for {k[m]}" for m, v in stats.items())
    return {**report, **extra, "applied": False, "temperature": 1.0, "log_loss_after": report["log_loss_before"],
            "ece_after": report["ece_before"],
            "not_kept": f"no scaling's likelihood ratio on the {report['rows']} validation rows is over its number of "
                        f"parameters ({gains})"}


def _fitted(method: str, z, y, kind: str, weight: float = 1.0, temperature: float = 1.0) -> tuple[dict, np.ndarray]:
    """The state entries `method` serves (rounded as stored) and the scaled logits they give:
    the fitted map's change of the logits times `weight` (`temperature`: the one fitted)."""
    if method == "temperature":
        t = shrunk_temperature_value(temperature, weight)
        return {"temperature": t}, z / t
    if method == "vector":
        a, b = (np.round(v, 6) for v in fit_vector(z, y, kind))
        a, b = np.round(1.0 - weight + weight * a, 6), np.round(weight * b, 6)
        return {"temperature": 1.0, "scale": [float(v) for v in a], "bias": [float(v) for v in b]}, vector_logits(z, a, b, kind)
    if method == "matrix":
        m, b = fit_matrix(z, y)
        m = np.round((1.0 - weight) * np.eye(len(m)) + weight * m, 6)
        b = np.round(weight * b, 6)
        return {"temperature": 1.0, "matrix": m.tolist(), "bias": [float(v) for v in b]}, matrix_logits(z, m, b)
    w = fit_beta(z, y)
    w = np.round([1.0 - weight + weight * w[0], 1.0 - weight + weight * w[1], weight * w[2]], 6)
    return {"temperature": 1.0, "beta": [float(v) for v in w]}, beta_logits(z, w)


def shrunk_temperature_value(temperature: float, weight: float) -> float:
    """The temperature whose change of the logits (1 / T - 1) is `weight` times the fitted one's."""
    return round(1.0 / (1.0 - weight + weight / temperature), 6)


def scaling_report(z, y, kind: str, mode, report: dict, ece_of: Callable[[np.ndarray], float]) -> dict:
    """Another scaling in place of `report`'s temperature scaling: the one `mode` pins
    ("vector"; "matrix" for softmax outputs, "beta" for sigmoid ones; kept when it lowers the
    validation log loss), or
    with `mode` True the one `by_likelihood` ranks first, served shrunk by its `shrinkage`;
    otherwise `report`. The cross-validated log losses are added with `mode` True."""
    z, y = np.asarray(z, "float64"), np.asarray(y).astype(int)
    if mode is not True:  # a pinned scaling's report has no temperature fitted: one is, to ask the question below
        t = fit_temperature(lambda t: _nll(z, y, kind, t))
        report = {**report, "method": mode, "fitted_temperature": round(t, 6)}
    # Separated perfectly (T at its lower bound): any scale fitted to these rows only grows. At
    # the upper bound (no better than chance) a bias may still move the base rate.
    t = report["fitted_temperature"]
    if at_temperature_bound(t, TEMPERATURE_BOUNDS[:1]):
        if mode is not True:
            report = {**report, "applied": False,
                      "not_kept": f"the validation rows are separated perfectly (a temperature fitted to them is at its bound {t:.3g})"}
        return {**report, "cross_validated_log_loss": None}
    method, weight, extra = mode, 1.0, {}
    if mode is True:
        cv, z_scores = cross_validated_nll(z, y, kind) if len(y) >= MIN_CV_ROWS else (None, None)
        stats, k = by_likelihood(z, y, kind, report)
        extra = {"likelihood_ratio": stats, "parameters": k, "cross_validated_log_loss": cv, "cross_validated_gain_z": z_scores}
        method = max(stats, key=lambda m: (stats[m] - k[m]) ** 2 / stats[m] if stats[m] > k[m] else 0.0, default=None)
        weight = shrinkage(stats[method], k[method]) if method is not None else 0.0
        if weight == 0.0:
            return _not_significant(report, {**extra, "method": method or "temperature"}, stats, k)
    values, s = _fitted(method, z, y, kind, weight, t)
    after = _nll(s, y, kind)
    if not after < report["log_loss_before"] - MIN_GAIN:
        if mode is not True:
            report = {**report, "method": method, "not_kept": "it did not lower the validation log loss"}
        return {**report, **extra}
    return {**report, **extra, "method": method, "applied": True, "not_kept": None, **values,
            "shrinkage": None if mode is not True else weight, "log_loss_after": round(after, 6), "ece_after": round(ece_of(s), 6)}


# === Ensemble members ===
# Greedy ensemble selection averages its members' probabilities. Members that are each
# overconfident average into a wrong shape that no later map of the average removes: on the
# same-digit task every trial fitted a temperature of 2.0-2.7 alone, and the average of five,
# served with a beta calibration, still gave rows at p 0.15-0.45 that were positive 40-62% of
# the time (test ECE 0.033 on 4,500 rows, bench/RESULTS.md). Each member is rescaled by its own
# temperature first, fitted and shrunk by its evidence as `calibrate: true` serves one.


def member_temperature(nll: Callable[[float], float], outcomes: int) -> float:
    """The temperature an ensemble member's probabilities are rescaled by before averaging: the
    one minimising `nll(T)` (the mean log loss per outcome on the validation rows), shrunk by
    its likelihood ratio over `outcomes` against its one parameter (`shrinkage`); 1.0 where it
    sits at a bound or does not lower the log loss."""
    t = fit_temperature(nll)
    before, after = nll(1.0), nll(t)
    if at_temperature_bound(t) or not after < before - MIN_GAIN:
        return 1.0
    return shrunk_temperature_value(t, shrinkage(2 * outcomes * (before - after), 1))
