"""One `mmauto fit`, as its stages:

    load -> prepare_data -> linear -> search -> select -> ensemble -> calibrate -> export -> evaluate -> summarize

(`task: zero_shot` trains nothing: load -> its stages in mmauto/run/zero_shot.py.)

Each stage is a function in its own module of this package, taking the records the earlier
stages returned (mmauto/run/context.py) and returning its own. A new capability (an ensemble,
calibration) is a new stage inserted here.
"""

from __future__ import annotations

import time

from mmauto import events
from mmauto.run import zero_shot
from mmauto.run.calibrate import calibrate
from mmauto.run.context import FitOptions
from mmauto.run.ensemble import ensemble
from mmauto.run.evaluate import evaluate
from mmauto.run.export import export
from mmauto.run.linear import linear
from mmauto.run.load import load
from mmauto.run.prepare import prepare_data
from mmauto.run.search import search
from mmauto.run.select import select
from mmauto.run.summarize import summarize, worker_summary


def fit(manifest_path, out, options: FitOptions, emit: events.Emit = events.ignore) -> dict:
    run = load(manifest_path, out, options, emit)
    if run.manifest.task == "zero_shot":  # nothing to train: its own short list of stages
        return zero_shot.fit(run)
    data = _timed(run, prepare_data, run)
    member = _timed(run, linear, run, data)
    searched = _timed(run, search, run, data)
    if run.role == "worker":
        return worker_summary(run, searched)
    if searched.warning:
        emit(events.Notice(text=searched.warning))
    selected = _timed(run, select, run, searched)
    selected = _timed(run, ensemble, run, data, searched, selected, member)
    selected = _timed(run, calibrate, run, data, selected)
    exported = _timed(run, export, run, data, selected)
    evaluated = _timed(run, evaluate, run, data, exported)
    return summarize(run, data, searched, selected, exported, evaluated)


def _timed(run, stage, *args):
    """Run one stage and keep its wall time (the summary's `stages`: where a budget went)."""
    t0 = time.monotonic()  # a duration: a clock step during the fit must not show in it
    try:
        return stage(*args)
    finally:
        run.stage_seconds[stage.__name__] = round(time.monotonic() - t0, 2)
