"""Tabular: numeric and categorical columns; served as one tensor per column.

Numeric columns are standardised with training-split statistics (NaN is missing: 0 plus a
missing flag); categorical columns go through a training-split vocabulary with one
out-of-vocabulary id. Both happen in-graph so the SavedModel takes raw values.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, cell_is_missing


class TabularOptions(Strict):
    numeric: list[str] = []
    categorical: list[str] = []
    max_categories: int = Field(1000, ge=2, le=1_000_000)

    @model_validator(mode="after")
    def _some(self):
        if not self.numeric and not self.categorical:
            raise ValueError("name at least one column under numeric or categorical")
        dup = set(self.numeric) & set(self.categorical)
        if dup:
            raise ValueError(f"column '{sorted(dup)[0]}' is both numeric and categorical")
        keys: dict[str, str] = {}
        for col in [*self.numeric, *self.categorical]:
            other = keys.setdefault(serving_key(col), col)
            if other != col:
                raise ValueError(f"columns '{other}' and '{col}' would both be served as '{serving_key(col)}'; rename one")
        return self


def serving_key(column: str) -> str:
    """A column's serving input name: TF signature arguments take letters, digits and _ only."""
    key = re.sub(r"[^A-Za-z0-9_]", "_", str(column))
    return key if re.match(r"[A-Za-z_]", key) else f"c_{key}"


def numeric_is_missing(raw) -> bool:
    """A missing number: an empty cell, or NaN (written `NaN` or `nan`), as at serving time."""
    return cell_is_missing(raw) or (isinstance(raw, str) and raw.strip().lower() == "nan")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_numeric64(series: pd.Series) -> tuple[np.ndarray, list[int]]:
    """float64 values (NaN for missing cells) and the rows holding text that is not a number."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64")
    bad = [i for i, (v, raw) in enumerate(zip(values, series.tolist())) if np.isnan(v) and not numeric_is_missing(raw)]
    return values, bad


def parse_numeric(series: pd.Series) -> tuple[np.ndarray, list[int]]:
    """float32 values (NaN for missing cells) and the rows holding text that is not a number.
    Numbers beyond float32's range become infinite (the row checks report them)."""
    values, bad = parse_numeric64(series)
    with np.errstate(over="ignore"):
        return values.astype("float32"), bad


def _cat(series: pd.Series) -> np.ndarray:
    def norm(v):
        if cell_is_missing(v):
            return ""
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # 3.0 read from a column with blanks is the category "3"
        return str(v).strip()

    return np.array([norm(v) for v in series.tolist()], dtype=object)


