"""`mmauto fit`, `predict`, `evaluate`, `leaderboard`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mmauto_cli.output import console, print_json


class FitPrinter:
    """Turns fit events into progress on stderr (nothing in --json mode) and lines in RUN_DIR/fit.log.

    On a terminal, live bars show the phase (data, preprocessing, export), the search (trials
    done, time used of the budget) and the running trial's epochs with its latest metrics; trial
    results, warnings and the summary print above them. Elsewhere (a pipe, a CI log) every event,
    each epoch included, is one line.
    """

    def __init__(self, enabled: bool, log: Path | None = None, out=None):
        self.c = out or console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.c.is_terminal
        self.log = log
        self.trial_no = 0
        self.max_trials = None
        self.budget = None
        self.bar = None  # rich Progress while the fit runs (terminals only)
        self.tasks: dict[str, int] = {}

    def say(self, text: str, show: bool = True):
        if self.enabled and show:
            self.c.print(text)  # on a terminal rich prints it above the live bars
        if self.log is not None:
            import re

            with open(self.log, "a") as f:
                f.write(re.sub(r"\[/?[a-z ]+\]", "", text) + "\n")

    # === Live bars (terminals only) ===

    def _task(self, name: str, description: str, total=None, completed=0):
        """Show (or update) the bar `name`."""
        if not self.live:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.c, transient=True)
            self.bar.start()
        if name in self.tasks:
            self.bar.update(self.tasks[name], description=description, total=total, completed=completed)
        else:
            self.tasks[name] = self.bar.add_task(description, total=total, completed=completed)

    def _drop(self, *names: str):
        for name in names:
            if self.bar is not None and name in self.tasks:
                self.bar.remove_task(self.tasks.pop(name))

    def close(self):
        """Stop the live bars (also when the fit fails, so the terminal is left clean)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.tasks = None, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __call__(self, kind, **kw):
        if kind == "start":
            self.log = Path(kw["run_dir"]) / "fit.log"
            b = kw["budget"]
            self.max_trials, self.budget = kw["max_trials"], b
            self.say(f"[bold]mmauto fit[/] {kw['manifest'].name}: up to {kw['max_trials']} trial(s)"
                     + (f", time budget {b:.0f}s" if b else ", no time budget") + (" [yellow](resuming)[/]" if kw["resumed"] else ""))
            self._task("phase", "reading and checking data")
        elif kind == "data":
            s = kw["summary"]
            self.say("data: " + ", ".join(f"{k} {v['rows']} rows" for k, v in s["splits"].items())
                     + (f"; dropped {dropped_line(s)}" if s["dropped_rows"] else ""))
            self._task("phase", "fitting preprocessing")
        elif kind == "search_start":
            self.trial_no = kw["done"]
            self._drop("phase")
            self._task("search", "search" + (f" (budget {self.budget:.0f}s)" if self.budget else ""), total=self.max_trials, completed=kw["done"])
            self.say(f"search: objective {kw['objective']}" + (f", {kw['done']} trial(s) already done" if kw["done"] else ""))
        elif kind == "trial_start":
            self.trial_no += 1
            v = kw["hp"].values
            tid = kw["trial"].trial_id
            encs = ", ".join(f"{k.split('/')[0]}={x}" for k, x in v.items() if k.endswith("/encoder"))
            self.say(f"[cyan]trial {tid}[/] ({self.trial_no}) fusion={v.get('fusion')} width={v.get('width')} {encs}")
            self._task("trial", f"trial {tid}: epochs", total=kw.get("epochs"), completed=v.get("tuner/initial_epoch", 0))
        elif kind == "epoch":
            logs = kw["logs"]
            shown = " ".join(f"{k}={x:.4f}" for k, x in logs.items() if k in ("loss", "val_loss", "val_accuracy", "val_auc", "val_rmse"))
            self._task("trial", f"trial {kw['trial'].trial_id}: {shown}", total=kw["epochs"], completed=kw["epoch"] + 1)
            # On a terminal the bar shows the epoch; the log keeps every one.
            self.say(f"  epoch {kw['epoch'] + 1}/{kw['epochs']} {shown}", show=not self.live)
        elif kind == "trial_end":
            t = kw["trial"]
            status = str(t.status).lower()
            secs = kw.get("seconds")
            score = f"score={t.score:.4f}" if t.score is not None else ""
            self._drop("trial")
            if "search" in self.tasks:
                self.bar.advance(self.tasks["search"])
            self.say(f"  trial {status} {score}" + (f" in {secs:.1f}s" if secs else "") + (f": {t.message.strip().splitlines()[-1]}" if status == "failed" and t.message else ""))
        elif kind == "export_start":
            self._drop("search", "trial")
            self._task("phase", f"exporting trial {kw['trial']}")
            self.say(f"export: best trial {kw['trial']}, parity check on validation rows")
        elif kind == "done":
            self.close()
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
            if "search" in self.tasks:
                self.bar.advance(self.tasks["search"])
            self.say(f"chief: a worker finished trial {kw['trial']}")
        elif kind == "worker_done":
            self.say(f"[green]worker done[/]: {kw['summary']['trials']} trial(s); the chief exports the model")
        elif kind == "warning":
            self.say(f"[yellow]warning:[/] {kw['text']}")
        elif kind == "cache":
            self.say(f"caching frozen {kw['encoder']} features of '{kw['input']}' ({kw['split']})")
        elif kind == "ablation":
            self._task("phase", f"ablation on the {kw['split']} split")
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
    with FitPrinter(not json_out) as printer:
        summary = api.fit(manifest, out, max_trials=max_trials, time_budget=time_budget, seed=seed, overwrite=overwrite,
                          tuner=tuner, epochs=epochs, mixed_precision=mixed_precision, distributed=distributed,
                          oracle_address=oracle, worker_id=worker_id, worker_timeout=worker_timeout, on_event=printer)
    if json_out:
        print_json(summary)


def dropped_line(summary: dict) -> str:
    """"3 bad row(s) (missing media file: 2, corrupt audio: 1)" from a data summary."""
    reasons = ", ".join(f"{k}: {v}" for k, v in summary.get("dropped_by_reason", {}).items())
    return f"{summary['dropped_rows']} bad row(s)" + (f" ({reasons})" if reasons else "")


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
