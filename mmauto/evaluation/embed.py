"""Embeddings through the exported SavedModel's `serving_embed` signature, as a table: the rows'
keys (as `mmauto predict` writes them) and one list<float32> column per embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmauto.data.pipeline import Preprocessing
from mmauto.errors import MmautoError
from mmauto.evaluation.predict import key_frame


def check_out(out: Path) -> None:
    """Only parquet keeps a cell's vector as a list of float32 (CSV would write its repr)."""
    if Path(out).suffix.lower() != ".parquet":
        raise MmautoError(f"--out: {out}: embeddings are written as parquet (one list<float32> column per embedding); "
                          "give a path ending in .parquet")


def embedding_columns(prep: Preprocessing) -> list[str]:
    """serving_embed's outputs: `embedding_<input>` per input, then the fused `embedding`."""
    return [f"embedding_{n}" for n in prep.manifest.inputs] + ["embedding"]


def embedding_frame(prep: Preprocessing, frame: pd.DataFrame, outputs: dict, key_columns: list[str]) -> pd.DataFrame:
    """One row per row of `frame`: its keys, then each embedding as a float32 vector per cell."""
    out = key_frame(frame, key_columns)
    for col in embedding_columns(prep):
        values = np.asarray(outputs.get(col, np.zeros((0, 0))), dtype=np.float32)
        out[col] = pd.Series(list(values), index=out.index, dtype=object)
    return out


def write_embeddings(result: pd.DataFrame, path: Path, columns: list[str]) -> None:
    """A parquet file whose `columns` are list<float32>, stated rather than left to pyarrow's
    guess from the cells (which has no element type to go by in a table of 0 rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(result.drop(columns=columns), preserve_index=False)
    for col in columns:
        table = table.append_column(col, pa.array(list(result[col]), type=pa.list_(pa.float32())))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))
