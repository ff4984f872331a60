"""The library's entry points; the CLI calls nothing else.

validate / demo / fit / predict / evaluate. Heavy modules (TensorFlow) are imported inside
the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mmauto.errors import MmautoError, SearchError


def validate(manifest_path) -> dict:
    """Schema and data checks without training; returns the summary (raises on problems)."""
    from mmauto.data.checks import load_splits
    from mmauto.manifest import load_manifest
    from mmauto.summary import summarize

    return summarize(load_splits(load_manifest(manifest_path)))


def demo(out, rows: int = 400, seed: int = 0, missing: float = 0.0, redundant: bool = False, modalities=None) -> Path:
    """`modalities`: names, or one comma-separated string (default: image, text, audio, tabular)."""
    from mmauto.demo import DEFAULT_MODALITIES, write_demo

    return write_demo(Path(out), rows=rows, seed=seed, missing=missing, redundant=redundant,
                      modalities=modalities or DEFAULT_MODALITIES)


def fit(manifest_path, out, *, max_trials: Optional[int] = None, time_budget=None, seed: Optional[int] = None,
        overwrite: bool = False, tuner: Optional[str] = None, epochs: Optional[int] = None,
        mixed_precision: bool = False, distributed: Optional[str] = None, oracle_address: Optional[str] = None,
        worker_id: Optional[str] = None, worker_timeout: float = 600.0, on_event=None) -> dict:
    """Search, pick the best trial, export the SavedModel, write the run folder's files.

    `distributed="chief"` serves the search's oracle at `oracle_address` and exports at the
    end; `"worker"` runs trials for that chief and exports nothing.
    """
    import json
    import shutil
    import time

    from mmauto.manifest import load_manifest, parse_duration

    start = time.time()
    overrides: dict = {}
    if seed is not None:
        overrides.setdefault("train", {})["seed"] = seed
    if epochs is not None:
        overrides.setdefault("train", {})["epochs"] = epochs
    if tuner is not None:
        overrides.setdefault("search", {})["tuner"] = tuner
    if mixed_precision:
        overrides.setdefault("train", {})["mixed_precision"] = True
    m = load_manifest(manifest_path, overrides or None)
    budget = parse_duration(time_budget) if time_budget is not None else m.search.budget_seconds()
    trials = max_trials if max_trials is not None else m.search.max_trials
    deadline = start + budget if budget else None
    emit = on_event or (lambda *a, **k: None)
    run_dir = Path(out)
    role = _distributed_role(distributed, oracle_address, worker_id)
    if overwrite and run_dir.exists() and role != "worker":
        shutil.rmtree(run_dir)

    from mmauto import rundir

    resumed = rundir.prepare(run_dir, m, overwrite and role != "worker")
    emit("start", manifest=m, budget=budget, max_trials=trials, resumed=resumed, run_dir=run_dir)

    from mmauto.data.checks import load_splits
    from mmauto.summary import summarize

    splits = load_splits(m)
    emit("data", summary=summarize(splits))

    from mmauto import hardware
    from mmauto.data.pipeline import Preprocessing

    hardware.configure(m.train.mixed_precision, m.train.seed)
    prep = Preprocessing.fit(m, splits)
    prep.to_json(run_dir / "preprocessing.json")

    from mmauto.hypermodel import MultimodalHyperModel
    from mmauto.search import class_weights, leaderboard, make_oracle, write_leaderboard

    train, val = splits["train"], splits["validation"]
    data = {
        "train": prep.decoded_dataset(train.frame, train.root, cache=_cache_file(run_dir, prep, train)),
        "validation": prep.decoded_dataset(val.frame, val.root, cache=_cache_file(run_dir, prep, val)),
        "train_rows": train.rows,
    }
    if m.train.class_weight == "balanced" and prep.head.kind in ("binary", "multiclass"):
        data["class_weight"] = class_weights(prep.targets(train.frame), len(prep.head.classes))
    objective = m.search.objective or prep.head.default_objective()
    oracle = make_oracle(m.search.tuner, objective, trials, m.train.epochs, m.train.seed, m.search.max_failures)
    reserve = 0.0 if budget is None else min(max(10.0, 0.12 * budget), 300.0)
    hm = MultimodalHyperModel(prep)
    from mmauto.cache import FeatureCache, transfer_weights

    cache = FeatureCache(run_dir / "cache", prep, data, on_event=emit) if m.train.feature_cache else None
    import contextlib
    import io

    # keras-tuner prints its own lines ("Reloading Tuner from ...") to stdout, which belongs to
    # our --json output; our events say the same.
    tuner_out = io.StringIO()
    with contextlib.redirect_stdout(tuner_out):
        tuner_ = _make_tuner(hm, oracle, data, m, deadline, reserve, trials, cache, emit, run_dir)
    emit("search_start", objective=objective, done=len(getattr(tuner_.oracle, "trials", {}) or {}), role=role)
    warning = None
    try:
        with contextlib.redirect_stdout(tuner_out):
            if role == "chief":
                from mmauto.distributed import serve_oracle

                tuner_.limit_trials()
                warning = serve_oracle(tuner_.oracle, worker_timeout, None if deadline is None else deadline - reserve, emit)
            else:
                tuner_.search(verbose=0)

    except RuntimeError as exc:  # keras-tuner stops after too many consecutive failures
        rows = leaderboard(tuner_, objective)
        write_leaderboard(rows, run_dir)
        failed = [r for r in rows if r["status"] == "failed"]
        why = (failed[-1]["message"] or "").strip().splitlines()[-1:] if failed else [str(exc)]
        raise SearchError(f"{len(failed)} trial(s) failed in a row; the last: {why[0] if why else exc}") from None
    if role == "worker":
        summary = {"role": "worker", "run_dir": str(run_dir), "trials": len(tuner_.seconds), "seconds": round(time.time() - start, 1)}
        emit("worker_done", summary=summary)
        return summary
    if warning:
        emit("warning", text=warning)
    rows = leaderboard(tuner_, objective)
    write_leaderboard(rows, run_dir)
    best = tuner_.oracle.get_best_trials(1)
    if not best:
        raise SearchError(f"no trial finished within the budget ({budget:.0f}s); give a larger --time-budget" if budget else "no trial finished")
    best = best[0]
    emit("export_start", trial=best.trial_id)
    hp = best.hyperparameters
    frozen = tuner_.use_cache(hp)
    model = tuner_.load_model(best)
    if frozen:  # trained on cached features: the export needs the whole graph
        hm.cached = {}
        full = tuner_._build_hypermodel(hp)
        transfer_weights(model, full)
        model = full
    encoders, keys = hm.encoders(hp), hm.input_keys(hp)

    from mmauto import card
    from mmauto.export import PARITY_ROWS, export

    head_rows = val.frame.iloc[:PARITY_ROWS]
    decoded = prep.decoded_dataset(head_rows, val.root, with_targets=False)
    expected = model.predict(prep.batches(decoded, PARITY_ROWS, encoders, keys), verbose=0)
    expected = _expected_outputs(prep, expected)
    parity = export(model, prep, encoders, keys, run_dir / "model", prep.serving_values(head_rows, val.root), expected)

    from mmauto import evaluation
    import tensorflow as tf

    sig = tf.saved_model.load(str(run_dir / "model")).signatures["serving_default"]
    scores, frames = {}, []
    row_seconds = []
    for name in ("validation", "test"):
        if name in splits.splits and splits[name].rows:
            sp = splits[name]
            t0 = time.time()
            outputs = evaluation.predict_frame(sig, prep, sp.frame, sp.root)
            row_seconds.append((time.time() - t0) / sp.rows)
            scores[name] = evaluation.score(prep, sp.frame, outputs)
            frames.append(evaluation.prediction_frame(prep, sp.frame, outputs, []).assign(split=name, target=sp.frame[m.target.column].values))
    import pandas as pd

    pd.concat(frames).to_csv(run_dir / "eval_predictions.csv", index=False)
    last = "test" if "test" in splits.splits and splits["test"].rows else "validation"
    if len(m.inputs) > 1:
        sp = splits[last]
        # The ablation predicts the split once per removed input (and pair): skip it rather than
        # break the time budget, measured from the evaluation passes just made.
        cost = evaluation.ablation_passes(prep) * sp.rows * max(row_seconds)
        if deadline is not None and time.time() + cost + REPORT_SECONDS > deadline:
            why = (f"skipped to keep the time budget (about {cost:.0f}s for {evaluation.ablation_passes(prep)} passes "
                   f"over {sp.rows} {last} rows); run `mmauto evaluate {run_dir} <table> --ablate`")
            emit("warning", text=f"modality ablation {why}")
            (run_dir / "ablation.json").write_text(json.dumps({"split": last, "skipped": why}, indent=2))
        else:
            emit("ablation", split=last)
            ablation = evaluation.ablation(prep, sig, sp.frame, sp.root, scores[last])
            (run_dir / "ablation.json").write_text(json.dumps({"split": last, **ablation}, indent=2))
    # Curves exist for trials run by this process; a best trial from an earlier, resumed run has
    # none here (its curves stay in search/logs for TensorBoard) and the report says so.
    history = tuner_.histories.get(best.trial_id, {})
    elapsed = time.time() - start
    summary = {
        "run_dir": str(run_dir),
        "objective": objective,
        "best_trial": best.trial_id,
        "best_score": best.score,
        "fusion": hp.values.get("fusion"),
        "encoders": encoders,
        "trials": len([r for r in rows if r["status"] == "completed"]),
        "failed_trials": len([r for r in rows if r["status"] == "failed"]),
        "metrics": scores,
        "parity": parity,
        "seconds": round(elapsed, 1),
        "time_budget": budget,
        "stop_reason": tuner_.stop_reason,
        "resumed": resumed,
        "feature_cache": None if cache is None else {"hits": cache.hits, "misses": cache.misses},
    }
    from mmauto import serving

    sp = splits["test"] if "test" in splits.splits and splits["test"].rows else val
    summary["request"] = str(serving.write_request(run_dir, prep, sp.frame, sp.root))
    needs_text_ops = any(e == "keras_hub" and m.inputs[n].modality == "text" for n, e in encoders.items())
    summary["snippets"] = serving.snippets(run_dir, m.name, needs_text_ops, Path(summary["request"]))
    (run_dir / "metrics.json").write_text(json.dumps(scores, indent=2))
    (run_dir / "history.json").write_text(json.dumps({"trial": best.trial_id, "history": history}, indent=2))
    card.write(run_dir, prep, hp.values, encoders, scores, summary)
    from mmauto.report import write_report

    try:
        summary["report"] = str(write_report(run_dir))
    except MmautoError as exc:  # the model is exported; a report problem must not lose it
        summary["report"] = None
        emit("warning", text=f"report not written: {exc}; run `mmauto report {run_dir}` after fixing it")
    emit("done", summary=summary, leaderboard=rows)
    return summary


MEMORY_CACHE_BYTES = 1 << 30
# Kept free for the report after the ablation (its plots took 2-4 s here).
REPORT_SECONDS = 5.0


def _cache_file(run_dir: Path, prep, split) -> Optional[str]:
    """Decoded rows stay in memory up to ~1 GiB; beyond, they go to a file in RUN_DIR, so
    memory does not grow with the data (one file per process: workers share RUN_DIR)."""
    import os

    if split.rows * prep.row_bytes() <= MEMORY_CACHE_BYTES:
        return None
    folder = run_dir / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"decoded-{split.name}-{os.getpid()}")


def _distributed_role(distributed, address, worker_id) -> Optional[str]:
    """chief | worker | None, from the options or keras-tuner's KERASTUNER_* variables."""
    import os

    from mmauto.distributed import set_environment

    if distributed is None:
        if "KERASTUNER_TUNER_ID" not in os.environ:
            return None
        distributed = "chief" if os.environ["KERASTUNER_TUNER_ID"] == "chief" else "worker"
        address = address or f"{os.environ.get('KERASTUNER_ORACLE_IP', '')}:{os.environ.get('KERASTUNER_ORACLE_PORT', '')}"
        worker_id = worker_id or (None if distributed == "chief" else os.environ["KERASTUNER_TUNER_ID"])
    if distributed not in ("chief", "worker"):
        raise MmautoError(f"--distributed: expected chief or worker, got {distributed!r}")
    if not address:
        raise MmautoError("--oracle: the chief's HOST:PORT is needed with --distributed")
    set_environment(distributed, address, worker_id)
    return distributed


