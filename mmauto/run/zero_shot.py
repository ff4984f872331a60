"""`mmauto fit` of a `task: zero_shot` manifest: nothing is trained. Its stages:

    load -> prepare_tables -> build_classifier -> export -> evaluate -> summarize

`prepare_tables` checks every row of the tables the manifest gives (no split: every table is
only scored), `build_classifier` encodes the class prompts once with the preset's text tower
(mmauto/model/zero_shot.py), `export` writes the raw-input SavedModel with the usual parity
check, `evaluate` scores each table that has labels as a multiclass classifier is scored.
Search, ensemble and calibration do not apply and are skipped with one notice.
"""

from __future__ import annotations

import json

import pandas as pd

from mmauto import events
from mmauto.errors import MmautoError
from mmauto.run.context import Evaluated, Exported, Prepared, Run

SKIPPED = ("zero-shot: nothing is trained; search, ensemble and calibration are skipped "
           "(the classes and prompts come from `zero_shot`, the weights from the preset)")


def fit(run: Run) -> dict:
    run.emit(events.Notice(text=SKIPPED))
    data = prepare_tables(run)
    built = build_classifier(run, data)
    exported = export(run, data, built)
    evaluated = evaluate(run, data, exported)
    return summarize(run, data, built, exported, evaluated)


def prepare_tables(run: Run) -> Prepared:
    """Every table the manifest names, read and checked (`data.on_error` applies); a label
    that is not one of `zero_shot.classes` is a bad row."""
    from mmauto.data.checks import load_zero_shot_tables
    from mmauto.data.pipeline import Preprocessing
    from mmauto.data.summary import summarize as data_summary

    m = run.manifest
    checked = load_zero_shot_tables(m)
    run.emit(events.DataChecked(summary=data_summary(checked)))
    prep = Preprocessing.fit(m, checked)
    prep.to_json(run.run_dir / "preprocessing.json")
    return Prepared(checked, prep, {})


def build_classifier(run: Run, data: Prepared):
    from mmauto.model.zero_shot import build_zero_shot

    return build_zero_shot(data.prep)


def _first_split(data: Prepared):
    return next(iter(data.splits.splits.values()))


def export(run: Run, data: Prepared, built) -> Exported:
    from mmauto.export.saved_model import PARITY_ROWS, export_saved_model

    run.emit(events.ExportStart(trial="zero-shot", members=None))
    prep, sp = data.prep, _first_split(data)
    rows = sp.frame.iloc[:PARITY_ROWS]
    name = next(iter(run.manifest.inputs))
    encoders = {name: []}  # no preprocessing outside the model: a text's tokenizer is in it
    decoded = prep.decoded_dataset(rows, sp.root, with_targets=False)
    batches = prep.batches(decoded, PARITY_ROWS, encoders, built.input_keys)
    expected = prep.head.expected(built.model.predict(batches, verbose=0))
    path = run.run_dir / "model"
    parity, loaded = export_saved_model(built.model, prep, encoders, built.input_keys, path, prep.serving_values(rows, sp.root),
                                        expected, embedder=built.embedder)
    return Exported(path, loaded.signatures["serving_default"], parity)


def evaluate(run: Run, data: Prepared, exported: Exported) -> Evaluated:
    """Each labelled table scored through the SavedModel (metrics.json, eval_predictions.csv)."""
    from mmauto.evaluation import predict as evaluation
    from mmauto.run.evaluate import addressed

    if not run.manifest.targets:
        run.emit(events.Notice(text="zero-shot: no `target` column named, so nothing is scored; "
                                    "`mmauto evaluate` needs a manifest with one"))
        return Evaluated({})
    prep, scores, frames = data.prep, {}, []
    for name, sp in data.splits.splits.items():
        outputs = evaluation.predict_frame(exported.signature, prep, sp.frame, sp.root, numbers=sp.row_numbers())
        scores[name] = evaluation.score(prep, sp.frame, outputs)
        frames.append(addressed(run, name, sp, prep.head.columns(outputs)))
    pd.concat(frames).to_csv(run.run_dir / "eval_predictions.csv", index=False)
    (run.run_dir / "metrics.json").write_text(json.dumps(scores, indent=2))
    return Evaluated(scores)


def summarize(run: Run, data: Prepared, built, exported: Exported, evaluated: Evaluated) -> dict:
    from mmauto.export import card, serving
    from mmauto.report.html import write_report

    m = run.manifest
    name = next(iter(m.inputs))
    summary = {
        "run_dir": str(run.run_dir),
        "task": "zero_shot",
        "zero_shot": built.info,
        "objective": None, "best_trial": None, "best_score": None, "fusion": None,
        "encoders": {name: "keras_hub"},
        "trials": 0, "failed_trials": 0,
        "metrics": evaluated.scores,
        "parity": exported.parity,
        "seconds": round(run.elapsed(), 1),
        "time_budget": run.budget,
        "stop_reason": "zero-shot: no search",
        "resumed": False,
        "feature_cache": None, "ensemble": None, "calibration": None,
    }
    sp = _first_split(data)
    summary["request"] = str(serving.write_request(run.run_dir, data.prep, sp.frame, sp.root))
    text_ops = card.needs_tensorflow_text(m, summary["encoders"])  # a text input's tokenizer is in the graph
    summary["snippets"] = serving.snippets(run.run_dir, m.name, text_ops, run.run_dir / "request.json")
    written = card.write(run.run_dir, data.prep, {}, summary["encoders"], evaluated.scores, summary)
    written["zero_shot"] = built.info
    (run.run_dir / "mmauto.json").write_text(json.dumps(written, indent=2, default=str))
    try:
        summary["report"] = str(write_report(run.run_dir))
    except MmautoError as exc:
        summary["report"] = None
        run.emit(events.Notice(text=f"report not written: {exc}; run `mmauto report {run.run_dir}` after fixing it"))
    run.emit(events.Done(summary=summary, leaderboard=[]))
    return summary
