"""The run folder: what a fit leaves behind and how later commands find it.

RUN_DIR/
  run.json            manifest (as merged), its path, and the fingerprint resume checks
  preprocessing.json  fitted preprocessing state (and the head's calibration, thresholds, interval)
  search/             keras-tuner's trials and checkpoints (resume continues from here)
  model/              the SavedModel (raw inputs)
  mmauto.json         the model card
  metrics.json history.json leaderboard.csv leaderboard.json fit.log
  eval_predictions.csv  validation and test predictions: split, table, row (1-based), id, target
"""

from __future__ import annotations

import json
from pathlib import Path

from mmauto.config.manifest import Manifest, manifest_from_dict
from mmauto.errors import RunError, SearchError

# Changing these on resume is fine: they bound the search, they do not change its space.
# Stage calibrate's settings apply after the search, so they are free too.
_FREE = {("search", "max_trials"), ("search", "time_budget"), ("search", "max_failures"), ("search", "replicas"),
         ("search", "warm_replicas"), ("name",), ("train", "calibrate"), ("train", "threshold_metric"), ("train", "interval_coverage")}


def fingerprint(m: Manifest) -> dict:
    d = m.to_dict()
    for path in _FREE:
        cur = d
        for k in path[:-1]:
            cur = cur[k]
        cur.pop(path[-1], None)
    return d


def first_difference(a, b, prefix="") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
            if d:
                return d
        return None
    return None if a == b else f"{prefix} ({json.dumps(a, default=str)} -> {json.dumps(b, default=str)})"


def prepare(run_dir: Path, m: Manifest, overwrite: bool) -> bool:
    """Create or reuse RUN_DIR; True when an earlier search is resumed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = run_dir / "run.json"
    fp = fingerprint(m)
    if meta.exists() and not overwrite:
        old = json.loads(meta.read_text())
        diff = first_difference(old.get("fingerprint"), json.loads(json.dumps(fp, default=str)))
        if diff:
            raise SearchError(f"{run_dir}: the manifest changed since this run started: {diff}; pass --overwrite to start afresh, or use another --out")
        return (run_dir / "search").exists()
    meta.write_text(json.dumps({"manifest_path": str(m.path), "manifest": m.raw, "fingerprint": fp}, indent=2, default=str))
    return False


def load_manifest_of(run_dir: Path) -> Manifest:
    meta = Path(run_dir) / "run.json"
    if not meta.exists():
        raise RunError(f"{run_dir}: not an mmauto run folder (no run.json); run `mmauto fit MANIFEST --out {run_dir}` first")
    data = json.loads(meta.read_text())
    return manifest_from_dict(data["manifest"], data["manifest_path"])


def model_dir(run_dir: Path) -> Path:
    p = Path(run_dir) / "model"
    if not (p / "saved_model.pb").exists():
        raise RunError(f"{run_dir}: holds no exported model yet (model/saved_model.pb); finish `mmauto fit` first")
    return p
