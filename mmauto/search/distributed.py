"""Distributed search on keras-tuner's own chief/worker engine.

The chief holds the oracle and serves it over gRPC; workers (any number, on any machine that
sees RUN_DIR) ask it for trials and train them. keras-tuner's chief waits forever for a worker
that died; ours watches the workers' calls and stops with a message after `worker_timeout`
seconds of silence, exporting the best finished trial when there is one.
"""

from __future__ import annotations

import os
import time
from concurrent import futures
from typing import Optional

from mmauto import events
from mmauto.errors import MmautoError, SearchError


def parse_address(value: str) -> tuple[str, int]:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MmautoError(f"--oracle: expected HOST:PORT such as 127.0.0.1:8000, got {value!r}")
    return host, int(port)


def set_environment(role: str, address: str, worker_id: Optional[str] = None) -> None:
    """keras-tuner reads its role and the oracle's address from these variables."""
    host, port = parse_address(address)
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
    os.environ["KERASTUNER_TUNER_ID"] = "chief" if role == "chief" else (worker_id or f"worker-{os.getpid()}")


def serve_oracle(oracle, worker_timeout: float, deadline: Optional[float], on_event=None) -> Optional[str]:
    """Serve the oracle until every worker is done. Returns a warning when workers went
    silent but some trials finished; raises SearchError when none did."""
    import grpc

    from mmauto.search.kt_private import chief_servicer

    OracleServicer, exit_chief, add_servicer = chief_servicer()

    emit = on_event or events.ignore

    class Watched(OracleServicer):
        """Records when a worker last spoke (every call), so silence can be detected."""

        last = time.time()

        def _seen(self):
            Watched.last = time.time()

    for method in ("GetSpace", "UpdateSpace", "CreateTrial", "UpdateTrial", "EndTrial", "GetTrial", "GetBestTrials"):
        def wrap(name=method):
            base = getattr(OracleServicer, name)

            def call(self, request, context):
                self._seen()
                out = base(self, request, context)
                if name == "EndTrial":
                    emit(events.WorkerTrialEnd(trial=request.trial.trial_id))
                return out

            return call

        setattr(Watched, method, wrap())

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = Watched(oracle)
    add_servicer(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise SearchError(f"--oracle: cannot listen on {address} (in use?)")
    server.start()
    emit(events.ChiefListening(address=address))
    warning = None
    try:
        while True:
            time.sleep(0.2)
            if deadline is not None and time.time() > deadline:
                oracle.max_trials = len(oracle.trials)  # workers are told to stop
            if servicer.stop_triggered and exit_chief(oracle):
                break
            if time.time() - Watched.last > worker_timeout:
                done = [t for t in oracle.trials.values() if str(t.status).lower() == "completed"]
                open_ = [t.trial_id for t in oracle.ongoing_trials.values()] if hasattr(oracle, "ongoing_trials") else []
                what = (f"no worker called for {worker_timeout:.0f}s"
                        + (f"; trial(s) {', '.join(open_)} were left unfinished" if open_ else ""))
                if not done:
                    raise SearchError(f"distributed search: {what} and no trial finished; start workers with "
                                      f"`mmauto fit MANIFEST --out RUN_DIR --distributed worker --oracle {address}`")
                warning = f"distributed search: {what}; exporting the best of {len(done)} finished trial(s)"
                break
    finally:
        server.stop(0)
    return warning
