"""The `mmauto` app. Commands are thin and import their heavy parts inside their bodies, so
`mmauto --help` stays free of TensorFlow. Known errors become one red line and exit code 2;
MMAUTO_DEBUG=1 shows the traceback."""

from __future__ import annotations

import os
import sys

import typer

from mmauto import __version__

app = typer.Typer(
    name="mmauto",
    help="Multimodal AutoML on Keras 3: describe a dataset in YAML, search fused models, serve raw inputs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"mmauto {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Multimodal AutoML on Keras 3."""


def _register():
    from mmauto_cli import data_cmds, model_cmds, recipes_cmds, report_cmds

    for mod in (data_cmds, model_cmds, report_cmds):
        mod.register(app)
    app.add_typer(recipes_cmds.app, name="recipes")


_register()

# `validate` imports TF itself, after reading the manifest: a missing file is reported at once.
_TF_COMMANDS = {"fit", "predict", "embed", "evaluate", "search"}


def main() -> None:
    from mmauto.errors import Interrupted, MmautoError
    from mmauto_cli.output import quiet_tensorflow

    quiet_tensorflow()
    try:
        if len(sys.argv) > 1 and sys.argv[1] in _TF_COMMANDS and "--help" not in sys.argv:
            from mmauto_cli.output import import_tensorflow_quietly

            import_tensorflow_quietly()
        app()
    except MmautoError as exc:
        if os.environ.get("MMAUTO_DEBUG") == "1":
            raise
        from rich.console import Console
        from rich.markup import escape

        # An interrupt's message starts with "interrupted": it is no error of the user's.
        line = f"[yellow]{escape(str(exc))}[/]" if isinstance(exc, Interrupted) else f"[bold red]error:[/] {escape(str(exc))}"
        Console(stderr=True, highlight=False, soft_wrap=True).print(line)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # typer turns Ctrl-C into a silent exit 130; this is outside a command
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
