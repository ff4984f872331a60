"""`mmauto fit`, `predict`, `embed`, `evaluate`, `search`, `leaderboard`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import typer

from mmauto.config.choices import Tuner
from mmauto.events import Printer
from mmauto_cli.output import console, print_json


class FitPrinter(Printer):
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
        self.seen: set[str] = set()  # trial ids started in this run: a retried trial counts once
        self.max_trials = None
        self.budget = None
        self.bar = None  # rich Progress while the fit runs (terminals only)
        self.tasks: dict[str, int] = {}
        self.running: str | None = None  # the trial in progress, for the interrupt's message
        self.phase = "starting"  # what the fit does outside trials, in the same words as the bars

    def say(self, text: str, show: bool = True):
        if self.enabled and show:
            self.c.print(text)  # on a terminal rich prints it above the live bars
        if self.log is not None:
            from rich.text import Text

            with open(self.log, "a") as f:  # the log keeps the words, not rich's markup
                f.write(Text.from_markup(text).plain + "\n")

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

    @contextlib.contextmanager
    def interruptible(self):
        """Ctrl-C inside becomes the `Interrupted` error (typer would exit 130 without a word)."""
        try:
            yield
        except KeyboardInterrupt:
            self.close()
            raise self.interrupted() from None

    def interrupted(self):
        """Ctrl-C: where the fit stopped, as one line (also appended to fit.log); the error to raise."""
        from mmauto.errors import Interrupted

        where = f"during trial {self.running}" if self.running is not None else f"while {self.phase}"
        text = f"interrupted {where}; rerun the same command to resume"
        self.say(text, show=False)  # the CLI prints the error's line on stderr
        return Interrupted(text)

    # === Events (mmauto.events), one method per kind ===

    def on_start(self, e):
        self.log = Path(e.run_dir) / "fit.log"
        self.max_trials, self.budget = e.max_trials, e.budget
        if getattr(e.manifest, "task", None) == "zero_shot":
            self.say(f"[bold]mmauto fit[/] {e.manifest.name}: zero-shot classification into {len(e.manifest.zero_shot.classes)} classes, nothing to train")
            self.phase = "reading and checking data"
            self._task("phase", self.phase)
            return
        self.say(f"[bold]mmauto fit[/] {e.manifest.name}: up to {e.max_trials} trial(s)"
                 + (f", time budget {e.budget:.0f}s" if e.budget else ", no time budget") + (" [yellow](resuming)[/]" if e.resumed else ""))
        self.phase = "reading and checking data"
        self._task("phase", self.phase)

    def on_data(self, e):
        s = e.summary
        self.say("data: " + ", ".join(f"{k} {v['rows']} rows" for k, v in s["splits"].items())
                 + (f"; dropped {dropped_line(s)}" if s["dropped_rows"] else ""))
        self.phase = "fitting preprocessing"
        self._task("phase", self.phase)

    def on_search_start(self, e):
        self.trial_no = e.done
        self._drop("phase")
        self._task("search", "search" + (f" (budget {self.budget:.0f}s)" if self.budget else ""), total=self.max_trials, completed=e.done)
        self.say(f"search: objective {e.objective}" + (f", {e.done} trial(s) already done" if e.done else ""))
        self.phase = "searching"

    def on_trial_start(self, e):
        v = e.hp.values
        tid = e.trial.trial_id
        if tid not in self.seen:
            self.seen.add(tid)
            self.trial_no += 1
        self.running = tid
        encs = ", ".join(f"{k.split('/')[0]}={x}" for k, x in v.items() if k.endswith("/encoder"))
        annealed = f", annealed over {e.epochs - v.get('tuner/initial_epoch', 0)} epochs" if e.annealed else ""
        self.say(f"[cyan]trial {tid}[/] ({self.trial_no}) fusion={v.get('fusion')} width={v.get('width')} {encs}{annealed}")
        self._task("trial", f"trial {tid}: epochs", total=e.epochs, completed=v.get("tuner/initial_epoch", 0))

    def on_epoch(self, e):
        shown = " ".join(f"{k}={x:.4f}" for k, x in e.logs.items() if k in ("loss", "val_loss", "val_accuracy", "val_auc", "val_rmse", "val_recall_at_1"))
        self._task("trial", f"trial {e.trial.trial_id}: {shown}", total=e.epochs, completed=e.epoch + 1)
        # On a terminal the bar shows the epoch; the log keeps every one.
        self.say(f"  epoch {e.epoch + 1}/{e.epochs} {shown}", show=not self.live)

    def on_trial_end(self, e):
        t = e.trial
        status = str(t.status).lower()
        score = f"score={t.score:.4f}" if t.score is not None else ""
        self.running = None
        self.phase = f"searching, after trial {t.trial_id}"
        self._drop("trial")
        if "search" in self.tasks and status != "invalid":  # invalid: keras-tuner runs it again
            self.bar.advance(self.tasks["search"])
        self.say(f"  trial {status} {score}" + (f" in {e.seconds:.1f}s" if e.seconds else "") + (f" ({e.note})" if e.note else "")
                 + (f": {t.message.strip().splitlines()[-1]}" if status == "failed" and t.message else ""))

    def on_ensemble(self, e):
        picks = ", ".join(f"{m} x{w:.2f}" for m, w in zip(e.members, e.weights))
        self.say(f"ensemble: trials {picks}; validation {e.metric} {e.validation:.4f} (best single trial {e.best_single:.4f})")

    def on_calibration(self, e):
        f = e.fitted
        parts = []
        c = f.get("calibration")
        if c and c.get("method"):
            parts.append(f"{_scaling(c)}, validation ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}")
        if f.get("threshold") is not None:
            parts.append(f"threshold {f['threshold']:.3g}" + (f" (chosen for {f['threshold_chosen_for']})" if f.get("threshold_chosen_for") else " (pinned)"))
        if f.get("thresholds"):
            parts.append("thresholds " + ", ".join(f"{k} {v:.3g}" for k, v in f["thresholds"].items()))
        if f.get("interval"):
            i = f["interval"]
            parts.append(f"{i['coverage']:.0%} interval +-{i['half_width']:.4g}")
        elif "why" in f:
            parts.append(f["why"])
        if parts:
            self.say("calibration: " + "; ".join(parts))

    def on_export_start(self, e):
        self._drop("search", "trial")
        zero_shot = e.trial == "zero-shot"
        what = (f"the ensemble of trials {', '.join(e.members)}" if e.members else
                "the zero-shot classifier" if zero_shot else f"best trial {e.trial}")
        self.phase = f"exporting {what}"
        self._task("phase", self.phase)
        self.say(f"export: {what}, parity check on " + ("table rows" if zero_shot else "validation rows"))

    def on_done(self, e):
        self.close()
        s = e.summary
        if self.enabled and e.leaderboard:  # a zero-shot fit has no trials
            show_leaderboard(e.leaderboard, self.c)
        self.say(f"[green]done[/] in {s['seconds']:.0f}s" + (f" of a {s['time_budget']:.0f}s budget" if s["time_budget"] else "")
                 + (f" ({s['stop_reason']})" if s["stop_reason"] else ""))
        run = Path(s["run_dir"])
        self.say(f"model: {run / 'model'}   card: {run / 'mmauto.json'}" + (f"   report: {s['report']}" if s.get("report") else ""))
        self.say(f"metrics: {json.dumps({k: _headline(v) for k, v in s['metrics'].items()})}")
        targets = next((v["targets"] for v in s["metrics"].values() if v.get("targets")), {})
        for col in list(targets)[1:]:  # the first is the primary target: the line above
            self.say(f"metrics of {col}: {json.dumps({k: _headline(v['targets'][col]) for k, v in s['metrics'].items() if v.get('targets')})}")

    def on_chief_listening(self, e):
        self.say(f"chief: serving the search at {e.address}; start workers with --distributed worker --oracle {e.address}")

    def on_worker_trial_end(self, e):
        if "search" in self.tasks:
            self.bar.advance(self.tasks["search"])
        self.say(f"chief: a worker finished trial {e.trial}")

    def on_worker_done(self, e):
        self.say(f"[green]worker done[/]: {e.summary['trials']} trial(s); the chief exports the model")

    def on_warning(self, e):
        self.say(f"[yellow]warning:[/] {e.text}")

    def on_info(self, e):
        self.say(e.text)

    def on_cache(self, e):
        self.say(f"caching frozen {e.encoder} features of '{e.input}' ({e.split})")

    def on_ablation(self, e):
        self.phase = f"scoring the {e.split} split with each input removed"
        self._task("phase", f"ablation on the {e.split} split")
        self.say(f"ablation: scoring the {e.split} split with each input removed")


def _headline(m: dict) -> dict:
    return {k: round(v, 4) for k, v in m.items() if k in ("accuracy", "macro_f1", "roc_auc", "rmse", "mae", "r2", "recall_at_1", "recall_at_10", "mean_rank") and v is not None}


def show_leaderboard(rows, c):
    from rich.table import Table

    from mmauto.search.leaderboard import DISPLAY_HEADERS, display_rows

    t = Table(*DISPLAY_HEADERS, title="leaderboard")
    for cells in display_rows(rows):
        t.add_row(*("" if c is None else str(c) for c in cells))
    c.print(t)


def fit(
    manifest: Path = typer.Argument(..., help="The dataset manifest (YAML)."),
    out: Path = typer.Option(..., "--out", help="Run folder (resumed when it exists)."),
    max_trials: Optional[int] = typer.Option(None, "--max-trials", min=1, help="Trials to run (default: search.max_trials)."),
    time_budget: Optional[str] = typer.Option(None, "--time-budget", help="Hard budget for the whole run: 90s, 30m, 2h."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: train.seed)."),
    tuner: Optional[Tuner] = typer.Option(None, "--tuner", help="The search strategy (default: search.tuner)."),
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
        from mmauto.config.manifest import parse_duration

        try:
            parse_duration(time_budget)
        except ValueError as exc:
            raise MmautoError(f"--time-budget: {exc}") from None
    with FitPrinter(not json_out) as printer, printer.interruptible():
        summary = api.fit(manifest, out, max_trials=max_trials, time_budget=time_budget, seed=seed, overwrite=overwrite,
                          tuner=None if tuner is None else tuner.value, epochs=epochs, mixed_precision=mixed_precision,
                          distributed=distributed, oracle_address=oracle, worker_id=worker_id, worker_timeout=worker_timeout,
                          on_event=printer)
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
    explain: bool = typer.Option(False, "--explain", help="Add contribution_<input>: how much each input moves the answer."),
):
    """Predict with the exported SavedModel from raw inputs; empty cells are missing inputs."""
    from rich.progress import Progress

    from mmauto import api

    with Progress(console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("predicting", total=None)
        result = api.predict(run_dir, data, out, key_columns=key, progress=lambda n: bar.advance(task, n), explain=explain)
    console(stderr=True).print(f"wrote {len(result)} predictions to {out}")


def embed(
    run_dir: Path = typer.Argument(..., help="A run folder written by `mmauto fit`."),
    data: Path = typer.Argument(..., help="A table (.csv, .tsv, .parquet, .jsonl) with the input columns."),
    out: Path = typer.Option(Path("embeddings.parquet"), "--out", help="Where to write the embeddings (.parquet)."),
    key: Optional[list[str]] = typer.Option(None, "--key", help="Columns to copy into the output (default: id if present, else row)."),
):
    """Embeddings from the exported SavedModel: per row, one unit vector per input and the fused one."""
    from rich.progress import Progress

    from mmauto import api

    with Progress(console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("embedding", total=None)
        result = api.embed(run_dir, data, out, key_columns=key, progress=lambda n: bar.advance(task, n))
    console(stderr=True).print(f"wrote {len(result)} rows of embeddings to {out}")


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
    if result.get("ablation", {}).get("skipped"):
        c.print(f"ablation skipped: {result['ablation']['skipped']}")
    elif "ablation" in result:
        a = result["ablation"]
        t = Table("removed", a["metric"], "drop", title=f"ablation (all inputs: {a['full']:.4f})")
        for r in a["rows"]:
            t.add_row(" + ".join(r["removed"]), f"{r['score']:.4f}", f"{r['drop']:+.4f}")
        c.print(t)


def search(
    run_dir: Path = typer.Argument(..., help="A run folder of a `task: retrieval` model."),
    query: Path = typer.Option(..., "--query", help="A table of query rows (the columns of one input)."),
    candidates: Path = typer.Option(..., "--candidates", help="A table of candidate rows (the columns of another input)."),
    top_k: int = typer.Option(10, "--top-k", min=1, help="Candidates kept per query."),
    out: Path = typer.Option(Path("ranked.csv"), "--out", help="Where to write the ranking (format by suffix)."),
    query_input: Optional[str] = typer.Option(None, "--query-input", help="The query's input (default: the one whose columns the table holds)."),
    candidate_input: Optional[str] = typer.Option(None, "--candidate-input", help="The candidates' input (default: likewise, another one)."),
):
    """Rank candidates for each query by cosine similarity of the retrieval model's embeddings (exact, in memory)."""
    from mmauto import api

    result = api.search(run_dir, query, candidates, top_k, out, query_input, candidate_input)
    qi, ci = result.attrs.get("inputs", ("?", "?"))
    rows = int(result["query_row"].max()) if len(result) else 0
    console(stderr=True).print(f"wrote the top {top_k} '{ci}' candidates of {rows} '{qi}' queries to {out}")


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
    for fn in (fit, predict, embed, evaluate, search, leaderboard):
        app.command()(fn)


def _scaling(c: dict) -> str:
    """The scaling stage `calibrate` served (the card's `calibration`), in a few words."""
    if not c["applied"]:
        return f"{c['method']} scaling not kept ({c.get('not_kept')})"
    return _scaling_values(c) + (f", shrunk to {c['shrinkage']:.2f} of its fit" if c.get("shrinkage") is not None else "")


def _scaling_values(c: dict) -> str:
    if c["method"] == "temperature":
        return f"temperature {c['temperature']:.3g}"
    if c["method"] == "beta":
        return "beta calibration (a, b, c = " + ", ".join(f"{v:.3g}" for v in c["beta"]) + ")"
    if c["method"] == "matrix":
        return f"matrix scaling ({len(c['bias'])} x {len(c['bias'])} and a bias)"
    return "vector scaling" if len(c["scale"]) > 1 else f"Platt scaling (scale {c['scale'][0]:.3g}, bias {c['bias'][0]:.3g})"
