"""The contract every modality module fulfils.

A modality turns table cells into RAW serving values (bytes, strings, numbers), checks them
row by row before anything trains, and decodes raw values into model-ready tensors with
TensorFlow graph ops only. The same `decode` runs inside tf.data and inside the exported
SavedModel, which is what makes `mmauto predict` and TF Serving agree.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmauto.config.schema import Strict
from mmauto.registry import MODALITIES as MODALITIES  # the components register here


@dataclasses.dataclass
class RowProblems:
    """What a modality found in one table: a presence mask and row-level problems."""

    present: np.ndarray  # bool per row: the cell holds a value (missing is not an error)
    problems: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)  # (row, reason, detail)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


class Modality(abc.ABC):
    """Base class; subclasses register with `@MODALITIES.register(name)`."""

    name: ClassVar[str]
    Options: ClassVar[type[Strict]]
    # Encoders searched when the manifest leaves `encoder.type` unset (first one is the default).
    default_encoders: ClassVar[tuple[str, ...]] = ()
    # Whether a cell may hold a list (a Parquet/JSONL list column); otherwise one value per cell.
    list_cells: ClassVar[bool] = False
    # Whether `augment` changes anything: the search offers `augment` only when an input's does.
    augments: ClassVar[bool] = False

    # --- table side (no TensorFlow) -------------------------------------------------------
    def columns(self, opts) -> list[str]:
        return [opts.column]

    @abc.abstractmethod
    def check(self, opts, frame, root: Path) -> RowProblems:
        ...

    @abc.abstractmethod
    def raw_values(self, input_name: str, opts, frame, root: Path) -> dict[str, np.ndarray]:
        """Training-time values, keyed like the serving inputs (paths for media files)."""
        ...

    def serving_values(self, input_name: str, opts, frame, root: Path) -> dict[str, np.ndarray]:
        """What a client sends the SavedModel for these rows (file bytes for media)."""
        return {k: v for k, v in self.raw_values(input_name, opts, frame, root).items() if not k.startswith("_")}

    def fit_state(self, opts, raw_train: dict[str, np.ndarray]) -> dict:
        """JSON-serialisable statistics of the training split (vocabularies, means)."""
        return {}

    # --- graph side -------------------------------------------------------------------------
    @abc.abstractmethod
    def serving_spec(self, input_name: str, opts) -> dict[str, tuple[tuple, str]]:
        """Serving inputs: key -> (shape, dtype name); the batch dimension is included."""
        ...

    def load(self, input_name: str, opts, raw: dict) -> dict:
        """Per-element training-time loading (paths -> bytes); identity by default."""
        return raw

    @abc.abstractmethod
    def make_decoder(self, input_name: str, opts, state: dict):
        """A callable `raw batch dict -> (features dict, present float32 [N])`.

        Returned objects may hold TF resources (lookup tables); they are tracked by export.
        """
        ...

    @abc.abstractmethod
    def feature_spec(self, opts, state: dict) -> dict[str, tuple[tuple, str]]:
        """Decoded features: key -> (shape without batch, dtype name)."""
        ...

    def augment(self, opts, feats: dict, seed) -> dict:
        """Train-time augmentation of a decoded batch {feature: [N, ...]}: graph ops drawing
        from `seed` (int [2]). It runs in the training pipeline only, never in the served graph
        (`Preprocessing.batches`); identity by default."""
        return feats

    def missing_values(self, input_name: str, opts) -> dict[str, str]:
        """How a client marks each serving input missing, for the model card."""
        return {k: "NaN" if dt == "float32" else "empty string" for k, (_, dt) in self.serving_spec(input_name, opts).items()}

    def example(self, input_name: str, opts) -> dict[str, Any]:
        """A JSON-friendly example of each serving input for the model card."""
        return {}


def check_media(column_values, root: Path, probe, exists=Path.is_file, decode_check=None) -> RowProblems:
    """Row checks shared by file-backed modalities: an empty cell is a missing input; a path
    to nothing is a "missing media file"; `probe(path)` returns (reason, detail) for a file it
    cannot use, or None. `decode_check(paths)` then sees the files that passed, all at once,
    and returns {position in paths: (reason, detail)} (see `decode_problems`)."""
    column_values = list(column_values)
    # A Parquet binary column holds the files' content: b"" is an empty cell, other bytes no path.
    blobs = [isinstance(v, (bytes, bytearray)) for v in column_values]
    paths = ["" if blob else resolve_path(v, root) for v, blob in zip(column_values, blobs)]
    present = np.array([bool(p) or (blob and len(v) > 0) for p, v, blob in zip(paths, column_values, blobs)], dtype=bool)
    problems, passed = [], []
    for i, p in enumerate(paths):
        if blobs[i] and len(column_values[i]):
            problems.append((i, "not a file path", f"the cell holds {len(column_values[i])} bytes; the column takes file paths"))
            continue
        if not p:
            continue
        try:
            found_file = exists(Path(p))
        except OSError as exc:  # a name too long for the file system, say
            problems.append((i, "missing media file", f"{p[:80]}{'...' if len(p) > 80 else ''}: {exc.strerror or exc}"))
            continue
        if not found_file:
            problems.append((i, "missing media file", f"{p} not found"))
            continue
        found = probe(p)
        if found:
            problems.append((i, *found))
        else:
            passed.append(i)
    if decode_check is not None and passed:
        for j, found in decode_check([paths[i] for i in passed]).items():
            problems.append((passed[j], *found))
        problems.sort(key=lambda x: x[0])
    return RowProblems(present=present, problems=problems)


def decode_problems(paths: list[str], decode, reason: str) -> dict[int, tuple[str, str]]:
    """Decode every file with `decode` (encoded bytes -> tensor: the TF ops the model's graph
    runs), in one parallel tf.data pass; {position: (reason, detail)} for those that fail.

    Files a header check accepts can still fail here (a WAV cut short, a truncated BMP): this
    is what keeps them from failing inside training or serving instead.
    """
    import tensorflow as tf

    if not paths:
        return {}
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), tf.constant(paths, tf.string)))
    # A value of the output, not its size: a static shape would let the decode be pruned away.
    ds = ds.map(lambda i, p: (i, tf.reduce_sum(tf.cast(decode(tf.io.read_file(p)), tf.float32))),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ok = np.zeros(len(paths), dtype=bool)
    for idx, _ in ds.ignore_errors().batch(4096):
        ok[idx.numpy()] = True
    out = {}
    for i in np.where(~ok)[0]:
        try:  # again, alone, for the message
            decode(tf.io.read_file(paths[i]))
            detail = "cannot be decoded"
        except tf.errors.OpError as exc:
            detail = _op_message(exc)
        out[int(i)] = (reason, f"{paths[i]}: {detail}")
    return out


def _op_message(exc) -> str:
    """A TF op error's own words, without the function-node and op-name decorations."""
    import re

    text = (exc.message or type(exc).__name__).strip().splitlines()[0]
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text)
    return text[:120]


def cell_is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def resolve_path(value, root: Path) -> str:
    if cell_is_missing(value):
        return ""
    p = Path(str(value).strip())
    return str(p if p.is_absolute() else (root / p))
