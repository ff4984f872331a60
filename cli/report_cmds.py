"""`mmauto report`."""

from __future__ import annotations

from pathlib import Path

import typer


def report(run_dir: Path = typer.Argument(..., help="A run folder written by `mmauto fit`.")):
    """Regenerate RUN_DIR/report/index.html."""
    from mmauto.errors import RunError
    from mmauto.report.html import write_report

    if not ((run_dir / "leaderboard.json").exists() and (run_dir / "metrics.json").exists()):
        raise RunError(f"{run_dir}: no finished fit here; run `mmauto fit MANIFEST --out {run_dir}` first")
    # The path alone on stdout, so a script can open it.
    typer.echo(str(write_report(run_dir)))


def register(app: typer.Typer) -> None:
    app.command()(report)
