"""Stage `search`: keras-tuner runs trials (here, or for a distributed chief) inside the
budget; the leaderboard is written whatever happens."""

from __future__ import annotations

import contextlib
import io

from mmauto import events
from mmauto.errors import SearchError
from mmauto.run.context import Prepared, Run, Searched

# The end of the budget kept for what the trials do not measure (the report, writing files,
# keras-tuner's bookkeeping); the model passes and builds of the stages after the search are
# estimated from the trials (`end_cost`). The floor is what those stages took on 4-input demo
# runs on 2 loaded cores (`stages` in the summary: select 1-4 s, export 13-18 s, the rest
# 3-5 s); with 10 s, 40 s budgets ended 12-17 s late. Was 12% of the budget, all of it fixed.
RESERVE_FRACTION, RESERVE_MIN, RESERVE_MAX = 0.05, 20.0, 300.0
# The stages after the search with the exported model alone, in builds and passes over the
# validation and test rows of one model: select (a build), calibrate (a validation pass),
# export (a build, the trace, and the parity rows), evaluate (a pass over both splits).
SINGLE_BUILDS, SINGLE_PASSES = 3.0, 2.0


# The best trials whose weights stay on disk as ensemble members (each a checkpoint file).
ENSEMBLE_CANDIDATES = 8


def reserve_seconds(budget) -> float:
    return 0.0 if budget is None else min(max(RESERVE_MIN, RESERVE_FRACTION * budget), RESERVE_MAX)


def search(run: Run, data: Prepared) -> Searched:
    from mmauto.model.hypermodel import MultimodalHyperModel
    from mmauto.search.feature_cache import FeatureCache
    from mmauto.search.leaderboard import last_failure, leaderboard, write_leaderboard
    from mmauto.search.oracles import make_oracle

    m, prep = run.manifest, data.prep
    objective = m.search.objective or prep.head.default_objective
    oracle = make_oracle(m.search.tuner, objective, run.max_trials, m.train.epochs, m.train.seed, m.search.max_failures)
    cache = FeatureCache(run.run_dir / "cache", prep, data.datasets, on_event=run.emit) if m.train.feature_cache else None
    hm = MultimodalHyperModel(prep, None if cache is None else cache.specs, train_rows=data.datasets["train_rows"])
    # keras-tuner prints its own lines ("Reloading Tuner from ...") to stdout, which belongs to
    # our --json output; our events say the same.
    with contextlib.redirect_stdout(io.StringIO()):
        tuner = _make_tuner(run, hm, oracle, data, cache)
        run.emit(events.SearchStart(objective=objective, done=tuner.trials_done(), role=run.role))
        try:
            warning = _run_trials(run, tuner)
        except RuntimeError:  # keras-tuner stops after too many consecutive failures
            rows = leaderboard(tuner, objective)
            write_leaderboard(rows, run.run_dir)
            raise SearchError(f"{_failed(rows)} trial(s) failed in a row; the last: {last_failure(rows)}") from None
    rows = []
    if run.role != "worker":  # a worker's oracle is the chief's, which keeps the leaderboard
        rows = leaderboard(tuner, objective)
        write_leaderboard(rows, run.run_dir)
    return Searched(tuner, hm, objective, rows, cache, warning)


def _make_tuner(run: Run, hm, oracle, data: Prepared, cache):
    from mmauto.model import hardware
    from mmauto.search.tuner import MmautoTuner

    m = run.manifest
    deadline = None if run.deadline is None else run.deadline - reserve_seconds(run.budget)
    return MmautoTuner(
        hm, oracle, data.datasets, epochs=m.train.epochs, patience=m.train.early_stopping, lr_factor=m.train.lr_factor(),
        cosine=m.train.cosine(),
        deadline=deadline, reserve=0.0, max_trials=run.max_trials, cache=cache, end_cost=end_cost(run, data),
        keep_weights=1 if m.train.ensemble is False else ENSEMBLE_CANDIDATES, replicas=replicas(m),
        warm_replicas=m.search.warm_replicas,
        on_event=run.emit, directory=str(run.run_dir), project_name="search", overwrite=False,
        distribution_strategy=hardware.strategy(),
    )


def replicas(m) -> int:
    """Replicas of the best configuration to end the search with: only the ensemble uses them;
    a retrieval model is not ensembled, and Hyperband's rounds continue trials instead."""
    if m.train.ensemble is False or m.retrieval or m.search.tuner == "hyperband":
        return 0
    return m.search.replicas


def end_cost(run: Run, data: Prepared):
    """The seconds the stages after the search need (the exported model's builds and passes,
    and an ensemble's members unless turned off), as a function of one trial's measured (build
    seconds, validation-pass seconds): the trials end that much before the fixed reserve.
    None for a worker (the chief runs those stages)."""
    from mmauto.run.ensemble import RESERVED_MEMBERS, member_seconds

    if run.role == "worker":
        return None
    rows = {n: data.splits[n].rows if n in data.splits.splits else 0 for n in ("validation", "test")}
    scale = (rows["validation"] + rows["test"]) / max(rows["validation"], 1)
    members = 0 if run.manifest.train.ensemble is False or run.manifest.retrieval else RESERVED_MEMBERS

    def cost(build: float, val_pass: float) -> float:
        splits_pass = val_pass * scale
        return SINGLE_BUILDS * build + SINGLE_PASSES * splits_pass + members * member_seconds(build, splits_pass)

    return cost


def _run_trials(run: Run, tuner):
    """Trials here, or served to workers by a chief; returns a warning to show, or None."""
    if run.role != "chief":
        tuner.search(verbose=0)
        return None
    from mmauto.search.distributed import serve_oracle

    tuner.limit_trials()
    deadline = None if run.deadline is None else run.deadline - reserve_seconds(run.budget)
    return serve_oracle(tuner.oracle, run.options.worker_timeout, deadline, run.emit)


def _failed(rows) -> int:
    return len([r for r in rows if r["status"] == "failed"])

