"""Predictions and metrics through the exported SavedModel, so `predict`, `evaluate` and TF
Serving give the same answers from the same raw inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from mmauto.data.checks import load_table_checked
from mmauto.data.pipeline import Preprocessing
from mmauto.errors import DataError

BATCH = 64


def predict_frame(signature, prep: Preprocessing, frame: pd.DataFrame, root: Path,
                  progress: Optional[Callable[[int], None]] = None, numbers=None) -> dict:
    """Raw serving values of the rows, fed in batches; returns concatenated numpy outputs.
    A batch the SavedModel refuses is a DataError naming the first row (`numbers`: the rows'
    1-based numbers in their table; default 1..N) and input it cannot take."""
    refused = _refused()
    outs: dict[str, list] = {}
    for start in range(0, len(frame), BATCH):
        part = frame.iloc[start : start + BATCH]
        try:
            got = _call(signature, prep, part, root)
        except refused as exc:
            raise _refusal(signature, prep, part, root, exc, start, numbers) from None
        for k, v in got.items():
            outs.setdefault(k, []).append(v)
        if progress:
            progress(len(part))
    return {k: np.concatenate(v) for k, v in outs.items()}


def _call(signature, prep: Preprocessing, part: pd.DataFrame, root: Path) -> dict:
    from mmauto.export.saved_model import call_signature

    return call_signature(signature, prep.serving_values(part, root))


def _refused() -> tuple:
    """What a SavedModel call raises on a value it cannot take: TensorFlow's errors, and a
    UnicodeDecodeError when TensorFlow's message quotes raw bytes it could not decode."""
    import tensorflow as tf

    return (tf.errors.OpError, UnicodeDecodeError)


def _refusal(signature, prep: Preprocessing, part: pd.DataFrame, root: Path, exc, start: int, numbers) -> DataError:
    """The first row of `part` the model refuses, and the input that makes it fail (the row
    passes with that input emptied)."""
    refused = _refused()
    for i in range(len(part)):
        row = part.iloc[i : i + 1]
        try:
            _call(signature, prep, row, root)
            continue
        except refused as row_exc:
            exc = row_exc
        number = int(numbers[start + i]) if numbers is not None else start + i + 1
        culprit = None
        for name in prep.manifest.inputs:
            try:
                _call(signature, prep, blank(prep, row, [name]), root)
            except refused:
                continue
            culprit = name
            break
        reason = _reason(exc)
        where = f"input '{culprit}'" if culprit else "its inputs"
        return DataError(f"row {number}: the model cannot take {where}: {reason}")
    first, last = (int(numbers[start]), int(numbers[start + len(part) - 1])) if numbers is not None else (start + 1, start + len(part))
    return DataError(f"rows {first}-{last}: the model refused the batch: {_reason(exc)}")


def _reason(exc) -> str:
    """TensorFlow's message, first line, without the graph's node and op trailers."""
    if isinstance(exc, UnicodeDecodeError):
        return "its bytes are not of a format the model decodes (TensorFlow's error quoted them)"
    text = getattr(exc, "message", None) or str(exc)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("Graph execution error", "Detected at node", "<stack"))), type(exc).__name__)
    line = line.replace("assertion failed: [", "").split(" [[")[0].split(" [Op:")[0].rstrip("]")
    return line[:300]


def read_checked(prep: Preprocessing, path: Path, with_target: bool):
    m = prep.manifest
    frame, root, present, problems = load_table_checked(m, Path(path), with_target=with_target, auxiliary=False)
    problems = [p for p in problems if with_target or p.reason not in ("missing target", "unparsable target")]
    if problems:
        raise DataError(f"{problems[0].line()}; fix or remove those rows")
    return frame, root


def score(prep: Preprocessing, frame: pd.DataFrame, outputs: dict) -> dict:
    values, problems = prep.read_targets(frame)
    if problems:
        row, reason, detail = problems[0]
        raise DataError(f"row {row + 1}: {reason}: {detail}")
    problem = prep.head.check_values(values)
    if problem:
        raise DataError(problem)
    return prep.head.score(values, outputs)


def key_frame(frame: pd.DataFrame, key_columns: list[str]) -> pd.DataFrame:
    """The rows' key columns, or without any, `row`: their 1-based numbers."""
    return pd.DataFrame({c: frame[c].values for c in key_columns}) if key_columns else pd.DataFrame({"row": np.arange(1, len(frame) + 1)})


def prediction_frame(prep: Preprocessing, frame: pd.DataFrame, outputs: dict, key_columns: list[str]) -> pd.DataFrame:
    out = key_frame(frame, key_columns)
    for col, values in prep.head.columns(outputs).items():
        out[col] = values
    for name in prep.manifest.inputs:  # serving_explain's per-input contributions
        for kind in ("contribution", "attention"):
            if f"{kind}_{name}" in outputs:
                out[f"{kind}_{name}"] = outputs[f"{kind}_{name}"]
    return out


def blank(prep: Preprocessing, frame: pd.DataFrame, names) -> pd.DataFrame:
    """The rows with the given inputs emptied: what a client sends for a missing input."""
    from mmauto.modalities import MODALITIES

    frame = frame.copy()
    for n in names:
        spec = prep.manifest.inputs[n]
        mod = MODALITIES.get(spec.modality)()
        numeric = set(getattr(spec.options, "numeric", []) or [])
        for col in mod.columns(spec.options):
            frame[col] = np.nan if col in numeric else ""
    return frame


def ablation_groups(prep: Preprocessing) -> list[tuple[str, ...]]:
    """Each input, and each pair when there are three or more."""
    from itertools import combinations

    names = list(prep.manifest.inputs)
    return [(n,) for n in names] + (list(combinations(names, 2)) if len(names) >= 3 else [])


def ablation_passes(prep: Preprocessing) -> int:
    return len(ablation_groups(prep))


def ablation(prep: Preprocessing, signature, frame: pd.DataFrame, root: Path, full: dict, progress=None) -> dict:
    """The main metric with each input removed (and each pair, with three or more inputs);
    an input's contribution is the drop its removal causes (for rmse, the rise)."""
    main = prep.head.main_metric
    base = full[main]
    lower_is_better = main in prep.head.lower_is_better
    rows = []
    for g in ablation_groups(prep):
        got = score(prep, frame, predict_frame(signature, prep, blank(prep, frame, g), root, progress))[main]
        drop = None if base is None or got is None else (got - base if lower_is_better else base - got)
        rows.append({"removed": list(g), "metric": main, "score": got, "drop": drop})
    return {"metric": main, "full": base, "rows": rows}
