"""Load the manifest's tables, check every row, and split. TensorFlow only runs the media
decoders (image, audio) the model's graph runs, so a file they refuse is a bad row here.

A missing cell (no photo, empty text, NaN) is not an error: it is a missing modality. Broken
things are: a path to a file that does not exist, a corrupt file, a number that does not
parse, a missing target. `data.on_error: fail` stops on them naming the file and the first
five rows; `skip` drops them and counts each reason. Nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from mmauto.config.manifest import Manifest, TargetSpec
from mmauto.data.tables import read_table, split_indices
from mmauto.errors import DataError, ManifestError, did_you_mean
from mmauto.modalities import MODALITIES
from mmauto.modalities.base import cell_is_missing
from mmauto.modalities.tabular import FLOAT32_MAX, numeric_is_missing

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Problem:
    """One kind of bad row in one table."""

    file: str
    reason: str
    rows: list[int]  # 1-based data rows (the header is not a row)
    details: list[str]

    def distinct_rows(self) -> list:
        """The rows, each once (a row with two bad inputs of one kind is listed twice in `rows`)."""
        return list(dict.fromkeys(self.rows))

    def line(self) -> str:
        distinct = self.distinct_rows()
        rows = ", ".join(str(r) for r in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
        return f"{self.file}: {len(distinct)} row(s) with {self.reason} (rows {rows}); e.g. row {self.rows[0]}: {self.details[0]}"

    def to_dict(self) -> dict:
        distinct = self.distinct_rows()
        return {"file": self.file, "reason": self.reason, "count": len(distinct), "rows": distinct[:5], "examples": self.details[:5]}


@dataclasses.dataclass
class Split:
    name: str
    source: str
    frame: pd.DataFrame
    root: Path
    present: dict[str, np.ndarray]
    # 1-based row of each frame row in its table (`source`): rows dropped earlier leave gaps.
    numbers: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)

    def row_numbers(self) -> np.ndarray:
        return np.arange(1, len(self.frame) + 1) if self.numbers is None else self.numbers


@dataclasses.dataclass
class Splits:
    """The checked tables of one manifest, and what was dropped on the way."""

    manifest: Manifest
    splits: dict[str, Split]
    dropped: list[Problem]
    classes_by_target: dict[str, list[str]]  # target column -> classes (labels); not regression's

    @property
    def classes(self) -> Optional[list[str]]:
        """The primary target's classes (None for regression, and for a zero-shot manifest without labels)."""
        t = self.manifest.target
        return self.classes_by_target.get(t.column) if t else None

    def __getitem__(self, name) -> Split:
        return self.splits[name]

    def dropped_rows(self) -> int:
        """Rows dropped, each counted once however many problems it had."""
        return len({(p.file, r) for p in self.dropped for r in p.rows})

    def dropped_by_reason(self) -> dict[str, int]:
        """Dropped rows per reason (a row with two problems counts under both)."""
        rows: dict[str, set] = defaultdict(set)
        for p in self.dropped:
            rows[p.reason].update((p.file, r) for r in p.rows)
        return {reason: len(v) for reason, v in sorted(rows.items(), key=lambda kv: (-len(kv[1]), kv[0]))}


# === Targets ===


def label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def target_values(target: TargetSpec, frame: pd.DataFrame):
    """Per-row parsed values of one target and per-row problems [(row, reason, detail)]."""
    col, task = target.column, target.task
    cells = frame[col].tolist()
    problems, values = [], []
    for i, v in enumerate(cells):
        if cell_is_missing(v) or (task == "regression" and numeric_is_missing(v)):
            problems.append((i, "missing target", f"column '{col}' is empty" if cell_is_missing(v) else f"column '{col}' holds NaN"))
            values.append(None)
        elif task == "regression":
            try:
                x = float(v)
                if not np.isfinite(x):
                    raise ValueError
                if abs(x) > FLOAT32_MAX:
                    problems.append((i, "unparsable target", f"column '{col}' holds {x:g}, beyond float32's range (±3.4e38)"))
                    values.append(None)
                    continue
                values.append(x)
            except (TypeError, ValueError):
                problems.append((i, "unparsable target", f"column '{col}' holds {v!r}, not a number"))
                values.append(None)
        elif task == "multilabel":
            values.append(sorted({t.strip() for t in str(v).split(target.separator) if t.strip()}))
        else:
            values.append(label_text(v))
    return values, problems


