"""Time series: one sequence per row; served as float32 [N, T, C].

A cell holds a path to a `.npy` file (shape [T] or [T, C]) or a `.csv` file (rows are time
steps, columns are channels, numbers only, an optional header row), or the series itself as
a JSON list: numbers for one channel, or a list of [C] lists (the natural cell of a JSONL or
Parquet table; in a CSV, the JSON text). An empty cell is a missing series.

Every series is cut to its first `length` steps or padded at the end with NaN; each channel is
standardised with the training split's mean and std, and NaN (gaps inside a series, and the
padding) then becomes 0. Both happen in-graph, so the SavedModel takes raw values of any
length T: a client sends float32 [N, T, C], and a row whose values are all NaN is missing. The
model also reads a per-step mask (1 where any channel holds a value), so padding and gaps are
not mistaken for values at the mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import Field

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, cell_is_missing


class TimeseriesOptions(Strict):
    column: str
    length: int = Field(128, ge=2, le=100_000)
    channels: int = Field(..., ge=1, le=4096)


class SeriesError(ValueError):
    """A cell that is not a readable series; `reason` is the row problem's kind."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _ref(value, root: Path) -> str:
    """A cell as one string for tf.data: "" (missing), JSON text, or an absolute path."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return json.dumps(_plain(value)) if len(value) else ""
    if cell_is_missing(value):
        return ""
    text = str(value).strip()
    if text.startswith("["):
        return text
    p = Path(text)
    return str(p if p.is_absolute() else root / p)


def _plain(value):
    """Nested lists of Python numbers (Parquet gives arrays of arrays; None stays None)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None:
        return None
    return float(value)


def _read_csv(path: str) -> np.ndarray:
    import pandas as pd

    frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    values = frame.apply(lambda col: pd.to_numeric(col.str.strip().replace("", np.nan), errors="coerce"))
    bad = values.isna() & (frame.apply(lambda col: col.str.strip()) != "")
    if len(frame) and bad.iloc[0].all() and not bad.iloc[1:].any().any():
        values, bad = values.iloc[1:], bad.iloc[1:]  # a header row
    if bad.any().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise SeriesError("unreadable series", f"{path}: row {r + 1}, column {c + 1} is not a number")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, reported by parse_series
        return values.to_numpy(dtype="float32")


def parse_series(ref: str, channels: int) -> Optional[np.ndarray]:
    """A cell reference -> float32 [T, channels] (None when missing); raises SeriesError."""
    ref = ref.decode() if isinstance(ref, bytes) else ref
    if not ref:
        return None
    if ref.startswith("["):
        try:
            data = json.loads(ref)
            with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below
                arr = np.array([[np.nan if x is None else x for x in row] if isinstance(row, list) else (np.nan if row is None else row)
                                for row in data], dtype="float32")
        except (ValueError, TypeError) as exc:
            raise SeriesError("unreadable series", f"not a JSON list of numbers or of [channels] lists: {str(exc)[:60]}") from None
        where = "the JSON list"
    else:
        p = Path(ref)
        if not p.is_file():
            raise SeriesError("missing media file", f"{ref} not found")
        suffix = p.suffix.lower()
        try:
            if suffix == ".npy":
                with np.errstate(over="ignore"):
                    arr = np.load(p, allow_pickle=False).astype("float32")
            elif suffix == ".csv":
                arr = _read_csv(ref)
            else:
                raise SeriesError("unreadable series", f"{ref}: expected a .npy or .csv file, or a JSON list")
        except SeriesError:
            raise
        except Exception as exc:
            raise SeriesError("unreadable series", f"{ref}: {type(exc).__name__}: {str(exc)[:60]}") from None
        where = ref
    if arr.size == 0:
        return None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise SeriesError("unreadable series", f"{where}: expected [steps] or [steps, channels], got shape {list(arr.shape)}")
    if arr.shape[1] != channels:
        raise SeriesError("wrong channel count", f"{where}: expected {channels} channel(s), got {arr.shape[1]}")
    if np.isinf(arr).any():
        raise SeriesError("unreadable series", f"{where}: holds an infinite value (or one beyond float32's range)")
    if np.isnan(arr).all():
        return None
    return arr


