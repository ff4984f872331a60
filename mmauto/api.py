"""The library's entry points; the CLI calls nothing else.

validate / demo / fit / predict / evaluate. Heavy modules (TensorFlow) are imported inside
the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def validate(manifest_path) -> dict:
    """Schema and data checks without training; returns the summary (raises on problems)."""
    from mmauto.data.checks import load_splits
    from mmauto.manifest import load_manifest
    from mmauto.summary import summarize

    return summarize(load_splits(load_manifest(manifest_path)))


def demo(out, rows: int = 240, seed: int = 0, missing: float = 0.0) -> Path:
    from mmauto.demo import write_demo

    return write_demo(Path(out), rows=rows, seed=seed, missing=missing)