def table_targets(manifest: Manifest, frame: pd.DataFrame, auxiliary: bool = True) -> list[TargetSpec]:
    """The targets read from a table: all of them for training; for evaluation (`auxiliary`
    False) the served ones, and auxiliary ones only where the table has their column."""
    return [t for t in manifest.targets if auxiliary or not t.auxiliary or t.column in frame.columns]


def targets_problems(manifest: Manifest, frame: pd.DataFrame, auxiliary: bool = True) -> list:
    """Per-row target problems of the manifest's targets. With one target a missing value is a
    bad row; with several, a row is bad only where every target is missing (its loss is
    masked per target), or where a value does not parse."""
    found, missing = [], defaultdict(list)
    for t in table_targets(manifest, frame, auxiliary):
        for row, reason, detail in target_values(t, frame)[1]:
            if reason == "missing target" and len(manifest.targets) > 1:
                missing[row].append(t.column)
            else:
                found.append((row, reason, detail))
    for row, cols in sorted(missing.items()):
        if len(cols) == len(manifest.targets):
            found.append((row, "missing target", f"every target ({', '.join(cols)}) is empty"))
    return found


def sort_labels(labels) -> list[str]:
    try:
        return sorted(labels, key=lambda s: (0, float(s), s))
    except ValueError:
        return sorted(labels)


# === Loading ===


def _check_columns(manifest: Manifest, frame: pd.DataFrame, file: str, with_target: bool = True, auxiliary: bool = True) -> None:
    wanted = []  # (column, manifest key, modality or None for the target, lists allowed)
    if with_target:
        several = isinstance(manifest.raw.get("target"), list)
        for i, t in enumerate(manifest.targets):
            if not auxiliary and t.auxiliary:
                continue
            key = f"target[{i}]" if several else "target" if isinstance(manifest.raw.get("target"), str) else "target.column"
            wanted.append((t.column, key, None, False))
    for name, spec in manifest.inputs.items():
        mod = MODALITIES.get(spec.modality)()
        for col in mod.columns(spec.options):
            wanted.append((col, f"inputs.{name}", spec.modality, mod.list_cells))
    for col, key, _, _ in wanted:
        if col not in frame.columns:
            hint = did_you_mean(col, frame.columns)
            cols = ", ".join(list(frame.columns)[:20]) + (", ..." if len(frame.columns) > 20 else "")
            raise DataError(f"{file}: column '{col}' named by {key} is not in the table{hint} (columns: {cols})")
    for col, key, modality, lists_ok in wanted:
        _check_cell_kinds(frame[col], col, key, modality, lists_ok, file)


def _check_cell_kinds(series: pd.Series, col: str, key: str, modality, lists_ok: bool, file: str) -> None:
    """A struct (mapping) cell is never usable, and a list only where the modality takes one
    (time series, embeddings): anything else would train on the object's printed form."""
    if series.dtype != object:
        return
    for i, v in enumerate(series.tolist()):
        if isinstance(v, dict):
            kind = "a struct (mapping)"
        elif isinstance(v, (list, tuple, np.ndarray)) and not lists_ok:
            kind = "a list"
        else:
            continue
        what = f"{key} ({modality}) takes" if modality else f"{key} takes"
        one = "one value per cell" + ("; join the items into one string" if modality == "text" else "")
        if lists_ok:
            one = "a list of numbers or a path per cell"
        raise DataError(f"{file}: column '{col}' holds {kind} (row {i + 1}) but {what} {one}")


