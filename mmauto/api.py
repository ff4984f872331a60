"""The library's entry points; the CLI calls nothing else.

validate / demo / fit / predict / embed / evaluate / search. Heavy modules (TensorFlow) are imported inside
the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mmauto.errors import MmautoError


def validate(manifest_path) -> dict:
    """Schema and data checks without training; returns the summary (raises on problems)."""
    from mmauto.config.manifest import load_manifest
    from mmauto.data.checks import load_splits, load_zero_shot_tables
    from mmauto.data.summary import summarize

    m = load_manifest(manifest_path)
    return summarize(load_zero_shot_tables(m) if m.task == "zero_shot" else load_splits(m))


def demo(out, rows: int = 400, seed: int = 0, missing: float = 0.0, redundant: bool = False, modalities=None) -> Path:
    """`modalities`: names, or one comma-separated string (default: image, text, audio, tabular)."""
    from mmauto.data.demo import DEFAULT_MODALITIES, write_demo

    return write_demo(Path(out), rows=rows, seed=seed, missing=missing, redundant=redundant,
                      modalities=modalities or DEFAULT_MODALITIES)


def fit(manifest_path, out, *, max_trials: Optional[int] = None, time_budget=None, seed: Optional[int] = None,
        overwrite: bool = False, tuner: Optional[str] = None, epochs: Optional[int] = None,
        mixed_precision: bool = False, distributed: Optional[str] = None, oracle_address: Optional[str] = None,
        worker_id: Optional[str] = None, worker_timeout: float = 600.0, on_event=None) -> dict:
    """Search, pick the best trial, export the SavedModel, write the run folder's files.

    The stages are listed in `mmauto.run.fit`. `distributed="chief"` serves the search's oracle
    at `oracle_address` and exports at the end; `"worker"` runs trials for that chief and
    exports nothing. `on_event` receives `mmauto.events.Event` objects.
    """
    from mmauto import events
    from mmauto.run.context import FitOptions
    from mmauto.run.fit import fit as run_fit

    options = FitOptions(max_trials=max_trials, time_budget=time_budget, seed=seed, overwrite=overwrite, tuner=tuner,
                         epochs=epochs, mixed_precision=mixed_precision, distributed=distributed,
                         oracle_address=oracle_address, worker_id=worker_id, worker_timeout=worker_timeout)
    return run_fit(manifest_path, out, options, on_event or events.ignore)


def _open(run_dir, signature: str = "serving_default"):
    from mmauto.data.pipeline import Preprocessing
    from mmauto.run.rundir import load_manifest_of, model_dir

    m = load_manifest_of(Path(run_dir))
    prep = Preprocessing.from_json(m, Path(run_dir) / "preprocessing.json")
    import tensorflow as tf

    if any(s.encoder.type == "keras_hub" or (isinstance(s.encoder.type, list) and "keras_hub" in s.encoder.type) for s in m.inputs.values()):
        import tensorflow_text  # noqa: F401  (keras-hub tokenizers' ops)
    signatures = tf.saved_model.load(str(model_dir(run_dir))).signatures
    if signature not in signatures:
        from mmauto.errors import RunError

        raise RunError(f"{model_dir(run_dir)}: the SavedModel has no '{signature}' signature (exported by an older mmauto); "
                       "fit again to add it")
    return m, prep, signatures[signature]


def predict(run_dir, data, out=None, key_columns: Optional[list[str]] = None, progress=None, explain: bool = False):
    """Predictions for a table (any supported format) through the exported SavedModel.

    `out` and `key_columns` are checked before anything is predicted. `explain` adds, per row
    and input, `contribution_<input>` from the `serving_explain` signature."""
    from mmauto.evaluation import predict as evaluation

    if out:
        _check_out(Path(out))
    m, prep, sig = _open(run_dir, "serving_explain" if explain else "serving_default")
    frame, root = evaluation.read_checked(prep, Path(data), with_target=False)
    keys = _keys(frame, key_columns, data)
    outputs = evaluation.predict_frame(sig, prep, frame, root, progress)
    result = evaluation.prediction_frame(prep, frame, outputs, keys)
    if out:
        from mmauto.data.tables import write_table

        write_table(result, Path(out))
    return result


def embed(run_dir, data, out=None, key_columns: Optional[list[str]] = None, progress=None):
    """Embeddings of a table's rows through the SavedModel's `serving_embed` signature: per
    input `embedding_<input>` and the fused `embedding` (L2-normalised float32 vectors), after
    the rows' keys as `predict` writes them. Rows are read and checked as `predict` reads them.

    `out` (a .parquet file) and `key_columns` are checked before anything is computed."""
    from mmauto.evaluation import embed as embedding
    from mmauto.evaluation import predict as evaluation

    if out:
        embedding.check_out(Path(out))
        _check_out(Path(out), "embeddings.parquet", "")
    m, prep, sig = _open(run_dir, "serving_embed")
    frame, root = evaluation.read_checked(prep, Path(data), with_target=False)
    keys = _keys(frame, key_columns, data)
    result = embedding.embedding_frame(prep, frame, evaluation.predict_frame(sig, prep, frame, root, progress), keys)
    if out:
        embedding.write_embeddings(result, Path(out), embedding.embedding_columns(prep))
    return result


def _keys(frame, key_columns: Optional[list[str]], data) -> list[str]:
    """The columns that name the rows in the output: those asked for (each must exist), else
    `id` when the table has one (else none: the output numbers the rows)."""
    for col in key_columns or []:
        if col not in frame.columns:
            from mmauto.errors import DataError, did_you_mean

            cols = ", ".join(list(frame.columns)[:20]) + (", ..." if len(frame.columns) > 20 else "")
            raise DataError(f"--key: column '{col}' is not in {data}{did_you_mean(col, frame.columns)} (columns: {cols})")
    return key_columns if key_columns is not None else [c for c in ("id",) if c in frame.columns]


def _check_out(out: Path, example: str = "predictions.csv", formats: str = " (.csv, .tsv, .parquet, .jsonl)") -> None:
    """The output file can be written: not a folder, under a folder (or nothing yet)."""
    if out.is_dir():
        raise MmautoError(f"--out: {out} is a folder; give a file path such as {out / example}{formats}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MmautoError(f"--out: {parent} is a file, so {out} cannot be written under it")
            break


def evaluate(run_dir, data, ablate: bool = False, progress=None) -> dict:
    """Metrics on a labelled table; with `ablate`, the metric with each input (and each pair,
    with three or more inputs) removed, as the SavedModel sees missing inputs."""
    from mmauto.evaluation import predict as evaluation

    m, prep, sig = _open(run_dir)
    if not m.targets and not m.retrieval:  # retrieval scores its rows' pairs
        from mmauto.errors import RunError

        raise RunError(f"{run_dir}: its manifest names no `target` column (task zero_shot without labels), so there is "
                       "nothing to score against; add `target: COLUMN` to the manifest and fit again (nothing is trained)")
    frame, root = evaluation.read_checked(prep, Path(data), with_target=True)
    result = {"data": str(data), "rows": len(frame), "metrics": evaluation.score(prep, frame, evaluation.predict_frame(sig, prep, frame, root, progress))}
    if ablate and m.retrieval:
        result["ablation"] = {"skipped": "a retrieval model matches its inputs to each other, and removing one leaves nothing to rank"}
    elif ablate:
        result["ablation"] = evaluation.ablation(prep, sig, frame, root, result["metrics"], progress)
    return result


def search(run_dir, query, candidates, top_k: int = 10, out=None, query_input: Optional[str] = None,
           candidate_input: Optional[str] = None, progress=None):
    """A retrieval model's top-k candidate rows for each query row (exact cosine ranking in
    NumPy; see mmauto/evaluation/retrieval.py). Written to `out` when given (format by suffix)."""
    from mmauto.evaluation import retrieval

    if out:
        _check_out(Path(out))
    m, prep, sig = _open(run_dir)
    result = retrieval.search(prep, sig, Path(query), Path(candidates), top_k, query_input, candidate_input, progress)
    if out:
        from mmauto.data.tables import write_table

        write_table(result, Path(out))
    return result
