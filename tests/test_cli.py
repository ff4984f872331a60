"""The CLI as a user runs it: a subprocess, exit codes, one-line errors, no TF for --help."""

import json
import subprocess
import sys

import pytest
from conftest import run_cli


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from mmauto_cli.main import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "bad = [m for m in ('tensorflow', 'keras', 'keras_hub', 'pandas') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("mmauto ")


def test_demo_then_validate_json(tmp_path):
    r = run_cli("demo", "--out", tmp_path / "d", "--rows", "40", "--data-only")
    assert r.returncode == 0, r.stderr
    r = run_cli("validate", tmp_path / "d" / "manifest.yaml", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] and [i["name"] for i in data["inputs"]] == ["photo", "review", "voice", "meta"]
    assert sum(s["rows"] for s in data["splits"].values()) == 40


def test_validate_table_output(demo_dir):
    r = run_cli("validate", demo_dir / "manifest.yaml")
    assert r.returncode == 0, r.stderr
    assert "photo" in r.stdout and "ok" in r.stdout


def test_user_error_is_one_line_exit_2(tmp_path):
    (tmp_path / "m.yaml").write_text("task: classification\ndata: {train: x.csv}\ntarget: y\ninputs: {a: {modality: imgae}}\n")
    r = run_cli("validate", tmp_path / "m.yaml")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "m.yaml: inputs.a.modality: unknown modality 'imgae'; did you mean 'image'?" in lines[0]
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback(tmp_path):
    r = run_cli("validate", tmp_path / "none.yaml", env={"MMAUTO_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_recipes_from_another_folder(tmp_path):
    r = run_cli("recipes", "list", "--json", cwd=tmp_path)
    assert r.returncode == 0
    names = [x["name"] for x in json.loads(r.stdout)]
    assert "quick" in names
    r = run_cli("recipes", "init", "quick", "--out", "m.yaml", cwd=tmp_path)
    assert r.returncode == 0 and "extends: quick" in (tmp_path / "m.yaml").read_text()
    r = run_cli("recipes", "show", "quik", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean 'quick'" in r.stderr


def test_demo_fits_and_shows_how_to_serve(tmp_path):
    r = run_cli("demo", "--out", tmp_path / "d", "--rows", "60", "--time-budget", "45s")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "leaderboard" in out and "curl -s -X POST http://localhost:8501/v1/models/demo:predict" in out
    assert "tf.saved_model.load" in out and "report:" in out
    body = json.loads((tmp_path / "d" / "run" / "request.json").read_text())
    first = body["instances"][0]
    assert set(first["photo"]) == {"b64"} and set(first["voice"]) == {"b64"} and isinstance(first["review"], str)
    assert (tmp_path / "d" / "run" / "report" / "index.html").exists()


def _fit_events(run_dir):
    """The events `api.fit` sends for one two-epoch trial, without fitting anything."""
    from types import SimpleNamespace

    from mmauto import events

    trial = SimpleNamespace(trial_id="0", status="COMPLETED", score=0.9, message=None)
    hp = SimpleNamespace(values={"fusion": "concat", "width": 32, "photo/encoder": "cnn"})
    return [
        events.Start(manifest=SimpleNamespace(name="m"), budget=60.0, max_trials=2, resumed=False, run_dir=run_dir),
        events.DataChecked(summary={"splits": {"train": {"rows": 10}}, "dropped_rows": 0}),
        events.SearchStart(objective="val_accuracy", done=0, role=None),
        events.TrialStart(trial=trial, hp=hp, epochs=2, annealed=True),
        events.EpochEnd(trial=trial, epoch=0, epochs=2, logs={"loss": 0.7, "val_accuracy": 0.5}),
        events.EpochEnd(trial=trial, epoch=1, epochs=2, logs={"loss": 0.5, "val_accuracy": 0.9}),
        events.TrialEnd(trial=trial, seconds=3.0),
        events.ExportStart(trial="0"),
    ]


def test_fit_progress_is_live_on_a_terminal_and_lines_elsewhere(tmp_path):
    import io

    from rich.console import Console

    from mmauto_cli.model_cmds import FitPrinter

    shown = {}
    for terminal in (True, False):
        run_dir = tmp_path / f"run_{terminal}"
        run_dir.mkdir()
        out = io.StringIO()
        with FitPrinter(True, out=Console(file=out, force_terminal=terminal, width=120, highlight=False)) as printer:
            for event in _fit_events(run_dir):
                printer(event)
            if terminal:
                assert printer.bar is not None and set(printer.tasks) == {"phase"}  # the export bar
        assert printer.bar is None  # closed on leaving, as when a fit fails
        shown[terminal] = out.getvalue()
        log = (run_dir / "fit.log").read_text()
        assert "epoch 2/2 loss=0.5000 val_accuracy=0.9000" in log and "trial completed score=0.9000" in log
        # The log keeps the words without rich's markup ("mmauto fit[/] m" was written before).
        assert "mmauto fit m: up to 2 trial(s)" in log and "trial 0 (1)" in log and "[/]" not in log
        assert "photo=cnn, annealed over 2 epochs" in log
    # On a terminal the epochs live in the trial's bar, not as lines; in a pipe each is a line.
    assert "epoch 2/2" not in shown[True] and "epoch 2/2" in shown[False]
    assert "trial completed score=0.9000" in shown[True] and "\x1b[" in shown[True]


def test_ctrl_c_outside_a_trial_names_the_phase(tmp_path):
    """`mmauto fit` and `mmauto demo` wrap the fit in `interruptible`: Ctrl-C after a trial or
    during the export is the same one line (on stderr by the CLI, and in fit.log)."""
    import io

    from rich.console import Console

    from mmauto.errors import Interrupted
    from mmauto_cli.model_cmds import FitPrinter

    fit_events = _fit_events(tmp_path)
    for upto, where in ((7, "while searching, after trial 0"), (8, "while exporting best trial 0"), (4, "during trial 0")):
        printer = FitPrinter(False, out=Console(file=io.StringIO()))
        with pytest.raises(Interrupted) as err, printer, printer.interruptible():
            for event in fit_events[:upto]:
                printer(event)
            raise KeyboardInterrupt
        said = f"interrupted {where}; rerun the same command to resume"
        assert str(err.value) == said and err.value.exit_code == 130
        assert (tmp_path / "fit.log").read_text().splitlines()[-1] == said


def test_validate_missing_file_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from mmauto_cli.main import main; sys.argv = ['mmauto', 'validate', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n"
        "    print('exit', exc.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nope.yaml")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.stdout.split() == ["exit", "2", "False", "False"], r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.yaml'}: file not found"]


def test_predict_out_folder_fails_before_loading(tmp_path):
    (tmp_path / "data.csv").write_text("id\n1\n")
    r = run_cli("predict", tmp_path / "no_run", tmp_path / "data.csv", "--out", tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [f"error: --out: {tmp_path} is a folder; give a file path such as {tmp_path / 'predictions.csv'} (.csv, .tsv, .parquet, .jsonl)"]