def fix_length(arr: Optional[np.ndarray], opts) -> np.ndarray:
    """[T, C] -> [length, C]: the first `length` steps, NaN-padded; None -> all NaN."""
    out = np.full((opts.length, opts.channels), np.nan, np.float32)
    if arr is not None:
        n = min(len(arr), opts.length)
        out[:n] = arr[:n]
    return out


@MODALITIES.register("timeseries")
class Timeseries(Modality):
    Options = TimeseriesOptions
    default_encoders = ("tcn", "ts_transformer")
    list_cells = True

    def check(self, opts, frame, root: Path) -> RowProblems:
        refs = [_ref(v, root) for v in frame[opts.column].tolist()]
        present = np.zeros(len(refs), dtype=bool)
        problems = []
        for i, ref in enumerate(refs):
            try:
                present[i] = parse_series(ref, opts.channels) is not None
            except SeriesError as exc:
                problems.append((i, exc.reason, str(exc)))
        return RowProblems(present=present, problems=problems)

    def raw_values(self, input_name, opts, frame, root):
        return {input_name: np.array([_ref(v, root) for v in frame[opts.column].tolist()], dtype=object)}

    def serving_values(self, input_name, opts, frame, root):
        refs = self.raw_values(input_name, opts, frame, root)[input_name]
        values = [fix_length(parse_series(r, opts.channels), opts) for r in refs]
        return {input_name: np.stack(values) if values else np.zeros((0, opts.length, opts.channels), np.float32)}

    def fit_state(self, opts, raw_train):
        total = np.zeros(opts.channels)
        square = np.zeros(opts.channels)
        count = np.zeros(opts.channels)
        for ref in _only(raw_train):
            x = fix_length(parse_series(ref, opts.channels), opts).astype("float64")
            ok = ~np.isnan(x)
            total += np.where(ok, x, 0).sum(0)
            square += np.where(ok, x * x, 0).sum(0)
            count += ok.sum(0)
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        var = np.divide(square, count, out=np.ones_like(total), where=count > 0) - np.where(count > 0, mean * mean, 0)
        std = np.sqrt(np.maximum(var, 0))
        std = np.where(std > 1e-8, std, 1.0)
        return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}

    def serving_spec(self, input_name, opts):
        return {input_name: ((None, None, opts.channels), "float32")}

    def load(self, input_name, opts, raw):
        import tensorflow as tf

        raw = dict(raw)
        series = tf.numpy_function(lambda r: fix_length(parse_series(r, opts.channels), opts), [raw[input_name]], tf.float32, stateful=False)
        raw[input_name] = tf.ensure_shape(series, (opts.length, opts.channels))
        return raw

    def make_decoder(self, input_name, opts, state):
        return TimeseriesDecoder(input_name, opts, state)

    def feature_spec(self, opts, state):
        return {"series": ((opts.length, opts.channels), "float32"), "mask": ((opts.length,), "float32")}

    def missing_values(self, input_name, opts):
        return {input_name: "all NaN"}

    def example(self, input_name, opts):
        return {input_name: [[0.0] * opts.channels] * 3}


def _only(raw: dict):
    (values,) = [v for k, v in raw.items() if not k.startswith("_")]
    return values


class TimeseriesDecoder:
    """float32 [N, T, C] -> standardised [N, length, C] (NaN -> 0) and a step mask [N, length]."""

    def __init__(self, input_name, opts, state):
        self.input_name, self.length, self.channels = input_name, opts.length, opts.channels
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]

    def __call__(self, raw):
        import tensorflow as tf

        x = tf.cast(raw[self.input_name], tf.float32)[:, : self.length]
        x = tf.pad(x, [[0, 0], [0, self.length - tf.shape(x)[1]], [0, 0]], constant_values=float("nan"))
        x = tf.ensure_shape(x, (None, self.length, self.channels))
        seen = tf.logical_not(tf.math.is_nan(x))
        z = tf.where(seen, (x - tf.constant(self.mean)) / tf.constant(self.std), 0.0)
        mask = tf.cast(tf.reduce_any(seen, axis=2), tf.float32)
        present = tf.cast(tf.reduce_any(seen, axis=[1, 2]), tf.float32)
        return {"series": z, "mask": mask}, present