@MODALITIES.register("tabular")
class Tabular(Modality):
    Options = TabularOptions
    default_encoders = ("mlp", "ft_transformer")

    def columns(self, opts):
        return list(opts.numeric) + list(opts.categorical)

    def check(self, opts, frame, root: Path) -> RowProblems:
        present = np.zeros(len(frame), dtype=bool)
        problems = []
        for col in opts.numeric:
            values, bad = parse_numeric64(frame[col])
            present |= ~np.isnan(values)
            problems += [(i, "unparsable number", f"column '{col}' holds {frame[col].iloc[i]!r} (a missing number is an empty cell or NaN)")
                         for i in bad]
            inf = np.where(np.isinf(values))[0]
            problems += [(int(i), "unparsable number", f"column '{col}' holds an infinite value") for i in inf]
            with np.errstate(invalid="ignore"):
                big = np.where(np.isfinite(values) & (np.abs(values) > FLOAT32_MAX))[0]
            problems += [(int(i), "unparsable number", f"column '{col}' holds {values[i]:g}, beyond float32's range (±3.4e38)")
                         for i in big]
        for col in opts.categorical:
            present |= _cat(frame[col]) != ""
        return RowProblems(present=present, problems=problems)

    def raw_values(self, input_name, opts, frame, root):
        out = {serving_key(col): parse_numeric(frame[col])[0] for col in opts.numeric}
        out.update({serving_key(col): _cat(frame[col]) for col in opts.categorical})
        return out

    def fit_state(self, opts, raw_train):
        state = {"mean": [], "std": [], "vocab": []}
        for col in opts.numeric:
            v = raw_train[serving_key(col)]
            v = v[~np.isnan(v)].astype("float64")  # float32 sums of large values overflow
            mean = float(v.mean()) if len(v) else 0.0
            std = float(v.std()) if len(v) > 1 else 1.0
            state["mean"].append(mean)
            state["std"].append(std if std > 1e-8 else 1.0)
        for col in opts.categorical:
            counts = Counter(x for x in raw_train[serving_key(col)].tolist() if x)
            state["vocab"].append([k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][: opts.max_categories])
        return state

    def serving_spec(self, input_name, opts):
        spec = {serving_key(col): ((None,), "float32") for col in opts.numeric}
        spec.update({serving_key(col): ((None,), "string") for col in opts.categorical})
        return spec

    def make_decoder(self, input_name, opts, state):
        return TabularDecoder(opts, state)

    def feature_spec(self, opts, state):
        spec = {}
        if opts.numeric:
            spec["numeric"] = ((2 * len(opts.numeric),), "float32")
        if opts.categorical:
            spec["categorical"] = ((len(opts.categorical),), "int32")
        return spec

    def example(self, input_name, opts):
        ex = {serving_key(col): 1.0 for col in opts.numeric}
        ex.update({serving_key(col): "some category" for col in opts.categorical})
        return ex


def category_sizes(state) -> list[int]:
    """Ids per categorical column: 0 = missing, 1 = out of vocabulary, then the vocabulary."""
    return [len(v) + 2 for v in state["vocab"]]


class TabularDecoder:
    """Raw columns -> standardised numbers with missing flags, and categorical ids.

    Categorical ids are offset per column so that one embedding table serves all columns.
    """

    def __init__(self, opts, state):
        import tensorflow as tf

        self.opts, self.state = opts, state
        self.tables, self.offsets = [], []
        offset = 0
        for vocab, size in zip(state["vocab"], category_sizes(state)):
            keys = tf.constant(vocab if vocab else ["\x00"], tf.string)
            vals = tf.range(2, 2 + tf.size(keys), dtype=tf.int64) + offset
            init = tf.lookup.KeyValueTensorInitializer(keys, vals)
            self.tables.append(tf.lookup.StaticHashTable(init, default_value=offset + 1))
            self.offsets.append(offset)
            offset += size

    def __call__(self, raw):
        import tensorflow as tf

        out = {}
        present = None
        if self.opts.numeric:
            x = tf.stack([tf.cast(raw[serving_key(c)], tf.float32) for c in self.opts.numeric], axis=1)
            missing = tf.math.is_nan(x)
            mean = tf.constant(self.state["mean"], tf.float32)
            std = tf.constant(self.state["std"], tf.float32)
            z = tf.where(missing, 0.0, (x - mean) / std)
            out["numeric"] = tf.concat([z, tf.cast(missing, tf.float32)], axis=1)
            present = tf.reduce_any(tf.logical_not(missing), axis=1)
        if self.opts.categorical:
            ids = []
            for col, table, offset in zip(self.opts.categorical, self.tables, self.offsets):
                s = tf.strings.strip(raw[serving_key(col)])
                found = table.lookup(s)
                ids.append(tf.where(tf.strings.length(s) > 0, found, tf.cast(offset, tf.int64)))
            out["categorical"] = tf.cast(tf.stack(ids, axis=1), tf.int32)
            any_cat = tf.reduce_any(tf.stack([tf.strings.length(tf.strings.strip(raw[serving_key(c)])) > 0 for c in self.opts.categorical], 1), 1)
            present = any_cat if present is None else tf.logical_or(present, any_cat)
        return out, tf.cast(present, tf.float32)
