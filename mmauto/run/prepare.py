"""Stage `prepare_data`: read and split the tables, check every row with the graph's decoders,
fit the preprocessing (written to RUN_DIR/preprocessing.json) and decode the training splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from mmauto import events
from mmauto.run.context import Prepared, Run

# Decoded rows stay in memory up to this size; beyond, they go to a file in RUN_DIR.
MEMORY_CACHE_BYTES = 1 << 30


def prepare_data(run: Run) -> Prepared:
    from mmauto.data.checks import load_splits
    from mmauto.data.pipeline import Preprocessing
    from mmauto.data.summary import summarize
    from mmauto.model import hardware

    m = run.manifest
    splits = load_splits(m)
    run.emit(events.DataChecked(summary=summarize(splits)))
    hardware.configure(m.train.mixed_precision, m.train.seed)
    prep = Preprocessing.fit(m, splits)
    prep.to_json(run.run_dir / "preprocessing.json")
    train, val = splits["train"], splits["validation"]
    datasets = {
        "train": prep.decoded_dataset(train.frame, train.root, cache=_cache_file(run.run_dir, prep, train)),
        "validation": prep.decoded_dataset(val.frame, val.root, cache=_cache_file(run.run_dir, prep, val)),
        "train_rows": train.rows,
    }
    if m.train.class_weight == "balanced":
        datasets["class_weight"] = prep.head.class_weight(prep.targets(train.frame))
    return Prepared(splits, prep, datasets)


def _cache_file(run_dir: Path, prep, split) -> Optional[str]:
    """Memory does not grow with the data: a split over MEMORY_CACHE_BYTES decoded is cached in
    a file (one per process: distributed workers share RUN_DIR)."""
    if split.rows * prep.row_bytes() <= MEMORY_CACHE_BYTES:
        return None
    folder = run_dir / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"decoded-{split.name}-{os.getpid()}")
