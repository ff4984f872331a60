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


START = "# --- manifest starts here ---"
END = "# --- manifest ends here ---"

# For a recipe without a fill-in block.
GENERIC = """task: classification            # classification | multilabel | regression
data:
  train: data/train.csv         # your table, relative to this file
target: label
inputs:
  review: {modality: text, column: text}
"""


def fill_in(text: str) -> str:
    """The recipe's commented block between START and END, uncommented ('# x' -> 'x')."""
    lines = text.splitlines()
    try:
        i = lines.index(START)
        j = lines.index(END, i + 1)
    except ValueError:
        return GENERIC
    out = []
    for line in lines[i + 1 : j]:
        if line.rstrip() == "#":
            out.append("")
        elif line.startswith("# "):
            out.append(line[2:])
        else:
            raise ValueError(f"recipe line inside the manifest block is not a '# ' comment: {line!r}")
    return "\n".join(out).strip("\n") + "\n"


@app.command()
def init(
    name: str = typer.Argument(..., help="Recipe name."),
    out: Path = typer.Option(Path("manifest.yaml"), "--out", help="Manifest file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
):
    """Write a manifest that extends a recipe: its data, target and inputs to point at your files."""
    from mmauto import recipes
    from mmauto.errors import MmautoError

    _check(name)
    if out.exists() and not force:
        raise MmautoError(f"{out}: exists; pass --force to overwrite it")
    if out.is_dir():
        raise MmautoError(f"{out}: is a folder; give a file name such as {out / 'manifest.yaml'}")
    if not out.parent.is_dir():
        raise MmautoError(f"{out}: the folder {out.parent} does not exist")
    out.write_text(
        f"# Recipe '{name}': {recipes.description(name)}\n"
        "# Point data, target and inputs at your own table and columns (the values below are\n"
        f"# placeholders), then run `mmauto validate {out.name}`. The recipe's settings (see\n"
        f"# `mmauto recipes show {name}`) apply unless you set the same key here.\n"
        f"extends: {name}\n"
        f"{fill_in(recipes.text(name))}",
        encoding="utf-8",
    )
    console().print(f"wrote {out}")
