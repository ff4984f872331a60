"""`mmauto validate` and `mmauto demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from mmauto_cli.output import console, print_json


def validate(
    manifest: Path = typer.Argument(..., help="The dataset manifest (YAML)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Check a manifest and its data without training."""
    from mmauto.config.manifest import read_yaml
    from mmauto_cli.output import import_tensorflow_quietly

    path = manifest.resolve()
    read_yaml(path, str(path))  # a missing or malformed file is reported before TensorFlow loads
    import_tensorflow_quietly()
    from mmauto import api

    summary = api.validate(manifest)
    if json_out:
        print_json({"ok": True, **summary})
        return
    from rich.table import Table

    c = console()
    splits = summary["splits"]
    c.print(f"[bold]{summary['name']}[/]: {summary['task']}" + (f" of '{summary['target']}'" if summary["target"] else "") + (f", {len(summary['classes'])} classes ({', '.join(summary['classes'][:10])}{', ...' if len(summary['classes']) > 10 else ''})" if summary["classes"] else ""))
    for i, (col, t) in enumerate((summary.get("targets") or {}).items()):
        kind = "auxiliary " if t["auxiliary"] else ""
        classes = f", {len(t['classes'])} classes" if t["classes"] else ""
        empty = ", ".join(f"{k} {n}" for k, n in t["missing"].items() if n)
        masked = f" (empty rows, loss masked: {empty})" if empty else ""
        if i:
            c.print(f"  and {kind}{t['task']} of '{col}'{classes}{masked}")
        elif masked:
            c.print(f"  '{col}'{masked}")
    table = Table("input", "modality", "column(s)", *[f"{k} rows (missing)" for k in splits])
    for inp in summary["inputs"]:
        table.add_row(inp["name"], inp["modality"], ", ".join(inp["columns"]),
                      *[f"{splits[k]['rows']} ({inp['missing'][k]})" for k in splits])
    c.print(table)
    for p in summary["dropped"]:
        c.print(f"[yellow]dropped[/] {p['count']} row(s) of {p['file']}: {p['reason']} (rows {', '.join(map(str, p['rows']))})")
    if summary["dropped"]:
        from mmauto_cli.model_cmds import dropped_line

        c.print(f"[yellow]dropped[/] {dropped_line(summary)} in all")
    c.print("[green]ok[/]: the manifest and its data are valid")


def demo(
    out: Path = typer.Option(Path("mmauto-demo"), "--out", help="Folder to write the demo data set into."),
    rows: int = typer.Option(400, "--rows", help="Number of rows."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    missing: float = typer.Option(0.0, "--missing", help="Fraction of rows with one input left empty."),
    redundant: bool = typer.Option(False, "--redundant", help="Every input alone tells the label (robustness demo)."),
    modalities: str = typer.Option("image,text,audio,tabular", "--modalities",
                                   help="Comma-separated modalities, or 'all' for every registered one."),
    data_only: bool = typer.Option(False, "--data-only", help="Only write the data and manifest; do not fit."),
    time_budget: str = typer.Option("4m", "--time-budget", help="Budget of the demo fit."),
):
    """Write a small offline demo data set (images, text, audio, table), fit it, show how to serve it."""
    from mmauto import api

    path = api.demo(out, rows=rows, seed=seed, missing=missing, redundant=redundant, modalities=modalities)
    c = console()
    c.print(f"wrote {rows} rows and {path}")
    if data_only:
        c.print(f"next: mmauto validate {path}   then   mmauto fit {path} --out {out / 'run'}")
        return
    from mmauto_cli.model_cmds import FitPrinter
    from mmauto_cli.output import import_tensorflow_quietly

    import_tensorflow_quietly()
    with FitPrinter(True) as printer, printer.interruptible():
        summary = api.fit(path, out / "run", time_budget=time_budget, on_event=printer)
    s = summary["snippets"]
    c.print("\n[bold]serve it[/] (TF Serving, REST):")
    c.print(f"  {s['serve']}\n  {s['rest']}")
    c.print(f"  (the request body, with b64 image and WAV bytes: {summary['request']})")
    c.print("[bold]or in Python[/] (only tensorflow needed):")
    for line in s["python"].splitlines():
        c.print(f"  {line}")
    c.print(f"report: {summary.get('report')}")


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(demo)
