"""The leaderboard: one row per trial, ranked by the objective; JSON and CSV in RUN_DIR."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from mmauto.heads import objective_direction
from mmauto.search.oracles import replica_of


def leaderboard(tuner, objective: str) -> list[dict]:
    """One row per trial of the tuner (an `MmautoTuner`), best first."""
    records = tuner.trial_records()
    rows = []
    for tid, trial in sorted(tuner.oracle.trials.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
        hp = trial.hyperparameters.values
        score = trial.score
        status = str(trial.status).lower()
        fusion = hp.get("fusion")
        row = {
            "trial": tid,
            "status": "completed" if status == "completed" else status,
            "score": None if score is None or (isinstance(score, float) and math.isnan(score)) else float(score),
            "objective": objective,
            "seconds": records.get(tid, {}).get("seconds"),
            "epochs": epochs_text(records.get(tid)),
            "fusion": fusion,
            "depth": hp.get(f"{fusion}/depth"),
            "heads": hp.get(f"{fusion}/heads"),
            "width": hp.get("width"),
            "learning_rate": hp.get("learning_rate"),
            "batch_size": hp.get("batch_size"),
            "augment": bool(hp["augment"]) if "augment" in hp else None,
            "replica_of": replica_of(tuner.oracle.trials, trial),
            "warm": "warm_from" in records.get(tid, {}),
            "annealed": bool(records.get(tid, {}).get("annealed")),
            "encoders": {k.split("/")[0]: v for k, v in hp.items() if k.endswith("/encoder")},
            "hyperparameters": {k: v for k, v in hp.items()},
            "message": trial.message if status == "failed" else None,
        }
        rows.append(row)
    sign = -1 if objective_direction(objective) == "max" else 1
    rows.sort(key=lambda r: (r["score"] is None, sign * (r["score"] or 0.0)))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank if r["score"] is not None else None
    return rows


def epochs_text(record) -> str | None:
    """"8/30" (epochs run of planned; fewer: early stopping), "1/30 (time budget)" when the
    deadline cut the trial: its score is real but from fewer epochs than the others'."""
    if not record or "epochs" not in record:
        return None
    text = f"{record['epochs']}/{record['of']}" if "of" in record else str(record["epochs"])
    return text + (f" ({record['cut']})" if record.get("cut") else "")


def write_leaderboard(rows: list[dict], run_dir: Path) -> None:
    import csv

    (run_dir / "leaderboard.json").write_text(json.dumps(rows, indent=2, default=str))
    cols = ["rank", "trial", "status", "score", "objective", "epochs", "seconds", "fusion", "depth", "heads", "width", "learning_rate", "batch_size", "augment", "annealed", "replica_of", "encoders", "message"]
    with open(run_dir / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "encoders": ";".join(f"{k}={v}" for k, v in r["encoders"].items())})


# The leaderboard as people read it (the CLI's table and the report's), written once.
DISPLAY_HEADERS = ("rank", "trial", "status", "score", "epochs", "fusion", "depth", "heads", "width", "lr", "batch", "aug", "encoders", "sec", "note")


def display_rows(rows: list[dict]) -> list[list]:
    """One list of cells per leaderboard row, in DISPLAY_HEADERS order (None: no value)."""
    out = []
    for r in rows:
        lr, secs = r.get("learning_rate"), r.get("seconds")
        replica = [f"replica of trial {r['replica_of']}" + (", from its weights" if r.get("warm") else "")] if r.get("replica_of") else []
        msg = (r.get("message") or "").strip().splitlines() or replica
        cells = [r.get("rank"), r["trial"], r.get("status"), f"{r['score']:.4f}" if r.get("score") is not None else None, r.get("epochs"),
                 r.get("fusion"), r.get("depth"), r.get("heads"), r.get("width"), f"{lr:.1e}" if isinstance(lr, float) else lr,
                 r.get("batch_size"), {True: "yes", False: "no"}.get(r.get("augment")), ", ".join(f"{k}={v}" for k, v in (r.get("encoders") or {}).items()),
                 f"{secs:.1f}" if isinstance(secs, (int, float)) else None, msg[-1][:140] if msg else None]
        out.append([c if c is None or isinstance(c, (int, float)) else str(c) for c in cells])
    return out


def last_failure(rows) -> str:
    """The last failed trial's reason: the last line of its message, without the exception's
    dotted class name (keras_tuner.src.errors.FailedTrialError: ...)."""
    failed = [r for r in rows if r["status"] == "failed"]
    lines = (failed[-1]["message"] or "").strip().splitlines() if failed else []
    return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1]) if lines else "no message"
