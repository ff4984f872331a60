"""serving_explain's attention shares (mmauto/model/attention.py): what an attention fusion's
attention gives each input, read by calling its attention layer again in the trained graph."""

import json
import shutil

import keras
import keras_tuner as kt
import numpy as np
import pytest
import yaml
from conftest import run_cli

from mmauto.config.manifest import SpaceSpec
from mmauto.encoders import Encoded
from mmauto.fusion import FUSIONS
from mmauto.model.attention import attention_probe, call_arguments


def _model(fname, steps=3, width=8):
    """Input `a` has `steps` tokens, `b` is one pooled vector (one token)."""
    inputs = {"a_pooled": keras.Input((width,), name="a_pooled"), "a_tokens": keras.Input((steps, width), name="a_tokens"),
              "b_pooled": keras.Input((width,), name="b_pooled")}
    encoded = {"a": Encoded(inputs["a_pooled"], inputs["a_tokens"]), "b": Encoded(inputs["b_pooled"], None)}
    out = FUSIONS.get(fname)(SpaceSpec()).build(kt.HyperParameters(), encoded, width, 0.0)
    return keras.Model(inputs, out)


def _features(steps=3, width=8, rows=4):
    rng = np.random.default_rng(0)
    return {"a_pooled": rng.normal(size=(rows, width)).astype("float32"),
            "a_tokens": rng.normal(size=(rows, steps, width)).astype("float32"),
            "b_pooled": rng.normal(size=(rows, width)).astype("float32")}


def test_keras_node_arguments_still_exist():
    """The one private Keras name the probe reads (`call_arguments`)."""
    x = keras.Input((2, 4))
    mha = keras.layers.MultiHeadAttention(1, 4)
    mha(x, x)
    args, kwargs = call_arguments(mha)
    assert args == (x, x) and kwargs == {}


@pytest.mark.parametrize("fname", ["transformer", "perceiver"])
def test_uniform_attention_gives_shares_by_token_count(fname):
    model = _model(fname)
    probe = attention_probe(model, ["a", "b"])
    assert probe is not None and probe.spans["a"][1] - probe.spans["a"][0] == 3 and probe.spans["b"][1] - probe.spans["b"][0] == 1
    feats = _features()
    # A query of its own (the transformer's CLS token starts at zeros, which attends evenly).
    q = probe.layer._query_dense
    q.bias.assign(np.random.default_rng(1).normal(size=q.bias.shape).astype("float32") * 3)
    got = {k: keras.ops.convert_to_numpy(v) for k, v in probe.shares(feats).items()}
    assert np.allclose(got["a"] + got["b"], 1.0, atol=1e-6) and not np.allclose(got["a"], 0.75, atol=1e-3)
    # With a zero query projection every key gets the same score: the shares are the token counts'.
    q.kernel.assign(np.zeros(q.kernel.shape, "float32"))
    q.bias.assign(np.zeros(q.bias.shape, "float32"))
    got = {k: keras.ops.convert_to_numpy(v) for k, v in probe.shares(feats).items()}
    assert np.allclose(got["a"], 0.75, atol=1e-5) and np.allclose(got["b"], 0.25, atol=1e-5)


@pytest.mark.parametrize("fname", ["concat", "cross_attention", "pairwise"])
def test_other_fusions_serve_no_attention(fname):
    assert attention_probe(_model(fname), ["a", "b"]) is None


def test_served_attention_through_predict_explain(demo_dir, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(demo_dir, d)
    m = yaml.safe_load((d / "manifest.yaml").read_text())
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in ("review", "meta")}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "transformer", "width": 16, "depth": 1}}
    m["train"] = {"epochs": 2, "batch_size": 16, "ensemble": False}
    (d / "manifest.yaml").write_text(yaml.safe_dump(m))
    r = run_cli("fit", d / "manifest.yaml", "--out", tmp_path / "run", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((tmp_path / "run" / "mmauto.json").read_text())
    assert {"attention_review", "attention_meta"} <= set(card["signatures"]["serving_explain"]["outputs"])
    r = run_cli("predict", tmp_path / "run", d / "train.csv", "--out", tmp_path / "p.csv", "--explain")
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd

    p = pd.read_csv(tmp_path / "p.csv")
    shares = p["attention_review"] + p["attention_meta"]
    assert np.allclose(shares, 1.0, atol=1e-5) and (p["attention_review"].between(0, 1)).all()
    assert p["attention_review"].std() > 0  # per row, not one number for all