def _row_problems(manifest: Manifest, frame: pd.DataFrame, root: Path, with_target: bool, auxiliary: bool = True):
    """(per-input presence, {reason: [(row, detail)]})."""
    found: dict[str, list] = defaultdict(list)
    present = {}
    for name, spec in manifest.inputs.items():
        mod = MODALITIES.get(spec.modality)()
        result = mod.check(spec.options, frame, root)
        present[name] = result.present
        for row, reason, detail in result.problems:
            found[reason].append((row, f"inputs.{name}: {detail}"))
    if with_target:
        for row, reason, detail in targets_problems(manifest, frame, auxiliary):
            found[reason].append((row, detail))
    if present:
        none = ~np.any(np.stack(list(present.values())), axis=0)
        for row in np.where(none)[0]:
            found["no input present"].append((int(row), "every input of the row is empty"))
    return present, found


def load_table_checked(manifest: Manifest, path: Path, with_target: bool = True, auxiliary: bool = True):
    """Read one table and check it. Returns (frame, root, presence, problems). `auxiliary`
    False (evaluation): auxiliary targets are read only where the table has them."""
    file = str(path)
    frame = read_table(path)
    _check_columns(manifest, frame, file, with_target, auxiliary)
    root = manifest.media_root(path)
    present, found = _row_problems(manifest, frame, root, with_target, auxiliary)
    problems = [
        Problem(file, reason, [r + 1 for r, _ in sorted(items)], [d for _, d in sorted(items)])
        for reason, items in found.items()
    ]
    return frame, root, present, problems


def _apply_policy(manifest: Manifest, frame, present, problems, dropped: list[Problem], numbers=None):
    """(frame, present, numbers) without the bad rows; `numbers` are the rows' 1-based numbers in
    their table, which the problems' rows refer to."""
    numbers = np.arange(1, len(frame) + 1) if numbers is None else numbers
    if not problems:
        return frame, present, numbers
    if manifest.data.on_error == "fail":
        first = problems[0]
        more = len({r for p in problems[1:] for r in p.rows} - set(first.rows))
        others = ", ".join(f"{p.reason} in {len(p.rows)} row(s)" for p in problems[1:])
        tail = (f" (+{more} more bad rows)" if more else "") + (f"; also {others}" if others else "")
        raise DataError(f"{first.line()}{tail}; fix them, or set data.on_error: skip to drop them")
    keep = np.where(~np.isin(numbers, [r for p in problems for r in p.rows]))[0]
    dropped.extend(problems)
    return frame.iloc[keep].reset_index(drop=True), {k: v[keep] for k, v in present.items()}, numbers[keep]


def load_splits(manifest: Manifest) -> Splits:
    """Every split of the manifest, checked, with bad rows handled by `data.on_error`."""
    dropped: list[Problem] = []
    splits = _read_tables(manifest, dropped)
    train = splits["train"]
    fractions = {s: getattr(manifest.data.split, s) for s in ("validation", "test") if s not in splits}
    fractions = {k: v for k, v in fractions.items() if v > 0}
    if fractions:
        strata = None
        if manifest.target is not None and manifest.target.task == "classification" and manifest.data.split.stratify:
            strata = np.array(target_values(manifest.target, train.frame)[0], dtype=object)
            counts = pd.Series(strata).value_counts()
            if counts.min() < 2 or any(v is None for v in strata):
                strata = None  # a class seen once (or a masked missing label) cannot be spread over splits
        idx = split_indices(len(train.frame), fractions, manifest.data.split.seed, strata)
        for name, rows in idx.items():
            frame = train.frame.iloc[rows].reset_index(drop=True)
            present = {k: v[rows] for k, v in train.present.items()}
            source = train.source if name == "train" else f"{train.source} ({name} split, seed {manifest.data.split.seed})"
            splits[name] = Split(name, source, frame, train.root, present, train.row_numbers()[rows])
    if "validation" not in splits or splits["validation"].rows == 0:
        raise DataError(f"{train.source}: too few rows for a validation split; add rows or give data.validation")

    for t in manifest.targets if len(manifest.targets) > 1 else []:
        if all(v is None for v in target_values(t, train.frame)[0]):
            raise DataError(f"{train.source}: target '{t.column}' ({t.task}) is empty in every training row; "
                            "fill it in or remove it from `target`")
    classes = {t.column: _classes(manifest, t, splits, dropped) for t in manifest.targets if t.task != "regression"}
    _check_pinned_scaling(manifest, classes)
    return Splits(manifest, splits, dropped, classes)


