"""Every head end to end: binary (with class weights), multilabel, regression (mixed precision
on CPU), plus the waveform signature and hyperband."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import yaml
from conftest import run_cli


def task_data(demo_dir, tmp_path, task, target, transform, inputs=("review", "meta"), train=None, search=None):
    data_dir = tmp_path / "data"
    shutil.copytree(demo_dir, data_dir)
    frame = transform(pd.read_csv(data_dir / "train.csv"))
    frame.to_csv(data_dir / "train.csv", index=False)
    m = yaml.safe_load((data_dir / "manifest.yaml").read_text())
    m["task"] = task
    m["target"] = target
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in inputs}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 16}, **(search or {})}
    m["train"] = {"epochs": 3, "batch_size": 16, **(train or {})}
    (data_dir / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    return data_dir


def fit(data_dir, tmp_path, *extra):
    r = run_cli("fit", data_dir / "manifest.yaml", "--out", tmp_path / "run", "--json", *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp_path / "run", json.loads(r.stdout)


def test_binary_with_class_weights(demo_dir, tmp_path):
    d = task_data(demo_dir, tmp_path, "classification", "deal",
                  lambda f: f.assign(deal=np.where(f["price"] > 50, "yes", "no")), inputs=("review", "meta", "photo"),
                  train={"class_weight": "balanced"})
    run, summary = fit(d, tmp_path)
    assert json.loads((run / "mmauto.json").read_text())["head"] == "binary"
    assert summary["objective"] == "val_auc"
    test = summary["metrics"]["test"]
    assert test["roc_auc"] is not None and test["accuracy"] > 0.6
    r = run_cli("predict", run, d / "train.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    p = pd.read_csv(tmp_path / "p.csv")
    assert set(p["prediction"]) <= {"yes", "no"} and np.allclose(p["prob_no"] + p["prob_yes"], 1.0, atol=1e-5)


def test_multilabel(demo_dir, tmp_path):
    def tags(f):
        t = [("pricey" if p > 50 else "cheap") + ("|north" if s == "north" else "") for p, s in zip(f["price"], f["store"])]
        return f.assign(tags=t)

    d = task_data(demo_dir, tmp_path, "multilabel", {"column": "tags", "separator": "|"}, tags)
    run, summary = fit(d, tmp_path)
    card = json.loads((run / "mmauto.json").read_text())
    assert card["head"] == "multilabel" and card["labels"] == ["cheap", "north", "pricey"]
    assert summary["objective"] == "val_loss" and "macro_f1" in summary["metrics"]["test"]
    run_cli("predict", run, d / "train.csv", "--out", tmp_path / "p.csv")
    p = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    # one threshold per label, chosen on validation for F1 (stage calibrate); `label` uses them
    thresholds = card["thresholds"]
    assert set(thresholds) == {"cheap", "north", "pricey"} and card["threshold_chosen_for"] == "f1"
    for label, row in zip(p["prediction"], p[["prob_cheap", "prob_north", "prob_pricey"]].values):
        assert set(filter(None, label.split("|"))) == {c for c, x in zip(["cheap", "north", "pricey"], row) if x >= thresholds[c]}


def test_regression_mixed_precision(demo_dir, tmp_path):
    d = task_data(demo_dir, tmp_path, "regression", "price", lambda f: f, train={"epochs": 4})
    m = yaml.safe_load((d / "manifest.yaml").read_text())
    m["inputs"]["meta"] = {"modality": "tabular", "numeric": ["weight"], "categorical": ["colour", "store"]}
    (d / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    run, summary = fit(d, tmp_path, "--mixed-precision")
    assert summary["objective"] == "val_rmse"
    run_cli("predict", run, d / "train.csv", "--out", tmp_path / "p.csv")
    p = pd.read_csv(tmp_path / "p.csv")
    # Standardised in training, inverted in the export: predictions are prices again.
    assert list(p.columns) == ["id", "prediction", "prediction_lower", "prediction_upper"] and 5 < p["prediction"].mean() < 120
    # the split-conformal interval (stage calibrate): value -+ the validation residuals' 90% quantile
    interval = json.loads((run / "mmauto.json").read_text())["interval"]
    assert interval["coverage"] == 0.9 and interval["half_width"] > 0
    assert np.allclose(p["prediction_upper"] - p["prediction"], interval["half_width"], rtol=1e-4)
    assert np.allclose(p["prediction"] - p["prediction_lower"], interval["half_width"], rtol=1e-4)
    e = json.loads(run_cli("evaluate", run, d / "train.csv", "--json").stdout)["metrics"]
    assert {"mae", "rmse", "r2", "interval_coverage"} <= set(e)


WAVE = textwrap.dedent(
    """
    import sys, json, numpy as np, pandas as pd, soundfile as sf, tensorflow as tf
    from pathlib import Path
    run, data = Path(sys.argv[1]), Path(sys.argv[2])
    f = pd.read_csv(data / "train.csv").head(8)
    m = tf.saved_model.load(str(run / "model"))
    waves = np.stack([sf.read(data / p, dtype="float32")[0] for p in f["audio"]])
    common = dict(review=tf.constant(f["review"].astype(str).tolist()))
    a = m.signatures["serving_waveform"](voice=tf.constant(waves), **common)
    b = m.signatures["serving_default"](voice=tf.constant([(data / p).read_bytes() for p in f["audio"]]), **common)
    print(json.dumps(float(np.abs(a["probabilities"].numpy() - b["probabilities"].numpy()).max())))
    """
)


def test_waveform_signature_and_hyperband(demo_dir, tmp_path):
    d = task_data(demo_dir, tmp_path, "classification", "label", lambda f: f, inputs=("review", "voice"),
                  search={"tuner": "hyperband", "max_trials": 2})
    run, summary = fit(d, tmp_path)
    r = subprocess.run([sys.executable, "-c", WAVE, str(run), str(d)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # 16-bit WAV bytes vs the same samples as floats: equal up to the int16 rounding.
    assert float(r.stdout.strip().splitlines()[-1]) < 1e-3


def test_mirrored_strategy_path_on_cpu(demo_dir, tmp_path):
    """The multi-GPU path (MirroredStrategy) runs here on the CPU device."""
    d = task_data(demo_dir, tmp_path, "classification", "label", lambda f: f, inputs=("review", "meta", "photo"))
    r = run_cli("fit", d / "manifest.yaml", "--out", tmp_path / "run", "--json", env={"MMAUTO_STRATEGY": "mirrored"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "saved_model.pb").exists()


def test_column_names_with_spaces(demo_dir, tmp_path):
    """A column such as 'colour name' is served as 'colour_name' (TF argument names)."""
    d = task_data(demo_dir, tmp_path, "classification", "label", lambda f: f.rename(columns={"colour": "colour name", "price": "price (usd)"}))
    m = yaml.safe_load((d / "manifest.yaml").read_text())
    m["inputs"]["meta"] = {"modality": "tabular", "numeric": ["price (usd)", "weight"], "categorical": ["colour name", "store"]}
    (d / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    run, _ = fit(d, tmp_path)
    names = [i["name"] for i in json.loads((run / "mmauto.json").read_text())["signatures"]["serving_default"]["inputs"]]
    assert "colour_name" in names and "price__usd_" in names
    r = run_cli("predict", run, d / "train.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 120
