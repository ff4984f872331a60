"""Precomputed embeddings: one fixed-size vector per row; served as float32 [N, dim].

A cell holds the vector itself (a list column of a Parquet or JSONL table; in a CSV, its JSON
text) or a path to a `.npy` file holding it. An empty cell is a missing input. Each dimension
is standardised in-graph with the training split's mean and std. At serving time a row whose
values are all NaN is missing; a NaN inside a vector becomes 0 (the mean) there, while
`validate` and training report such vectors as bad rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from mmauto.config.schema import Strict
from mmauto.modalities.base import MODALITIES, Modality, RowProblems, cell_is_missing


class EmbeddingOptions(Strict):
    column: str
    dim: int = Field(..., ge=1, le=1_000_000)


def parse_vector(value, root: Path, dim: int):
    """A cell -> (float32 [dim] or None when missing, None) or (None, (reason, detail))."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        source = "the list"
    elif cell_is_missing(value):
        return None, None
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return None, ("unreadable embedding", f"{text[:40]!r} is not a JSON list of numbers")
            source = "the JSON list"
        else:
            p = Path(text)
            p = p if p.is_absolute() else root / p
            if not p.is_file():
                return None, ("missing media file", f"{p} not found")
            if p.suffix.lower() != ".npy":
                return None, ("unreadable embedding", f"{p}: expected a .npy file or a list of numbers")
            try:
                value = np.load(p, allow_pickle=False)
            except Exception as exc:
                return None, ("unreadable embedding", f"{p}: {type(exc).__name__}")
            source = str(p)
    try:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below
            vec = np.asarray(value, dtype="float32").ravel()
    except (TypeError, ValueError):
        try:  # nulls (JSON null, Python None) inside the list are NaN
            with np.errstate(over="ignore"):
                vec = np.array([np.nan if x is None else x for x in np.ravel(np.asarray(value, dtype=object))], dtype="float32")
        except (TypeError, ValueError):
            return None, ("unreadable embedding", f"{source} holds something that is not a number")
    if vec.size == 0:
        return None, None
    if vec.size != dim:
        return None, ("wrong embedding size", f"{source}: expected {dim} values, got {vec.size}")
    nan = np.isnan(vec)
    if nan.all():
        return None, None
    if nan.any() or np.isinf(vec).any():
        return None, ("non-finite embedding", f"{source} holds NaN or infinite values (or ones beyond float32's range)")
    return vec, None


@MODALITIES.register("embedding")
class Embedding(Modality):
    Options = EmbeddingOptions
    default_encoders = ("projection",)
    list_cells = True

    def check(self, opts, frame, root: Path) -> RowProblems:
        present = np.zeros(len(frame), dtype=bool)
        problems = []
        for i, v in enumerate(frame[opts.column].tolist()):
            vec, problem = parse_vector(v, root, opts.dim)
            present[i] = vec is not None
            if problem:
                problems.append((i, *problem))
        return RowProblems(present=present, problems=problems)

    def raw_values(self, input_name, opts, frame, root):
        out = np.full((len(frame), opts.dim), np.nan, np.float32)
        for i, v in enumerate(frame[opts.column].tolist()):
            vec, _ = parse_vector(v, root, opts.dim)
            if vec is not None:
                out[i] = vec
        return {input_name: out}

    def fit_state(self, opts, raw_train):
        (x,) = raw_train.values()
        x = x[~np.isnan(x).all(1)].astype("float64")
        mean = x.mean(0) if len(x) else np.zeros(opts.dim)
        std = x.std(0) if len(x) > 1 else np.ones(opts.dim)
        std = np.where(std > 1e-8, std, 1.0)
        return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}

    def serving_spec(self, input_name, opts):
        return {input_name: ((None, opts.dim), "float32")}

    def make_decoder(self, input_name, opts, state):
        return EmbeddingDecoder(input_name, state)

    def feature_spec(self, opts, state):
        return {"vector": ((opts.dim,), "float32")}

    def missing_values(self, input_name, opts):
        return {input_name: "all NaN"}

    def example(self, input_name, opts):
        return {input_name: [0.0] * opts.dim}


class EmbeddingDecoder:
    """float32 [N, dim] -> standardised [N, dim] (NaN -> 0); an all-NaN row is missing."""

    def __init__(self, input_name, state):
        self.input_name = input_name
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]

    def __call__(self, raw):
        import tensorflow as tf

        x = tf.cast(raw[self.input_name], tf.float32)
        seen = tf.logical_not(tf.math.is_nan(x))
        z = tf.where(seen, (x - tf.constant(self.mean)) / tf.constant(self.std), 0.0)
        return {"vector": z}, tf.cast(tf.reduce_any(seen, axis=1), tf.float32)
