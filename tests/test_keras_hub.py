"""keras-hub backbones through the path users take: a local preset folder, a preset name
resolved offline through KAGGLEHUB_CACHE, and one clear line when a name cannot be had."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import yaml
from conftest import run_cli
from hub_presets import install_in_kagglehub_cache, tiny_bert, tiny_vit


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {"vit": tiny_vit(root / "vit"), "bert": tiny_bert(root / "bert")}


def hub_manifest(demo_dir, presets, path, extra_train=None):
    data = yaml.safe_load((demo_dir / "manifest.yaml").read_text())
    data["data"]["train"] = str(demo_dir / "train.csv")
    data["inputs"]["photo"]["encoder"] = {"preset": str(presets["vit"])}
    data["inputs"]["review"]["encoder"] = {"type": "keras_hub", "preset": str(presets["bert"])}
    del data["inputs"]["voice"]
    # transformer fusion: cached token sequences and their padding masks feed the trial model,
    # and the export's parity check proves the rebuilt full model computes the same thing.
    data["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "transformer", "width": 16}}
    data["train"] = {"epochs": 1, "batch_size": 32, **(extra_train or {})}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def hub_run(demo_dir, presets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hubrun")
    m = hub_manifest(demo_dir, presets, tmp / "m.yaml")
    r = run_cli("fit", m, "--out", tmp / "run", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run", json.loads(r.stdout), m


def test_frozen_backbones_train_on_cached_features(hub_run):
    run, summary, _ = hub_run
    assert summary["encoders"] == {"photo": "keras_hub", "review": "keras_hub", "meta": "mlp"} or summary["encoders"]["photo"] == "keras_hub"
    assert summary["feature_cache"]["misses"] >= 2  # computed once per split and input
    assert len(list((run / "cache").rglob("meta.json"))) >= 4  # (photo, review) x (train, validation)
    from mmauto.search.feature_cache import read_split

    z = read_split(next((run / "cache").glob("review-*/train")))
    assert set(z) == {"pooled", "tokens", "mask"} and len(z["pooled"]) == len(z["tokens"]) == len(z["mask"]) > 0
    assert 0 < z["mask"].mean() < 1  # the short demo reviews are padded
    card = json.loads((run / "mmauto.json").read_text())
    assert card["op_libraries"] == ["tensorflow-text"] and "import tensorflow_text" in card["load"]


def test_second_run_reuses_the_cache(hub_run):
    run, _, m = hub_run
    before = {p: p.stat().st_mtime_ns for p in (run / "cache").rglob("*.f32")}
    r = run_cli("fit", m, "--out", run, "--max-trials", "2", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["resumed"] and summary["feature_cache"]["misses"] == 0 and summary["feature_cache"]["hits"] > 0
    assert before and {p: p.stat().st_mtime_ns for p in (run / "cache").rglob("*.f32")} == before


SERVE = textwrap.dedent(
    """
    import sys, json, pandas as pd, tensorflow as tf, tensorflow_text
    from pathlib import Path
    assert "keras_hub" not in sys.modules and "mmauto" not in sys.modules
    run, data = Path(sys.argv[1]), Path(sys.argv[2])
    f = pd.read_csv(data / "train.csv").head(20)
    sig = tf.saved_model.load(str(run / "model")).signatures["serving_default"]
    out = sig(photo=tf.constant([(data / p).read_bytes() for p in f["image"]]),
              review=tf.constant(f["review"].astype(str).tolist()),
              price=tf.constant(f["price"].astype("float32").values), weight=tf.constant(f["weight"].astype("float32").values),
              colour=tf.constant(f["colour"].astype(str).tolist()), store=tf.constant(f["store"].astype(str).tolist()))
    print(json.dumps([x.decode() for x in out["label"].numpy()]))
    """
)


def test_hub_model_serves_with_tf_and_tf_text_only(hub_run, demo_dir, tmp_path):
    run, _, _ = hub_run
    r = subprocess.run([sys.executable, "-c", SERVE, str(run), str(demo_dir)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    head = pd.read_csv(demo_dir / "train.csv").head(20)
    head.to_csv(tmp_path / "head.csv", index=False)
    (tmp_path / "images").symlink_to(demo_dir / "images")
    (tmp_path / "audio").symlink_to(demo_dir / "audio")
    p = run_cli("predict", run, tmp_path / "head.csv", "--out", tmp_path / "p.csv")
    assert p.returncode == 0, p.stderr[-3000:]
    assert pd.read_csv(tmp_path / "p.csv")["prediction"].tolist() == json.loads(r.stdout.strip().splitlines()[-1])


def test_preset_name_through_kagglehub_cache(presets, tmp_path):

    handle = "kaggle://mmauto/tinyvit/keras/tiny_vit/1"
    cache = install_in_kagglehub_cache(presets["vit"], handle, tmp_path / "kh")
    code = f"from mmauto.encoders.keras_hub import load; b = load('backbone', {handle!r}, 'k'); print(b.count_params())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "KAGGLEHUB_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip().splitlines()[-1]) > 1000


def test_offline_preset_name_is_one_line(demo_dir, presets, tmp_path):
    m = hub_manifest(demo_dir, presets, tmp_path / "m.yaml")
    data = yaml.safe_load(m.read_text())
    data["inputs"]["photo"]["encoder"] = {"preset": "resnet_18_imagenet"}
    m.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("fit", m, "--out", tmp_path / "run", env={"KAGGLEHUB_CACHE": str(tmp_path / "empty")}, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "inputs.photo.encoder.preset: 'resnet_18_imagenet' must be downloaded" in errors[0], r.stderr
    assert "Traceback" not in r.stderr and "trial 0" not in r.stderr  # fails before any trial starts


def test_not_a_preset_folder(demo_dir, presets, tmp_path):
    from mmauto.encoders.keras_hub import load
    from mmauto.errors import PresetError

    (tmp_path / "empty").mkdir()
    with pytest.raises(PresetError, match="not a keras-hub preset folder"):
        load("backbone", str(tmp_path / "empty"), "inputs.photo.encoder.preset")
    with pytest.raises(PresetError, match="neither a keras-hub preset name nor a preset folder"):
        load("backbone", str(tmp_path / "nothing_here"), "inputs.photo.encoder.preset")
