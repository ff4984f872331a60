"""Fixed choices shared by the manifest schema and the command line (no heavy imports here:
the CLI reads them while building `--help`)."""

from __future__ import annotations

import enum


class Tuner(str, enum.Enum):
    """The search strategy (`search.tuner`, `--tuner`)."""

    random = "random"
    bayesian = "bayesian"
    hyperband = "hyperband"
