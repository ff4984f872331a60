"""Co-learning: a model trained with modality dropout keeps answering from the other inputs
when one is missing, in `predict` (empty cells) and in the SavedModel (empty bytes) alike."""

import json
import shutil

import pandas as pd
import pytest
import yaml
from conftest import run_cli
from test_e2e import serve


def fit_redundant_demo(root, space: dict, train: dict):
    """One trial on the redundant demo (every input alone tells the label), with these
    `search.space` and `train` settings over a small fixed base; (run, data, summary)."""
    from mmauto.data.demo import write_demo

    m = write_demo(root / "data", rows=200, seed=1, redundant=True)
    data = yaml.safe_load(m.read_text())
    data["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 16, **space}}
    data["train"] = {"epochs": 12, "batch_size": 16, "learning_rate": 0.003, "early_stopping": False, "seed": 1, **train}
    m.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("fit", m, "--out", root / "run", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "run", root / "data", json.loads(r.stdout)


def answers_without_image(run, data, tmp_path):
    """The training rows with the image blanked: (accuracy of `mmauto predict`, its labels,
    the SavedModel's labels for the same rows sent with empty image bytes)."""
    blank = tmp_path / "data"
    shutil.copytree(data, blank)
    frame = pd.read_csv(blank / "train.csv")
    frame["image"] = ""
    frame.to_csv(blank / "train.csv", index=False)
    r = run_cli("predict", run, blank / "train.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    preds = pd.read_csv(tmp_path / "p.csv")
    truth = pd.read_csv(data / "train.csv")["label"]
    return (preds["prediction"] == truth).mean(), preds["prediction"].tolist(), serve(run, blank)["labels"]


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    return fit_redundant_demo(tmp_path_factory.mktemp("robust"), {"contrastive_weight": 0.1, "reconstruction_weight": 0.1},
                              {"modality_dropout": 0.3})


def test_missing_image_keeps_accuracy(robust_run, tmp_path):
    run, data, summary = robust_run
    assert summary["metrics"]["test"]["accuracy"] >= 0.9, summary["metrics"]
    accuracy, predicted, served = answers_without_image(run, data, tmp_path)
    assert accuracy >= 0.9
    assert predicted == served  # empty image bytes in the SavedModel


def test_ablation_names_every_input(robust_run):
    run, data, _ = robust_run
    r = run_cli("evaluate", run, data / "train.csv", "--ablate", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads(r.stdout)["ablation"]
    singles = {tuple(x["removed"]) for x in a["rows"] if len(x["removed"]) == 1}
    assert singles == {("photo",), ("review",), ("voice",), ("meta",)}
    assert all(x["score"] >= 0.85 for x in a["rows"] if len(x["removed"]) == 1)
    assert json.loads((run / "ablation.json").read_text())["split"] == "test"
