"""Accuracy on real data: each data set searched with `mmauto.api.fit` under a time budget.

AV-digits (MNIST + FSDD, image+audio, and each modality alone under the same budget) and the
women's clothing reviews (text + table; two targets). Each result row: test accuracy (and
ROC-AUC for a binary target), wall time of the fit, completed trials, best fusion and encoders.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
from common import Skipped, log, trials_only

# AV-digits: seconds per fit (the same for the multimodal model and each modality alone).
BUDGETS = {
    False: {"av_budget": 180, "av_trials": 6, "clothing_rows": 6000, "clothing_budget": 210, "clothing_trials": 8},
    True: {"av_budget": 30, "av_trials": 2, "av_epochs": 8, "av_train_per_digit": 20, "av_test_per_digit": 5,
           "clothing_rows": 1500, "clothing_budget": 35, "clothing_trials": 2, "clothing_epochs": 3},
}


def _progress(label: str):
    def on_event(event):
        if event.kind == "trial_end":
            t = event.trial
            score = f"{t.score:.4f}" if t.score is not None else "-"
            secs = event.seconds
            log(f"  {label}: trial {t.trial_id} {str(t.status).lower()} score={score}" + (f" in {secs:.1f}s" if secs else ""))
    return on_event


def fit_one(label: str, manifest: Path, out: Path, budget: float, max_trials: int, epochs=None) -> dict:
    """One budgeted search through the public API; returns the figures of a result row."""
    from mmauto import api

    log(f"{label}: fit, budget {budget:.0f}s, up to {max_trials} trials")
    t0 = time.perf_counter()
    summary = api.fit(manifest, out, max_trials=max_trials, time_budget=budget, epochs=epochs, overwrite=True,
                      on_event=_progress(label))
    wall = time.perf_counter() - t0
    test = summary["metrics"].get("test") or {}
    board = json.loads((Path(out) / "leaderboard.json").read_text())
    return {
        "tuner": summary.get("tuner") or datasets.search_tuner(),
        "accuracy": test.get("accuracy"),
        "roc_auc": test.get("roc_auc"),
        "macro_f1": test.get("macro_f1"),
        "test_rows": test.get("rows"),
        "validation_accuracy": (summary["metrics"].get("validation") or {}).get("accuracy"),
        "wall_seconds": round(wall, 1),
        "time_budget": budget,
        "trials": summary["trials"],
        "failed_trials": summary["failed_trials"],
        "best_fusion": summary["fusion"],
        "encoders": summary["encoders"],
        "stop_reason": summary["stop_reason"],
        "trial_seconds": [r["seconds"] for r in sorted(trials_only(board), key=lambda r: int(r["trial"]))],
        "trial_fusions": [r["fusion"] for r in sorted(trials_only(board), key=lambda r: int(r["trial"]))],
    }


def av_digits(tmp: Path, quick: bool) -> dict:
    cfg = BUDGETS[quick]
    folder = tmp / "av_digits"
    made = datasets.av_digits(folder, seed=0, train_per_digit=cfg.get("av_train_per_digit"),
                              test_per_digit=cfg.get("av_test_per_digit"))
    out = {"dataset": "AV-digits (MNIST test images + FSDD spoken digits, paired by digit)",
           "train_rows": made["train_rows"], "test_rows": made["test_rows"],
           "note": ("FSDD official test split (recording index 0-4) as test; validation 15% of train; "
                    "pairing: a fixed per-digit permutation of MNIST images (seed 0), no image reused"
                    + ("; --quick: 20 train and 5 test rows per digit" if quick else "")),
           "results": {}}
    for name, manifest in made["manifests"].items():
        out["results"][name] = fit_one(f"av_digits {name}", manifest, folder / f"run_{name.replace(' ', '_').replace('+', '_')}",
                                       cfg["av_budget"], cfg["av_trials"], cfg.get("av_epochs"))
    return out


def clothing(tmp: Path, quick: bool) -> dict:
    cfg = BUDGETS[quick]
    folder = tmp / "clothing"
    made = datasets.clothing(folder, rows=cfg["clothing_rows"], seed=0)
    out = {"dataset": "Women's clothing reviews (text: Review Text, Title; table: Age, Positive Feedback Count, "
                      "Division/Department/Class Name)",
           "rows": made["rows"], "of_rows": made["of_rows"], "train_rows": made["train_rows"], "test_rows": made["test_rows"],
           "note": f"random subsample of {made['rows']} of {made['of_rows']} rows (seed 0); 20% test, 15% of the rest validation; "
                   "the other target column dropped; spaces in column names replaced by underscores; empty text is a missing input",
           "results": {}}
    targets = list(made["manifests"].items())
    if quick:
        targets = targets[:1]
        out["skipped"] = {"Rating": "--quick runs only Recommended_IND"}
    for target, manifest in targets:
        out["results"][target] = fit_one(f"clothing {target}", manifest, manifest.parent / "run",
                                         cfg["clothing_budget"], cfg["clothing_trials"], cfg.get("clothing_epochs"))
    return out


def run_accuracy(name: str, tmp: Path, quick: bool) -> dict:
    fn = {"av_digits": av_digits, "clothing": clothing}[name]
    try:
        return fn(tmp, quick)
    except Skipped as exc:
        log(f"{name}: skipped: {exc}")
        return {"skipped": str(exc)}
