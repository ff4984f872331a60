"""`mmauto recipes list | show | init`."""

from __future__ import annotations

from pathlib import Path

import typer

from mmauto_cli.output import console, print_json

app = typer.Typer(help="Recipe templates shipped with mmauto.", no_args_is_help=True)


def _check(name: str):
    from mmauto import recipes
    from mmauto.errors import MmautoError, one_of

    if name not in recipes.names():
        raise MmautoError(one_of(name, recipes.names(), "recipe"))


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """List the recipes."""
    from mmauto import recipes

    items = [{"name": n, "description": recipes.description(n)} for n in recipes.names()]
    if json_out:
        print_json(items)
        return
    c = console()
    for it in items:
        c.print(f"[bold]{it['name']}[/]  {it['description']}")


@app.command()
def show(name: str = typer.Argument(..., help="Recipe name.")):
    """Print a recipe."""
    from mmauto import recipes

    _check(name)
    typer.echo(recipes.text(name), nl=False)


@app.command()
def init(
    name: str = typer.Argument(..., help="Recipe name."),
    out: Path = typer.Option(Path("manifest.yaml"), "--out", help="Manifest file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
):
    """Write a manifest that extends a recipe, with the data section to fill."""
    from mmauto.errors import MmautoError

    _check(name)
    if out.exists() and not force:
        raise MmautoError(f"{out}: exists; pass --force to overwrite it")
    out.write_text(
        f"# A manifest built on the '{name}' recipe: fill in the data, target and inputs.\n"
        f"# Every key of the recipe (see `mmauto recipes show {name}`) can be overridden here.\n"
        f"extends: {name}\n"
        "task: classification\n"
        "data:\n  train: data/train.csv\n"
        "target: label\n"
        "inputs:\n  review: {modality: text, column: text}\n"
    )
    console().print(f"wrote {out}")
