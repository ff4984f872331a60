"""`mmauto fit`, `predict`, `evaluate`, `leaderboard`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mmauto_cli.output import console, print_json


class FitPrinter:
    """Turns fit events into progress lines on stderr (nothing in --json mode)."""

    def __init__(self, enabled: bool, log: Path | None = None):
        self.c = console(stderr=True)
        self.enabled = enabled
        self.log = log
        self.trial_no = 0

    def say(self, text: str):
        if self.enabled:
            self.c.print(text)
        if self.log is not None:
            import re

            with open(self.log, "a") as f:
                f.write(re.sub(r"\[/?[a-z ]+\]", "", text) + "\n")

    def __call__(self, kind, **kw):
        if kind == "start":
            self.log = Path(kw["run_dir"]) / "fit.log"
            b = kw["budget"]
            self.say(f"[bold]mmauto fit[/] {kw['manifest'].name}: up to {kw['max_trials']} trial(s)"
                     + (f", time budget {b:.0f}s" if b else ", no time budget") + (" [yellow](resuming)[/]" if kw["resumed"] else ""))
        elif kind == "data":
            s = kw["summary"]
            self.say("data: " + ", ".join(f"{k} {v['rows']} rows" for k, v in s["splits"].items())
                     + (f"; dropped {s['dropped_rows']} bad row(s)" if s["dropped_rows"] else ""))
        elif kind == "search_start":
            self.trial_no = kw["done"]
            self.say(f"search: objective {kw['objective']}" + (f", {kw['done']} trial(s) already done" if kw["done"] else ""))
        elif kind == "trial_start":
            self.trial_no += 1
            v = kw["hp"].values
            tid = kw["trial"].trial_id
            encs = ", ".join(f"{k.split('/')[0]}={x}" for k, x in v.items() if k.endswith("/encoder"))
            self.say(f"[cyan]trial {tid}[/] ({self.trial_no}) fusion={v.get('fusion')} width={v.get('width')} {encs}")
        elif kind == "epoch":
            logs = kw["logs"]
            shown = " ".join(f"{k}={x:.4f}" for k, x in logs.items() if k in ("loss", "val_loss", "val_accuracy", "val_auc", "val_rmse"))
            self.say(f"  epoch {kw['epoch'] + 1}/{kw['epochs']} {shown}")
        elif kind == "trial_end":
            t = kw["trial"]
            status = str(t.status).lower()
            secs = kw.get("seconds")
            score = f"score={t.score:.4f}" if t.score is not None else ""
            self.say(f"  trial {status} {score}" + (f" in {secs:.1f}s" if secs else "") + (f": {t.message.strip().splitlines()[-1]}" if status == "failed" and t.message else ""))
        elif kind == "export_start":
            self.say(f"export: best trial {kw['trial']}, parity check on validation rows")
        elif kind == "done":
            s = kw["summary"]
            if self.enabled:
                show_leaderboard(kw["leaderboard"], self.c)
            self.say(f"[green]done[/] in {s['seconds']:.0f}s" + (f" of a {s['time_budget']:.0f}s budget" if s["time_budget"] else "")
                     + (f" ({s['stop_reason']})" if s["stop_reason"] else ""))
            run = Path(s["run_dir"])
            self.say(f"model: {run / 'model'}   card: {run / 'mmauto.json'}" + (f"   report: {s['report']}" if s.get("report") else ""))
            self.say(f"metrics: {json.dumps({k: _headline(v) for k, v in s['metrics'].items()})}")
        elif kind == "chief_listening":
            self.say(f"chief: serving the search at {kw['address']}; start workers with --distributed worker --oracle {kw['address']}")
        elif kind == "worker_trial_end":
            self.say(f"chief: a worker finished trial {kw['trial']}")
        elif kind == "worker_done":
            self.say(f"[green]worker done[/]: {kw['summary']['trials']} trial(s); the chief exports the model")
        elif kind == "warning":
            self.say(f"[yellow]warning:[/] {kw['text']}")
        elif kind == "cache":
            self.say(f"caching frozen {kw['encoder']} features of '{kw['input']}' ({kw['split']})")
        elif kind == "ablation":
            self.say(f"ablation: scoring the {kw['split']} split with each input removed")


def _headline(m: dict) -> dict:
    return {k: round(v, 4) for k, v in m.items() if k in ("accuracy", "macro_f1", "roc_auc", "rmse", "mae", "r2") and v is not None}


def show_leaderboard(rows, c):
    from rich.table import Table

    t = Table("#", "trial", "fusion", "depth", "heads", "width", "lr", "batch", "score", "sec", "status", title="leaderboard")
    for r in rows:
        lr = r.get("learning_rate")
        t.add_row(*[str(x) if x is not None else "" for x in (
            r.get("rank"), r["trial"], r["fusion"], r.get("depth"), r.get("heads"), r.get("width"),
            f"{lr:.1e}" if isinstance(lr, float) else lr, r.get("batch_size"),
            f"{r['score']:.4f}" if r["score"] is not None else "", f"{r['seconds']:.0f}" if r.get("seconds") else "", r["status"])])
    c.print(t)
    if rows and rows[0]["encoders"]:
        c.print("best encoders: " + ", ".join(f"{k}={v}" for k, v in rows[0]["encoders"].items()))


def fit(
    manifest: Path = typer.Argument(..., help="The dataset manifest (YAML)."),
    out: Path = typer.Option(..., "--out", help="Run folder (resumed when it exists)."),
    max_trials: Optional[int] = typer.Option(None, "--max-trials", min=1, help="Trials to run (default: search.max_trials)."),
    time_budget: Optional[str] = typer.Option(None, "--time-budget", help="Hard budget for the whole run: 90s, 30m, 2h."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: train.seed)."),
    tuner: Optional[str] = typer.Option(None, "--tuner", help="random | bayesian | hyperband."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Maximum epochs per trial."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh instead of resuming."),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="float16 compute on GPUs."),
    distributed: Optional[str] = typer.Option(None, "--distributed", help="chief | worker: a search spread over processes or machines."),
    oracle: Optional[str] = typer.Option(None, "--oracle", help="The chief's HOST:PORT (with --distributed)."),
    worker_id: Optional[str] = typer.Option(None, "--worker-id", help="A unique name for this worker (default: worker-PID)."),
    worker_timeout: float = typer.Option(600.0, "--worker-timeout", help="Chief: give up on workers silent this many seconds."),
    json_out: bool = typer.Option(False, "--json", help="No progress; print a JSON summary."),
):
    """Search multimodal models and export the best as a raw-input SavedModel."""
    from mmauto import api
    from mmauto.errors import MmautoError

    if time_budget is not None:
        from mmauto.manifest import parse_duration

        try:
            parse_duration(time_budget)
        except ValueError as exc:
            raise MmautoError(f"--time-budget: {exc}") from None
    if tuner is not None and tuner not in ("random", "bayesian", "hyperband"):
        from mmauto.errors import one_of

        raise MmautoError(f"--tuner: {one_of(tuner, ['random', 'bayesian', 'hyperband'], 'tuner')}")
    summary = api.fit(manifest, out, max_trials=max_trials, time_budget=time_budget, seed=seed, overwrite=overwrite,
                      tuner=tuner, epochs=epochs, mixed_precision=mixed_precision, distributed=distributed,
                      oracle_address=oracle, worker_id=worker_id, worker_timeout=worker_timeout, on_event=FitPrinter(not json_out))
    if json_out:
        print_json(summary)


def predict(
    run_dir: Path = typer.Argument(..., help="A run folder written by `mmauto fit`."),
    data: Path = typer.Argument(..., help="A table (.csv, .tsv, .parquet, .jsonl) with the input columns."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="Where to write predictions (format by suffix)."),
    key: Optional[list[str]] = typer.Option(None, "--key", help="Columns to copy into the output (default: id if present, else row)."),
):
    """Predict with the exported SavedModel from raw inputs; empty cells are missing inputs."""
    from rich.progress import Progress

    from mmauto import api

    with Progress(console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("predicting", total=None)
        result = api.predict(run_dir, data, out, key_columns=key, progress=lambda n: bar.advance(task, n))
    console(stderr=True).print(f"wrote {len(result)} predictions to {out}")


def evaluate(
    run_dir: Path = typer.Argument(..., help="A run folder written by `mmauto fit`."),
    data: Path = typer.Argument(..., help="A labelled table."),
    ablate: bool = typer.Option(False, "--ablate", help="Also score with each input (and pair) removed."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Metrics of the exported model on a labelled table."""
    from mmauto import api

    result = api.evaluate(run_dir, data, ablate=ablate)
    if json_out:
        print_json(result)
        return
    from rich.table import Table

    c = console()
    met = result["metrics"]
    t = Table("metric", "value", title=f"{result['rows']} rows of {data}")
    for k, v in met.items():
        if isinstance(v, (int, float)) or v is None:
            t.add_row(k, "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
    c.print(t)
    cm = met.get("confusion_matrix")
    if cm:
        t = Table("true \\ predicted", *cm["labels"], title="confusion matrix")
        for label, row in zip(cm["labels"], cm["matrix"]):
            t.add_row(label, *map(str, row))
        c.print(t)
    if "ablation" in result:
        a = result["ablation"]
        t = Table("removed", a["metric"], "drop", title=f"ablation (all inputs: {a['full']:.4f})")
        for r in a["rows"]:
            t.add_row(" + ".join(r["removed"]), f"{r['score']:.4f}", f"{r['drop']:+.4f}")
        c.print(t)


def leaderboard(
    run_dir: Path = typer.Argument(..., help="A run folder."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """The trials of a run, best first."""
    from mmauto.errors import RunError

    path = Path(run_dir) / "leaderboard.json"
    if not path.exists():
        raise RunError(f"{run_dir}: no leaderboard.json; run `mmauto fit MANIFEST --out {run_dir}` first")
    rows = json.loads(path.read_text())
    if json_out:
        print_json(rows)
    else:
        show_leaderboard(rows, console())


def register(app: typer.Typer) -> None:
    for fn in (fit, predict, evaluate, leaderboard):
        app.command()(fn)
