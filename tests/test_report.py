"""The HTML run report: written by `fit`, rewritten by `mmauto report`, self-contained, and
rendered by a real browser when one is installed."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(demo_dir, tmp_path_factory) -> Path:
    """A small two-trial fit, once per module, searching two fusions."""
    out = tmp_path_factory.mktemp("report") / "r"
    manifest = demo_dir / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["search"] = {"tuner": "random", "max_trials": 2, "space": {"fusion": ["concat", "gated"], "width": 16}}
    data["train"] = {"epochs": 2, "batch_size": 32}
    m2 = demo_dir / "m_report.yaml"
    m2.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("fit", m2, "--out", out, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["report"] == str(out / "report" / "index.html")
    return out


def test_fit_writes_report(run):
    page = (run / "report" / "index.html").read_text()
    assert page.count('<img src="data:image/png;base64,') >= 3
    assert "<script" not in page and "http://" not in page and "https://" not in page
    metrics = json.loads((run / "metrics.json").read_text())
    split = "test" if "test" in metrics else "validation"
    assert f"{metrics[split]['accuracy']:.4f}" in page
    for row in json.loads((run / "leaderboard.json").read_text()):  # rank then trial id opens each row
        # The ensemble's row has no rank and a word for its trial.
        rank = f'<td class="num">{row["rank"]}</td>' if row["rank"] is not None else "<td></td>"
        trial = f'<td class="num">{row["trial"]}</td>' if row["trial"].isdigit() else f'<td>{row["trial"]}</td>'
        assert f"{rank}{trial}" in page, row["trial"]
    for png in ("trials.png", "learning_curves.png", "confusion_matrix.png", "calibration.png", "ablation.png"):
        assert (run / "report" / png).stat().st_size > 1000, png
    assert "/v1/models/" in page and "tf.saved_model.load" in page and "&quot;b64&quot;" in page


def test_report_command_regenerates(run):
    shutil.rmtree(run / "report")
    r = run_cli("report", run)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == str(run / "report" / "index.html")
    assert (run / "report" / "index.html").read_text().count("data:image/png;base64,") >= 3


def test_report_without_optional_files(run, tmp_path):
    """A run missing history, predictions and ablation, with a failed trial, still gets a page."""
    from mmauto.report.html import write_report

    part = tmp_path / "part"
    part.mkdir()
    for f in ("leaderboard.json", "metrics.json", "mmauto.json"):
        shutil.copy(run / f, part / f)
    rows = json.loads((part / "leaderboard.json").read_text())
    rows.append({**rows[0], "trial": "99", "status": "failed", "score": None, "rank": None, "message": "Traceback\nValueError: <boom>"})
    (part / "leaderboard.json").write_text(json.dumps(rows))
    page = write_report(part).read_text()
    assert "No history.json" in page and "No eval_predictions.csv" in page and "No ablation.json" in page
    assert "ValueError: &lt;boom&gt;" in page and "<boom>" not in page
    assert not (part / "report" / "calibration.png").exists()


def test_report_on_empty_folder_is_one_line(tmp_path):
    r = run_cli("report", tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no finished fit here" in lines[0], r.stderr


def test_report_renders_in_chromium(run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1200,2000", (run / "report" / "index.html").resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 20_000
