"""Stage `evaluate`: the exported model scored on validation and test (RUN_DIR/metrics.json,
eval_predictions.csv) and the modality ablation when the budget allows it (ablation.json)."""

from __future__ import annotations

import json
import time

import pandas as pd

from mmauto import events
from mmauto.run.context import Evaluated, Exported, Prepared, Run

# Kept free for the report after the ablation (its plots took 2-4 s here).
REPORT_SECONDS = 5.0


def evaluate(run: Run, data: Prepared, exported: Exported) -> Evaluated:
    from mmauto.evaluation import predict as evaluation

    prep, splits = data.prep, data.splits
    scores, frames, row_seconds = {}, [], []
    for name in ("validation", "test"):
        if name in splits.splits and splits[name].rows:
            sp = splits[name]
            t0 = time.time()
            outputs = evaluation.predict_frame(exported.signature, prep, sp.frame, sp.root, numbers=sp.row_numbers())
            row_seconds.append((time.time() - t0) / sp.rows)
            scores[name] = evaluation.score(prep, sp.frame, outputs)
            frames.append(addressed(run, name, sp, prep.head.columns(outputs)))
    pd.concat(frames).to_csv(run.run_dir / "eval_predictions.csv", index=False)
    (run.run_dir / "metrics.json").write_text(json.dumps(scores, indent=2))
    ablation = None
    if run.manifest.retrieval:
        # Removing an input leaves one side of every pair empty: nothing to rank.
        ablation = {"skipped": "skipped: a retrieval model matches its inputs to each other, and removing one leaves nothing to rank"}
        (run.run_dir / "ablation.json").write_text(json.dumps(ablation, indent=2))
    elif len(run.manifest.inputs) > 1:
        ablation = _ablation(run, data, exported, scores, max(row_seconds))
        (run.run_dir / "ablation.json").write_text(json.dumps(ablation, indent=2))
    return Evaluated(scores, ablation)


def addressed(run: Run, name: str, sp, columns: dict) -> pd.DataFrame:
    """A split's predictions, each row addressable: the split, the table it came from, its
    1-based row there (as error messages number rows) and its `id` when the table has one."""
    table = run.manifest.table_path(name) or run.manifest.table_path("train")
    frame = pd.DataFrame({"split": name, "table": str(table), "row": sp.row_numbers()})
    if "id" in sp.frame.columns:
        frame["id"] = sp.frame["id"].values
    for col, values in columns.items():
        frame[col] = values
    if run.manifest.target is None:  # retrieval: the rows are the pairs, there is no target
        return frame
    frame = frame.assign(target=sp.frame[run.manifest.target.column].values)
    served = run.manifest.served_targets
    for t in served[1:] if len(served) > 1 else []:  # the primary's true values are `target`
        frame[f"{t.name}_target"] = sp.frame[t.column].values
    return frame


def _ablation(run: Run, data: Prepared, exported: Exported, scores: dict, row_seconds: float) -> dict:
    """The main metric with each input (and pair) removed; skipped rather than break the time
    budget, as estimated from the evaluation passes just made."""
    from mmauto.evaluation import predict as evaluation

    prep, last = data.prep, data.last_split()
    sp = data.splits[last]
    passes = evaluation.ablation_passes(prep)
    cost = passes * sp.rows * row_seconds
    if run.deadline is not None and time.time() + cost + REPORT_SECONDS > run.deadline:
        why = (f"skipped to keep the time budget (about {cost:.0f}s for {passes} passes "
               f"over {sp.rows} {last} rows); run `mmauto evaluate {run.run_dir} <table> --ablate`")
        run.emit(events.Notice(text=f"modality ablation {why}"))
        return {"split": last, "skipped": why}
    run.emit(events.AblationStart(split=last))
    return {"split": last, **evaluation.ablation(prep, exported.signature, sp.frame, sp.root, scores[last])}
