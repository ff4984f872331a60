"""The variational reconstruction objective (`reconstruction: variational`, a multimodal VAE):
the layer samples in training and returns the mean at inference, its loss is the closed form,
it saves and loads, the manifest wires it into the search space, and a fit exports with parity."""

import json
import math
import shutil

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli

from mmauto.model.objectives import KL_WEIGHTS, Reconstruction, VariationalReconstruction, kl_divergence

FUSED, A, B = 8, 8, 6  # widths of the fused vector and of two inputs' pooled embeddings


def _arrays(rows=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(rows, d)).astype("float32") for d in (FUSED, A, B)]


def _np(x):
    return keras.ops.convert_to_numpy(x)


# === The layer ===


def test_training_samples_and_inference_is_the_mean():
    x = _arrays()
    layer = VariationalReconstruction(2, 0.1, 0.01, seed=1)
    s1, s2 = _np(layer(x, training=True)), _np(layer(x, training=True))
    assert s1.shape == (4, FUSED) and not np.allclose(s1, s2), "two training calls draw two samples"
    m1, m2 = _np(layer(x, training=False)), _np(layer(x, training=False))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_allclose(m1, _np(layer.mean(x[0])), atol=1e-6)
    assert not np.allclose(s1, m1)


def test_the_sample_is_reproducible_from_the_seed():
    x = _arrays()
    first = VariationalReconstruction(2, 0.1, 0.01, seed=7)
    first(x, training=False)
    draws = []
    for _ in range(2):
        layer = VariationalReconstruction(2, 0.1, 0.01, seed=7)
        layer(x, training=False)
        layer.set_weights(first.get_weights())
        draws.append(_np(layer(x, training=True)))
    np.testing.assert_array_equal(draws[0], draws[1])


def test_kl_is_zero_at_the_prior_and_the_closed_form_elsewhere():
    zeros = np.zeros((3, 4), "float32")
    np.testing.assert_allclose(_np(kl_divergence(zeros, zeros)), 0.0, atol=1e-7)
    # mean (1, 0), variance (1, 2): 0.5 * ((1 + 1 - 1 - 0) + (2 + 0 - 1 - ln 2)) = 1 - ln(2) / 2
    got = _np(kl_divergence(np.array([[1.0, 0.0]], "float32"), np.array([[0.0, math.log(2.0)]], "float32")))
    np.testing.assert_allclose(got, [1.0 - math.log(2.0) / 2], rtol=1e-6)
    # Against the general two-Gaussian form, per dimension: log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")
    s1 = np.exp(0.5 * logvar)
    expected = (np.log(1.0 / s1) + (s1**2 + mean**2) / 2.0 - 0.5).sum(axis=-1)
    got = _np(kl_divergence(mean, logvar))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert (got > 0).all()


def test_the_added_loss_is_weight_times_mse_plus_kl():
    x = _arrays()
    layer = VariationalReconstruction(2, 0.3, 0.05, seed=1)
    layer(x, training=False)

    def dense(d, v):
        return v @ _np(d.kernel) + _np(d.bias)

    mean, logvar = dense(layer.mean, x[0]), dense(layer.logvar, x[0])
    mse = [np.mean((dense(d, mean) - t) ** 2) for d, t in zip(layer.dec, x[1:])]
    kl = np.mean(0.5 * (np.exp(logvar) + mean**2 - 1.0 - logvar).sum(axis=-1))
    assert kl > 0
    np.testing.assert_allclose(float(_np(layer.losses[-1])), 0.3 * (np.mean(mse) + 0.05 * kl), rtol=1e-5)


def test_mixed_precision_keeps_float32_losses():
    before = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = VariationalReconstruction(2, 0.1, 0.01, seed=1)
        z = layer(_arrays(), training=True)
        assert keras.backend.standardize_dtype(z.dtype) == "float16"
        loss = layer.losses[-1]
        assert keras.backend.standardize_dtype(loss.dtype) == "float32" and np.isfinite(_np(loss))
    finally:
        keras.mixed_precision.set_global_policy(before)