def _make_tuner(hm, oracle, data, m, deadline, reserve, trials, cache, emit, run_dir):
    from mmauto import hardware
    from mmauto.search import MmautoTuner

    return MmautoTuner(
        hm, oracle, data, epochs=m.train.epochs, patience=m.train.early_stopping,
        deadline=None if deadline is None else deadline - reserve, reserve=0.0, max_trials=trials, cache=cache,
        on_event=emit, directory=str(run_dir), project_name="search", overwrite=False,
        distribution_strategy=hardware.strategy(),
    )


def _expected_outputs(prep, y):
    import numpy as np

    y = np.asarray(y, dtype="float32")
    kind, state = prep.head.kind, prep.state["target"]
    if kind == "regression":
        return y[:, 0] * state["std"] + state["mean"]
    if kind == "binary":
        return np.stack([1.0 - y[:, 0], y[:, 0]], axis=1)
    return y


def _open(run_dir):
    from mmauto.data.pipeline import Preprocessing
    from mmauto.rundir import load_manifest_of, model_dir

    m = load_manifest_of(Path(run_dir))
    prep = Preprocessing.from_json(m, Path(run_dir) / "preprocessing.json")
    import tensorflow as tf

    if any(s.encoder.type == "keras_hub" or (isinstance(s.encoder.type, list) and "keras_hub" in s.encoder.type) for s in m.inputs.values()):
        import tensorflow_text  # noqa: F401  (keras-hub tokenizers' ops)
    sig = tf.saved_model.load(str(model_dir(run_dir))).signatures["serving_default"]
    return m, prep, sig


