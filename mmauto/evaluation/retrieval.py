"""`mmauto search`: a retrieval model's query rows ranked against candidate rows, exactly.

Each table is embedded through the exported SavedModel from its raw inputs (the query table
through one input, the candidates through another; the columns of the model's other inputs
need not be there and are sent empty), then every query's candidates are ranked by cosine
similarity in NumPy (heads/retrieval.py `top_k`): exact, and in memory (queries x candidates
similarities, a block of queries at a time). Beyond memory, index the candidates' embeddings
(`mmauto predict` writes them) in a vector index such as FAISS or ScaNN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from mmauto.data.pipeline import Preprocessing
from mmauto.data.tables import read_table
from mmauto.errors import DataError, MmautoError, one_of
from mmauto.evaluation.predict import blank, predict_frame
from mmauto.heads.retrieval import top_k
from mmauto.modalities import MODALITIES


def _columns(prep: Preprocessing, name: str) -> list[str]:
    spec = prep.manifest.inputs[name]
    return list(MODALITIES.get(spec.modality)().columns(spec.options))


def _has(prep: Preprocessing, frame: pd.DataFrame, name: str) -> bool:
    return all(c in frame.columns for c in _columns(prep, name))


def choose_inputs(prep: Preprocessing, query: pd.DataFrame, candidates: pd.DataFrame,
                  query_input: Optional[str], candidate_input: Optional[str]) -> tuple[str, str]:
    """The query's input and the candidates' input: as named, or the one input whose columns
    the table holds (the candidates: another than the query's)."""
    names = list(prep.manifest.inputs)
    for given, flag in ((query_input, "--query-input"), (candidate_input, "--candidate-input")):
        if given is not None and given not in names:
            raise MmautoError(f"{flag}: {one_of(given, names, 'input')}")
    if query_input is None:
        held = [n for n in names if _has(prep, query, n) and n != candidate_input]
        if len(held) != 1:
            raise MmautoError(f"the query table holds the columns of {len(held)} of the model's inputs "
                              f"({', '.join(held) or 'none'}); name the query's with --query-input ({', '.join(names)})")
        query_input = held[0]
    if candidate_input is None:
        held = [n for n in names if _has(prep, candidates, n) and n != query_input]
        if len(held) != 1:
            raise MmautoError(f"the candidates table holds the columns of {len(held)} of the model's inputs other than "
                              f"'{query_input}' ({', '.join(held) or 'none'}); name the candidates' with --candidate-input")
        candidate_input = held[0]
    if query_input == candidate_input:
        raise MmautoError(f"the query and the candidates use the same input '{query_input}'; a retrieval model matches one input to another")
    return query_input, candidate_input


def embed(prep: Preprocessing, signature, frame: pd.DataFrame, root: Path, name: str, file: str, progress=None) -> np.ndarray:
    """The rows' `embedding_<name>` through the SavedModel; the other inputs are sent empty.
    A row whose input is empty or unreadable is a DataError naming it."""
    for col in _columns(prep, name):
        if col not in frame.columns:
            cols = ", ".join(list(frame.columns)[:20])
            raise DataError(f"{file}: column '{col}' named by inputs.{name} is not in the table (columns: {cols})")
    spec = prep.manifest.inputs[name]
    result = MODALITIES.get(spec.modality)().check(spec.options, frame, root)
    if result.problems:
        row, reason, detail = result.problems[0]
        raise DataError(f"{file}: row {row + 1}: {reason}: inputs.{name}: {detail}")
    empty = np.where(~np.asarray(result.present))[0]
    if len(empty):
        raise DataError(f"{file}: row {empty[0] + 1}: inputs.{name} is empty; a row to rank needs it")
    others = [n for n in prep.manifest.inputs if n != name]
    out = predict_frame(signature, prep, blank(prep, frame, others), root, progress)
    return np.asarray(out[prep.head.key(f"embedding_{name}")], "float32")


def search(prep: Preprocessing, signature, query_path: Path, candidates_path: Path, k: int,
           query_input: Optional[str] = None, candidate_input: Optional[str] = None, progress=None) -> pd.DataFrame:
    """For each query row, its top-k candidate rows: one output row per (query, rank) with
    `query_row`, `rank` (1 = most similar), `candidate_row` (1-based rows of their tables, as
    error messages number them), `score` (cosine similarity), and `query_id` / `candidate_id`
    when the table has an `id` column."""
    if prep.head.name != "retrieval":
        raise MmautoError(f"`mmauto search` ranks with a retrieval model; this run's task is {prep.manifest.task}")
    if k < 1:
        raise MmautoError(f"--top-k: expected 1 or more, got {k}")
    query, candidates = read_table(Path(query_path)), read_table(Path(candidates_path))
    for frame, path in ((query, query_path), (candidates, candidates_path)):
        if not len(frame):
            raise DataError(f"{path}: the table has no rows")
    qi, ci = choose_inputs(prep, query, candidates, query_input, candidate_input)
    m = prep.manifest
    q = embed(prep, signature, query, m.media_root(Path(query_path).resolve()), qi, str(query_path), progress)
    c = embed(prep, signature, candidates, m.media_root(Path(candidates_path).resolve()), ci, str(candidates_path), progress)
    idx, scores = top_k(q, c, k)
    kk = idx.shape[1]
    out = pd.DataFrame({"query_row": np.repeat(np.arange(1, len(q) + 1), kk)})
    if "id" in query.columns:
        out["query_id"] = np.repeat(query["id"].values, kk)
    out["rank"] = np.tile(np.arange(1, kk + 1), len(q))
    out["candidate_row"] = idx.reshape(-1) + 1
    if "id" in candidates.columns:
        out["candidate_id"] = candidates["id"].values[idx.reshape(-1)]
    out["score"] = scores.reshape(-1)
    out.attrs["inputs"] = (qi, ci)
    return out