def test_saves_and_loads(tmp_path):
    inputs = [keras.Input((d,)) for d in (FUSED, A, B)]
    model = keras.Model(inputs, VariationalReconstruction(2, 0.1, 0.02, seed=3, name="vae")(inputs))
    x = _arrays(rows=2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(_np(model(x)), _np(loaded(x)), atol=1e-6)
    config = loaded.get_layer("vae").get_config()
    assert (config["n"], config["weight"], config["kl_weight"], config["seed"]) == (2, 0.1, 0.02, 3)


# === The search space ===


@pytest.fixture(scope="module")
def two_inputs(demo_dir, tmp_path_factory):
    """Writes the demo manifest cut to two cheap inputs, with `train` and `search.space` added."""
    tmp = tmp_path_factory.mktemp("objectives")

    def write(train=None, space=None):
        from mmauto.config.manifest import load_manifest

        data = yaml.safe_load((demo_dir / "manifest.yaml").read_text())
        data["data"]["train"] = str(demo_dir / data["data"]["train"])
        data["inputs"] = {k: v for k, v in data["inputs"].items() if k in ("review", "meta")}
        data["search"] = {"space": {"fusion": "concat", "width": 8, **(space or {})}}
        data["train"] = train or {}
        path = tmp / "m.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_manifest(path)

    return write


def _build(manifest, values=None):
    from mmauto.data.checks import load_splits
    from mmauto.data.pipeline import Preprocessing
    from mmauto.model.hypermodel import MultimodalHyperModel

    hp = kt.HyperParameters()
    hp.values.update(values or {})
    hm = MultimodalHyperModel(Preprocessing.fit(manifest, load_splits(manifest)))
    return hm.build(hp), hp


def _kinds(model):
    return {type(layer) for layer in model.layers} & {Reconstruction, VariationalReconstruction}


def test_variational_pinned_builds_the_layer(two_inputs):
    model, hp = _build(two_inputs(train={"reconstruction": "variational"}))
    assert _kinds(model) == {VariationalReconstruction}
    assert hp.values["reconstruction"] == "variational"
    # naming the objective turns it on: the weight, unset, is searched among the non-zero ones
    space = {h.name: h for h in hp.space}
    assert hp.get("reconstruction_weight") > 0 and list(space["reconstruction_weight"].values) == [0.1, 0.5]
    assert list(space["kl_weight"].values) == KL_WEIGHTS
    # the head reads the latent (through the `fused` handle)
    assert model.get_layer("fused").input is model.get_layer("variational_reconstruction").output


def test_unset_reconstruction_keeps_the_plain_objective(two_inputs):
    model, hp = _build(two_inputs(train={"reconstruction_weight": 0.1}))
    assert _kinds(model) == {Reconstruction} and "reconstruction" not in hp.values and "kl_weight" not in hp.values
    model, hp = _build(two_inputs())
    assert _kinds(model) == set() and "reconstruction" not in hp.values


def test_both_searched_with_a_pinned_kl_weight(two_inputs):
    m = two_inputs(train={"kl_weight": 0.05}, space={"reconstruction": ["plain", "variational"], "reconstruction_weight": 0.5})
    model, hp = _build(m)
    assert _kinds(model) == {Reconstruction} and hp.values["reconstruction"] == "plain"
    model, hp = _build(m, {"reconstruction": "variational"})
    assert _kinds(model) == {VariationalReconstruction}
    layer = model.get_layer("variational_reconstruction")
    assert (layer.kl_weight, layer.weight) == (0.05, 0.5)


def test_a_tiny_fit_exports_with_parity(demo_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    pd.read_csv(data / "train.csv").head(60).to_csv(data / "train.csv", index=False)
    m = yaml.safe_load((data / "manifest.yaml").read_text())
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in ("review", "meta")}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 8}}
    m["train"] = {"epochs": 1, "batch_size": 16, "reconstruction": "variational", "reconstruction_weight": 0.1,
                  "kl_weight": 0.01, "ensemble": False}
    (data / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    # Under mixed precision: the layer computes in float16 and its losses in float32.
    r = run_cli("fit", data / "manifest.yaml", "--out", tmp_path / "run", "--json", "--mixed-precision")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    board = json.loads((run / "leaderboard.json").read_text())
    assert board[0]["hyperparameters"]["reconstruction"] == "variational"
    # The export reloads the SavedModel and compares it with the trained model's predict: a
    # layer that sampled at inference would draw different noise in each and fail it.
    parity = json.loads((run / "mmauto.json").read_text())["parity"]
    assert parity["rows"] > 0 and parity["max_abs_diff"] <= 1e-4


def test_unset_modality_dropout_never_leaves_the_missing_embedding_untrained(two_inputs):
    """Issue 16: with modality dropout 0 and no missing cells, `<input>_missing` never trains."""
    from mmauto.model.hypermodel import MODALITY_DROPOUTS

    model, hp = _build(two_inputs())
    assert 0.0 not in MODALITY_DROPOUTS and hp.get("modality_dropout") == 0.2
    assert model.get_layer("review_missing").dropout == 0.2
    model, hp = _build(two_inputs(train={"modality_dropout": 0.0}))  # a pinned 0 is kept
    assert model.get_layer("review_missing").dropout == 0.0


def test_contrastive_loss_leaves_out_rows_missing_a_side():
    """A row missing one input is neither an anchor nor a negative, in both directions: the
    loss over the batch equals the loss over the rows that have both."""
    from mmauto.model.objectives import ContrastiveAlignment

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 6)).astype("float32"), rng.normal(size=(5, 6)).astype("float32")
    layer = ContrastiveAlignment(2, 1.0, dim=4)

    def loss(rows, keep_a):
        layer([a[rows], b[rows], keep_a.reshape(-1, 1), np.ones((len(rows), 1), "float32")])
        return float(layer.losses[-1])

    full = loss(np.arange(5), np.array([1, 1, 0, 1, 1], "float32"))
    subset = loss(np.array([0, 1, 3, 4]), np.ones(4, "float32"))
    assert full == pytest.approx(subset, rel=1e-5)