def predict(run_dir, data, out=None, key_columns: Optional[list[str]] = None, progress=None):
    """Predictions for a table (any supported format) through the exported SavedModel.

    `out` and `key_columns` are checked before anything is predicted."""
    from mmauto import evaluation

    if out:
        _check_out(Path(out))
    m, prep, sig = _open(run_dir)
    frame, root = evaluation.read_checked(prep, Path(data), with_target=False)
    for col in key_columns or []:
        if col not in frame.columns:
            from mmauto.errors import DataError, did_you_mean

            cols = ", ".join(list(frame.columns)[:20]) + (", ..." if len(frame.columns) > 20 else "")
            raise DataError(f"--key: column '{col}' is not in {data}{did_you_mean(col, frame.columns)} (columns: {cols})")
    outputs = evaluation.predict_frame(sig, prep, frame, root, progress)
    keys = key_columns if key_columns is not None else [c for c in ("id",) if c in frame.columns]
    result = evaluation.prediction_frame(prep, frame, outputs, keys)
    if out:
        from mmauto.data.tables import write_table

        write_table(result, Path(out))
    return result


def _check_out(out: Path) -> None:
    """The predictions file can be written: not a folder, under a folder (or nothing yet)."""
    if out.is_dir():
        raise MmautoError(f"--out: {out} is a folder; give a file path such as {out / 'predictions.csv'} (.csv, .tsv, .parquet, .jsonl)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MmautoError(f"--out: {parent} is a file, so {out} cannot be written under it")
            break


def evaluate(run_dir, data, ablate: bool = False, progress=None) -> dict:
    """Metrics on a labelled table; with `ablate`, the metric with each input (and each pair,
    with three or more inputs) removed, as the SavedModel sees missing inputs."""
    from mmauto import evaluation

    m, prep, sig = _open(run_dir)
    frame, root = evaluation.read_checked(prep, Path(data), with_target=True)
    result = {"data": str(data), "rows": len(frame), "metrics": evaluation.score(prep, frame, evaluation.predict_frame(sig, prep, frame, root, progress))}
    if ablate:
        result["ablation"] = evaluation.ablation(prep, sig, frame, root, result["metrics"], progress)
    return result
