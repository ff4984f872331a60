"""Progress events of a fit: one typed definition shared by the stages that emit them and the
printers that show them (live bars, plain lines, fit.log, --json's silence).

A stage calls `emit(SomeEvent(...))`; a printer dispatches on `event.kind` to a method of the
same name (`on_<kind>`). A new event is one class here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Optional


@dataclasses.dataclass(frozen=True)
class Event:
    """Base class; `kind` names the event for printers and logs."""

    kind: ClassVar[str]


@dataclasses.dataclass(frozen=True)
class Start(Event):
    kind = "start"
    manifest: Any
    budget: Optional[float]
    max_trials: int
    resumed: bool
    run_dir: Any


@dataclasses.dataclass(frozen=True)
class DataChecked(Event):
    kind = "data"
    summary: dict


@dataclasses.dataclass(frozen=True)
class CacheFill(Event):
    kind = "cache"
    input: str
    encoder: str
    split: str


@dataclasses.dataclass(frozen=True)
class SearchStart(Event):
    kind = "search_start"
    objective: str
    done: int
    role: Optional[str]


@dataclasses.dataclass(frozen=True)
class TrialStart(Event):
    kind = "trial_start"
    trial: Any
    hp: Any
    epochs: int
    shortened: bool = False  # fewer epochs than a full trial: what is left of the budget
    annealed: bool = False  # the rate follows a cosine to 0 over the epochs (no early stopping)


@dataclasses.dataclass(frozen=True)
class EpochEnd(Event):
    kind = "epoch"
    trial: Any
    epoch: int
    epochs: int
    logs: dict


@dataclasses.dataclass(frozen=True)
class TrialEnd(Event):
    kind = "trial_end"
    trial: Any
    seconds: Optional[float]
    note: Optional[str] = None  # e.g. "cut by the time budget after 1 of 30 epochs"


@dataclasses.dataclass(frozen=True)
class ChiefListening(Event):
    kind = "chief_listening"
    address: str


@dataclasses.dataclass(frozen=True)
class WorkerTrialEnd(Event):
    kind = "worker_trial_end"
    trial: str


@dataclasses.dataclass(frozen=True)
class WorkerDone(Event):
    kind = "worker_done"
    summary: dict


@dataclasses.dataclass(frozen=True)
class ExportStart(Event):
    kind = "export_start"
    trial: str  # the best single trial
    members: Optional[list] = None  # an ensemble's trials, when the export is one


@dataclasses.dataclass(frozen=True)
class EnsembleChosen(Event):
    kind = "ensemble"
    members: list
    weights: list
    metric: str
    validation: float
    best_single: float


@dataclasses.dataclass(frozen=True)
class Calibrated(Event):
    kind = "calibration"
    fitted: dict  # the head's `calibrate` result: calibration, threshold(s), interval


@dataclasses.dataclass(frozen=True)
class AblationStart(Event):
    kind = "ablation"
    split: str


@dataclasses.dataclass(frozen=True)
class Notice(Event):
    """Something the user should act on or know went otherwise than asked (printed as a warning)."""

    kind = "warning"
    text: str


@dataclasses.dataclass(frozen=True)
class Info(Event):
    """A stage's result worth a line, nothing to act on (the linear model fitted, ...)."""

    kind = "info"
    text: str


@dataclasses.dataclass(frozen=True)
class Done(Event):
    kind = "done"
    summary: dict
    leaderboard: list


Emit = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The emitter when nobody listens."""


class Printer:
    """Base for event consumers: `printer(event)` calls `on_<kind>(event)` when defined."""

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"on_{event.kind}", None)
        if handler is not None:
            handler(event)
