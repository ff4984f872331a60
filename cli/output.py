"""Shared console helpers for the commands."""

from __future__ import annotations

import json
import sys

# Width of tables written to a pipe or a file (CI logs, `> out.txt`): rich's default of 80
# columns cut the leaderboard's cells to "fusi…" and "0.97…".
PIPE_WIDTH = 160


def console(stderr: bool = False):
    import os

    from rich.console import Console

    c = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c.width = PIPE_WIDTH
    return c


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def quiet_tensorflow() -> None:
    """Keep TF's start-up noise off the user's terminal (call before importing TF)."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import TF with the C++ start-up lines (CUDA probes, CPU features) sent nowhere: they are
    written before TF's own log level applies."""
    import os
    import sys

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe logs once, here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
