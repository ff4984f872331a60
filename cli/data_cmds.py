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
    from mmauto import api

    summary = api.validate(manifest)
    if json_out:
        print_json({"ok": True, **summary})
        return
    from rich.table import Table

    c = console()
    splits = summary["splits"]
    c.print(f"[bold]{summary['name']}[/]: {summary['task']} of '{summary['target']}'" + (f", {len(summary['classes'])} classes ({', '.join(summary['classes'][:10])}{', ...' if len(summary['classes']) > 10 else ''})" if summary["classes"] else ""))
    table = Table("input", "modality", "column(s)", *[f"{k} rows (missing)" for k in splits])
    for inp in summary["inputs"]:
        table.add_row(inp["name"], inp["modality"], ", ".join(inp["columns"]),
                      *[f"{splits[k]['rows']} ({inp['missing'][k]})" for k in splits])
    c.print(table)
    for p in summary["dropped"]:
        c.print(f"[yellow]dropped[/] {p['count']} row(s) of {p['file']}: {p['reason']} (rows {', '.join(map(str, p['rows']))})")
    c.print("[green]ok[/]: the manifest and its data are valid")


def demo(
    out: Path = typer.Option(Path("mmauto-demo"), "--out", help="Folder to write the demo data set into."),
    rows: int = typer.Option(400, "--rows", help="Number of rows."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    missing: float = typer.Option(0.0, "--missing", help="Fraction of rows with one input left empty."),
    redundant: bool = typer.Option(False, "--redundant", help="Every input alone tells the label (robustness demo)."),
):
    """Write a small offline demo data set (images, text, audio, table) and its manifest."""
    from mmauto import api

    path = api.demo(out, rows=rows, seed=seed, missing=missing, redundant=redundant)
    c = console()
    c.print(f"wrote {rows} rows and {path}")
    c.print(f"next: mmauto validate {path}   then   mmauto fit {path} --out runs/demo")


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(demo)