def _check_pinned_scaling(manifest: Manifest, classes: dict[str, list[str]]) -> None:
    """`train.calibrate: beta` scales one sigmoid output: every served classification target
    must have two classes (known only once the training rows are read)."""
    if manifest.train.calibrate != "beta":
        return
    for t in manifest.served_targets:  # an auxiliary target is trained, never calibrated
        if t.task != "regression" and not (t.task == "classification" and len(classes[t.column]) == 2):
            what = f"{len(classes[t.column])} classes" if t.task == "classification" else "several labels"
            raise ManifestError(manifest.where, "train.calibrate",
                                f"'beta' calibrates a two-class label, and target '{t.column}' has {what}; "
                                "use true, 'temperature', 'vector' or 'matrix'")


def _read_tables(manifest: Manifest, dropped: list[Problem], with_target: bool = True, more_problems=None) -> dict[str, Split]:
    """Each table the manifest names, checked, with bad rows handled by `data.on_error`;
    `more_problems(path, frame)` adds a caller's own checks."""
    splits: dict[str, Split] = {}
    for name in SPLITS:
        path = manifest.table_path(name)
        if path is None:
            continue
        frame, root, present, problems = load_table_checked(manifest, path, with_target=with_target)
        if more_problems is not None:
            problems = problems + more_problems(path, frame)
        frame, present, numbers = _apply_policy(manifest, frame, present, problems, dropped)
        if len(frame) == 0:
            raise DataError(f"{path}: no usable rows left after dropping bad ones")
        splits[name] = Split(name, str(path), frame, root, present, numbers)
    return splits


def load_zero_shot_tables(manifest: Manifest) -> Splits:
    """`task: zero_shot`: every table the manifest names, checked and kept whole (nothing is
    trained, so nothing is split off); with a target, a label that is not one of
    `zero_shot.classes` is a bad row (`data.on_error`)."""
    labelled = bool(manifest.targets)
    classes = list(manifest.zero_shot.classes)

    def unknown_labels(path, frame) -> list[Problem]:
        values = target_values(manifest.target, frame)[0]
        bad = [i for i, v in enumerate(values) if v is not None and v not in classes]
        return [Problem(str(path), "a label not among zero_shot.classes", [i + 1 for i in bad],
                        [f"target '{manifest.target.column}': label '{values[i]}'" for i in bad])] if bad else []

    dropped: list[Problem] = []
    splits = _read_tables(manifest, dropped, with_target=labelled, more_problems=unknown_labels if labelled else None)
    return Splits(manifest, splits, dropped, {manifest.target.column: classes} if labelled else {})


def _classes(manifest: Manifest, target: TargetSpec, splits: dict[str, Split], dropped: list[Problem]) -> list[str]:
    """The target's classes (labels) seen in training; a validation or test row with a class
    never seen in training is a bad row (`data.on_error`)."""
    train = splits["train"]
    values = [v for v in target_values(target, train.frame)[0] if v is not None]
    if target.task == "multilabel":
        seen = sorted({t for v in values for t in v})
    else:
        seen = sort_labels(set(values))
    if len(seen) < 2:
        what = "label" if target.task == "multilabel" else "class"
        raise DataError(f"{train.source}: target '{target.column}' has {len(seen)} {what}(s) in training ({', '.join(seen)}); at least two are needed")
    if target.task == "classification":
        known = set(seen)
        for name in ("validation", "test"):
            if name not in splits:
                continue
            sp = splits[name]
            vals = target_values(target, sp.frame)[0]
            bad = [i for i, v in enumerate(vals) if v is not None and v not in known]
            if bad:
                numbers = sp.row_numbers()
                p = Problem(sp.source, "a class never seen in training", [int(numbers[i]) for i in bad], [f"target '{target.column}': label '{vals[i]}'" for i in bad])
                frame, present, numbers = _apply_policy(manifest, sp.frame, sp.present, [p], dropped, numbers)
                splits[name] = Split(name, sp.source, frame, sp.root, present, numbers)
    return seen
