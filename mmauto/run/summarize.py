"""Stage `summarize`: the run's summary, the model card, serving examples, the best trial's
curves and the HTML report. A report problem never loses the exported model."""

from __future__ import annotations

import json
from pathlib import Path

from mmauto import events
from mmauto.errors import MmautoError
from mmauto.run.context import Evaluated, Exported, Prepared, Run, Searched, Selected


def summarize(run: Run, data: Prepared, searched: Searched, selected: Selected, exported: Exported, evaluated: Evaluated) -> dict:
    from mmauto.export import card, serving
    from mmauto.report.html import write_report

    m, rows = run.manifest, searched.leaderboard
    summary = {
        "run_dir": str(run.run_dir),
        "objective": searched.objective,
        "best_trial": selected.trial_id,
        "best_score": selected.score,
        "fusion": selected.hp.values.get("fusion"),
        "encoders": selected.encoders,
        "trials": len([r for r in rows if r["status"] == "completed"]),
        "failed_trials": len([r for r in rows if r["status"] == "failed"]),
        "metrics": evaluated.scores,
        "parity": exported.parity,
        "seconds": round(run.elapsed(), 1),
        "time_budget": run.budget,
        "stop_reason": searched.tuner.stop_reason,
        "resumed": run.resumed,
        "feature_cache": None if searched.cache is None else {"hits": searched.cache.hits, "misses": searched.cache.misses},
        "ensemble": selected.ensemble,
        "calibration": selected.calibration,
        "stages": run.stage_seconds,  # seconds per stage so far (summarize itself is the rest)
    }
    if selected.ensemble:
        rows = _with_ensemble_row(rows, selected, evaluated, searched.objective)
        from mmauto.search.leaderboard import write_leaderboard

        write_leaderboard(rows, run.run_dir)
    sp = data.splits[data.last_split()]
    summary["request"] = str(serving.write_request(run.run_dir, data.prep, sp.frame, sp.root))
    needs_text_ops = card.needs_tensorflow_text(m, selected.encoders)
    summary["snippets"] = serving.snippets(run.run_dir, m.name, needs_text_ops, Path(summary["request"]))
    # Curves exist for trials run by this process; a best trial from an earlier, resumed run has
    # none here (its curves stay in search/logs for TensorBoard) and the report says so.
    history = searched.tuner.histories.get(selected.trial_id, {})
    (run.run_dir / "history.json").write_text(json.dumps({"trial": selected.trial_id, "history": history}, indent=2))
    card.write(run.run_dir, data.prep, selected.hp.values, selected.encoders, evaluated.scores, summary)
    try:
        summary["report"] = str(write_report(run.run_dir))
    except MmautoError as exc:  # the model is exported; a report problem must not lose it
        summary["report"] = None
        run.emit(events.Notice(text=f"report not written: {exc}; run `mmauto report {run.run_dir}` after fixing it"))
    run.emit(events.Done(summary=summary, leaderboard=rows))
    return summary


def worker_summary(run: Run, searched: Searched) -> dict:
    """A distributed worker's result: it trains trials and exports nothing."""
    summary = {"role": "worker", "run_dir": str(run.run_dir), "trials": len(searched.tuner.seconds), "seconds": round(run.elapsed(), 1)}
    run.emit(events.WorkerDone(summary=summary))
    return summary


def _with_ensemble_row(rows: list, selected: Selected, evaluated: Evaluated, objective: str) -> list:
    """The leaderboard with the exported ensemble on top, scored on validation like the trials
    (its objective from the SavedModel's validation metrics)."""
    base = objective[4:] if objective.startswith("val_") else objective
    val = evaluated.scores.get("validation", {})
    score = val.get({"auc": "roc_auc", "loss": "log_loss"}.get(base, base))
    e = selected.ensemble
    row = {"rank": None, "trial": "ensemble", "status": "completed", "score": score, "objective": objective, "seconds": None,
           "fusion": None, "depth": None, "heads": None, "width": None, "learning_rate": None, "batch_size": None, "augment": None, "replica_of": None,
           "encoders": {}, "hyperparameters": {}, "members": e["members"], "weights": e["weights"],
           "message": "members " + ", ".join(_member(e, m, w) for m, w in zip(e["members"], e["weights"]))}
    return [row, *rows]


def _member(ensemble: dict, member: str, weight: float) -> str:
    """A member, its weight and the temperatures its probabilities were rescaled by before the average."""
    temperatures = [b["temperature"] for b in (ensemble.get("member_scaling") or {}).get(member, [])]
    return f"{member} x{weight:.2f}" + (f" (T {', '.join(f'{t:.2f}' for t in temperatures)})" if temperatures else "")
