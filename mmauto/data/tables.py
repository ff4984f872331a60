"""Reading tables (CSV, TSV, Parquet, JSONL) and class-folder image directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmauto.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


def read_table(path: Path) -> pd.DataFrame:
    """A table as strings-or-numbers; a folder of class sub-folders becomes (image, label).

    Only an empty cell (a JSON null) is missing: `NA`, `None`, `null` and the like are values,
    read as written (numeric columns also take `NaN`: see `parse_numeric`).
    """
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            _check_header(path, sep)
            frame = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[])
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".jsonl":
            frame = _read_jsonl(path)
        elif suffix == ".json":
            frame = pd.read_json(path, dtype=False, convert_dates=False, keep_default_dates=False)
        else:
            raise DataError(f"{path}: unsupported table format '{suffix}' (.csv, .tsv, .parquet, .jsonl)")
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the table is empty") from None
    except Exception as exc:  # pandas/pyarrow raise many kinds for malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read the table: {first}") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the table has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _check_header(path: Path, sep: str) -> None:
    """A repeated column name is an error (pandas would silently rename the second to `x.1`)."""
    try:
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return
    names = [str(v) for v in header.iloc[0].tolist()] if len(header) else []
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{path}: column '{name}' appears twice in the header (columns {seen[name]} and {i}); "
                            "column names must be unique")
        seen[name] = i


def _read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per line; a broken line is reported by its number."""
    import json

    def unique_keys(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"key '{k}' appears twice")
            out[k] = v
        return out

    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"), object_pairs_hook=unique_keys)
            except json.JSONDecodeError as exc:
                what = exc.msg.removesuffix(" at")
                raise DataError(f"{path}: line {number}, column {exc.colno}: not valid JSON ({what}); "
                                "each line holds one JSON object") from None
            except ValueError as exc:  # a key written twice
                raise DataError(f"{path}: line {number}: {exc}; each line holds one JSON object") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object {{\"column\": value, ...}}, "
                                f"got a {type(record).__name__}")
            records.append(record)
    if not records:
        raise DataError(f"{path}: the table is empty")
    return pd.DataFrame.from_records(records)


def read_image_folder(path: Path) -> pd.DataFrame:
    rows = []
    for cls in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(cls.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((str(f.relative_to(path)), cls.name))
    if not rows:
        raise DataError(f"{path}: no images found in class sub-folders (expected {path}/<class>/<image>.png)")
    return pd.DataFrame(rows, columns=["image", "label"])


def split_indices(n: int, fractions: dict[str, float], seed: int, strata=None) -> dict[str, np.ndarray]:
    """Deterministic split of range(n); stratified when `strata` (one label per row) is given.

    Every split named in `fractions` gets at least one row of each stratum large enough to share.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.where(strata == s)[0] for s in sorted(set(strata), key=str)]
    out = {k: [] for k in ["train", *fractions]}
    for idx in groups:
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for name, frac in fractions.items():
            take = int(round(frac * len(idx)))
            if frac > 0 and take == 0 and len(idx) >= 3:
                take = 1
            out[name].append(idx[start : start + take])
            start += take
        out["train"].append(idx[start:])
    return {k: np.sort(np.concatenate(v)) if v else np.array([], dtype=int) for k, v in out.items()}


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write by suffix (.csv default, .parquet, .jsonl)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
