"""Stage `load`: the manifest (with the command line's overrides), the run folder, the budget
clock and the distributed role. Every user error in the manifest surfaces here."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Optional

from mmauto import events
from mmauto.errors import MmautoError
from mmauto.run.context import FitOptions, Run


def load(manifest_path, out, options: FitOptions, emit: events.Emit) -> Run:
    from mmauto.config.manifest import load_manifest, parse_duration
    from mmauto.run import rundir

    start = time.time()
    m = load_manifest(manifest_path, options.manifest_overrides())
    budget = parse_duration(options.time_budget) if options.time_budget is not None else m.search.budget_seconds()
    trials = options.max_trials if options.max_trials is not None else m.search.max_trials
    run_dir = Path(out)
    role = distributed_role(options.distributed, options.oracle_address, options.worker_id)
    fresh = options.overwrite and role != "worker"
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    resumed = rundir.prepare(run_dir, m, fresh)
    run = Run(m, run_dir, start, budget, trials, role, emit, resumed, options)
    emit(events.Start(manifest=m, budget=budget, max_trials=trials, resumed=resumed, run_dir=run_dir))
    return run


def distributed_role(distributed, address, worker_id) -> Optional[str]:
    """chief | worker | None, from the options or keras-tuner's KERASTUNER_* variables."""
    from mmauto.search.distributed import set_environment

    if distributed is None:
        if "KERASTUNER_TUNER_ID" not in os.environ:
            return None
        distributed = "chief" if os.environ["KERASTUNER_TUNER_ID"] == "chief" else "worker"
        address = address or f"{os.environ.get('KERASTUNER_ORACLE_IP', '')}:{os.environ.get('KERASTUNER_ORACLE_PORT', '')}"
        worker_id = worker_id or (None if distributed == "chief" else os.environ["KERASTUNER_TUNER_ID"])
    if distributed not in ("chief", "worker"):
        raise MmautoError(f"--distributed: expected chief or worker, got {distributed!r}")
    if not address:
        raise MmautoError("--oracle: the chief's HOST:PORT is needed with --distributed")
    set_environment(distributed, address, worker_id)
    return distributed
