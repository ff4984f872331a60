"""Pinned-or-searched hyperparameters (autokeras' rule: a value left unset is searched)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pick(hp, name: str, setting: Any, choices: Sequence, default=None):
    """One hyperparameter. `setting` None: search `choices`; a list: search it; a dict
    {min, max}: a range (log scale for learning rates); anything else: pinned with hp.Fixed."""
    if setting is None:
        setting = list(choices)
    if isinstance(setting, dict):
        lo, hi = setting["min"], setting["max"]
        if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
            return hp.Int(name, lo, hi)
        log = lo > 0 and hi / max(lo, 1e-12) >= 20
        return hp.Float(name, float(lo), float(hi), sampling="log" if log else "linear")
    if isinstance(setting, (list, tuple)):
        values = list(dict.fromkeys(setting))
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        if default not in values:
            default = values[0]
        return hp.Choice(name, values, default=default)
    return hp.Fixed(name, setting)
