"""Evaluation metrics in numpy (no scikit-learn dependency)."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Binary ROC-AUC by the rank-sum formula (ties get average ranks)."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = np.asarray(score)[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def classification(y_true: list[str], probs: np.ndarray, classes: list[str]) -> dict:
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in y_true])
    pred = probs.argmax(axis=1)
    n = len(classes)
    cm = np.zeros((n, n), dtype=int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    f1s, per_class = [], {}
    for i, c in enumerate(classes):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per_class[c] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "support": int(cm[i, :].sum())}
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    if n == 2:
        auc = roc_auc(y == 1, probs[:, 1])
    else:
        aucs = [roc_auc(y == i, probs[:, i]) for i in range(n)]
        aucs = [a for a in aucs if a is not None]
        auc = float(np.mean(aucs)) if aucs else None
    return {
        "rows": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(np.mean(f1s)),
        "log_loss": float(-np.log(p_true).mean()),
        "roc_auc": auc,
        "confusion_matrix": {"labels": classes, "matrix": cm.tolist()},
        "per_class": per_class,
    }


def multilabel(y_true: list[list[str]], probs: np.ndarray, classes: list[str], threshold: float) -> dict:
    y = np.zeros_like(probs, dtype=bool)
    index = {c: i for i, c in enumerate(classes)}
    for r, labels in enumerate(y_true):
        for l in labels:
            if l in index:
                y[r, index[l]] = True
    pred = probs >= threshold
    f1s = []
    for i in range(len(classes)):
        tp = (pred[:, i] & y[:, i]).sum()
        prec = tp / pred[:, i].sum() if pred[:, i].sum() else 0.0
        rec = tp / y[:, i].sum() if y[:, i].sum() else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    aucs = [a for a in (roc_auc(y[:, i], probs[:, i]) for i in range(len(classes))) if a is not None]
    return {"rows": int(len(y)), "subset_accuracy": float((pred == y).all(axis=1).mean()),
            "label_accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(f1s)),
            "roc_auc": float(np.mean(aucs)) if aucs else None}


def regression(y_true, pred) -> dict:
    y, p = np.asarray(y_true, float), np.asarray(pred, float)
    err = p - y
    ss = ((y - y.mean()) ** 2).sum()
    return {"rows": int(len(y)), "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())),
            "r2": float(1 - (err**2).sum() / ss) if ss > 0 else None}