def test_presence_switch_answers_from_the_present_inputs_heads():
    from mmauto.layers import PresenceSwitch

    fused = np.array([[1.0, 0.0]] * 4, "float32")
    a, b = np.array([[0.0, 2.0]] * 4, "float32"), np.array([[4.0, 6.0]] * 4, "float32")
    keep_a, keep_b = np.array([[1], [1], [0], [0]], "float32"), np.array([[1], [0], [1], [0]], "float32")
    got = np.asarray(PresenceSwitch(2)([fused, a, b, keep_a, keep_b]))
    # both present: fused; only a: a's; only b: b's; none: zeros (no evidence)
    np.testing.assert_allclose(got, [[1, 0], [0, 2], [4, 6], [0, 0]])


def test_fallback_heads_are_built_by_default_and_serve_missing_rows(two_inputs):
    model, hp = _build(two_inputs())
    assert hp.get("fallback") and model.get_layer("fallback") is not None
    assert {"fallback_review", "fallback_meta"} <= {layer.name for layer in model.layers}
    model, hp = _build(two_inputs(space={"fallback": False}))
    assert not hp.get("fallback") and "fallback" not in {layer.name for layer in model.layers}


def test_fallback_saves_and_loads(tmp_path):
    import keras

    from mmauto.layers import PresenceSwitch

    xs = [keras.Input((2,)) for _ in range(3)] + [keras.Input((1,)) for _ in range(2)]
    model = keras.Model(xs, PresenceSwitch(2)(xs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    vals = [np.ones((2, 2), "float32")] * 3 + [np.array([[1], [0]], "float32")] * 2
    np.testing.assert_allclose(np.asarray(model(vals)), np.asarray(loaded(vals)))


def test_modality_dropout_drops_inputs_independently(two_inputs):
    """Each input's gate draws its own numbers: rows with exactly one input dropped exist (the
    rows that train the fallback heads and teach the model to answer from one input)."""
    import keras

    model, _ = _build(two_inputs(train={"modality_dropout": 0.5}))
    gates = [model.get_layer(f"{n}_missing") for n in ("review", "meta")]
    pooled, present = np.ones((256, 8), "float32"), np.ones((256,), "float32")
    keeps = [np.asarray(g(keras.ops.convert_to_tensor(pooled), present, training=True)[1]).reshape(-1) for g in gates]
    one = (keeps[0] != keeps[1]).mean()
    assert 0.3 < one < 0.7  # about 2 * 0.5 * 0.5 of the rows
