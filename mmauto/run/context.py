"""What the stages of a fit pass to each other: one small record per stage's output."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

from mmauto.events import Emit


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """The command line's settings for one fit (None: the manifest's value)."""

    max_trials: Optional[int] = None
    time_budget: Any = None
    seed: Optional[int] = None
    overwrite: bool = False
    tuner: Optional[str] = None
    epochs: Optional[int] = None
    mixed_precision: bool = False
    distributed: Optional[str] = None
    oracle_address: Optional[str] = None
    worker_id: Optional[str] = None
    worker_timeout: float = 600.0

    def manifest_overrides(self) -> Optional[dict]:
        out: dict = {}
        if self.seed is not None:
            out.setdefault("train", {})["seed"] = self.seed
        if self.epochs is not None:
            out.setdefault("train", {})["epochs"] = self.epochs
        if self.tuner is not None:
            out.setdefault("search", {})["tuner"] = self.tuner
        if self.mixed_precision:
            out.setdefault("train", {})["mixed_precision"] = True
        return out or None


@dataclasses.dataclass
class Run:
    """Output of `load`: the manifest, the run folder, the clock, the role and the emitter."""

    manifest: Any
    run_dir: Path
    start: float
    budget: Optional[float]
    max_trials: int
    role: Optional[str]  # None (one process), "chief" or "worker"
    emit: Emit
    resumed: bool = False
    options: FitOptions = dataclasses.field(default_factory=FitOptions)
    stage_seconds: dict = dataclasses.field(default_factory=dict)  # stage -> wall seconds (run.json)

    @property
    def deadline(self) -> Optional[float]:
        return None if self.budget is None else self.start + self.budget

    def elapsed(self) -> float:
        return time.time() - self.start


@dataclasses.dataclass
class Prepared:
    """Output of `prepare_data`: the checked splits, fitted preprocessing and decoded datasets."""

    splits: Any
    prep: Any
    datasets: dict  # train / validation decoded tf.data, train_rows, class_weight

    def last_split(self) -> str:
        """The split results are reported on: test when there is one, else validation."""
        return "test" if "test" in self.splits.splits and self.splits["test"].rows else "validation"


@dataclasses.dataclass
class Searched:
    """Output of `search`: the tuner after its trials, and the leaderboard."""

    tuner: Any
    hypermodel: Any
    objective: str
    leaderboard: list
    cache: Any = None
    warning: Optional[str] = None


@dataclasses.dataclass
class Selected:
    """Output of `select`: the model to export (whole graph) and what built it."""

    trial_id: str  # the best single trial
    score: Optional[float]
    hp: Any
    model: Any
    encoders: dict  # input -> encoder (an ensemble's: a list where its members differ)
    input_keys: list
    ensemble: Optional[dict] = None  # {members, weights, metric, validation, best_single}
    calibration: Optional[dict] = None  # what stage `calibrate` fitted (the head's `calibrate`)


@dataclasses.dataclass
class Exported:
    """Output of `export`: the SavedModel's folder, its serving signature and the parity check."""

    path: Path
    signature: Any
    parity: dict


@dataclasses.dataclass
class Evaluated:
    """Output of `evaluate`: metrics per split and the ablation (or why it was skipped)."""

    scores: dict
    ablation: Optional[dict] = None
