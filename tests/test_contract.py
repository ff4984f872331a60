"""One contract test over every registered modality, encoder and fusion: a new component is
picked up by its registry and checked here with no test of its own needed."""

from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
import yaml
from hub_presets import tiny_bert, tiny_vit

from mmauto.config.manifest import SpaceSpec, load_manifest
from mmauto.data.checks import load_splits
from mmauto.data.keys import present_key
from mmauto.data.pipeline import Preprocessing
from mmauto.encoders import ENCODERS, Encoded
from mmauto.fusion import FUSIONS
from mmauto.modalities.base import cell_is_missing
from mmauto.registry import MODALITIES


def _fit_with_every_encoder(demo: Path, tmp: Path, presets: dict) -> Preprocessing:
    """A demo manifest with every registered encoder as a candidate of its modality."""
    data = yaml.safe_load((demo / "manifest.yaml").read_text())
    data["data"]["train"] = str(demo / data["data"]["train"])
    for _name, body in data["inputs"].items():
        types = [n for n, cls in ENCODERS.items() if body["modality"] in cls.modalities]
        body["encoder"] = {"type": types}
        if "keras_hub" in types:
            body["encoder"]["preset"] = str(presets[body["modality"]])
    (tmp / f"{demo.name}.yaml").write_text(yaml.safe_dump(data))
    m = load_manifest(tmp / f"{demo.name}.yaml")
    return Preprocessing.fit(m, load_splits(m))


@pytest.fixture(scope="module")
def preps(demo_dir, demo_extra_dir, tmp_path_factory):
    """The demo manifests (the default four modalities, and the others), fitted."""
    tmp = tmp_path_factory.mktemp("contract")
    presets = {"image": tiny_vit(tmp / "vit"), "text": tiny_bert(tmp / "bert")}
    return [_fit_with_every_encoder(d, tmp, presets) for d in (demo_dir, demo_extra_dir)]


def random_input(shape, dtype, batch=3):
    if dtype.startswith("int"):
        return np.random.randint(0, 2, size=(batch, *shape)).astype(dtype)  # valid for every id kind
    scale = 255 if len(shape) == 3 or dtype == "uint8" else 1  # pixels
    return (np.random.rand(batch, *shape) * scale).astype(dtype)


def encoder_cases():
    return [(n, m) for n, cls in ENCODERS.items() for m in cls.modalities]


def input_of(preps, modality):
    """The first demo input of the modality: (fitted preprocessing, input name), or None."""
    for prep in preps:
        for name, spec in prep.manifest.inputs.items():
            if spec.modality == modality:
                return prep, name
    return None


@pytest.mark.parametrize("etype,modality", encoder_cases(), ids=lambda x: str(x))
def test_encoder_contract(preps, etype, modality):
    found = input_of(preps, modality)
    if found is None:
        pytest.skip(f"no demo input of modality {modality}")
    prep, name = found
    enc = prep.encoder(name, etype)
    feeds, arrays = {}, {}
    for feat, (key, shape, dtype) in prep.encoder_inputs(name, etype).items():
        assert key.startswith(f"{name}__"), "feature keys are scoped by the input's name"
        feeds[feat] = keras.Input(shape, dtype=dtype, name=key)
        arrays[key] = random_input(shape, dtype)
    out = enc.build(kt.HyperParameters(), feeds, name)
    assert isinstance(out, Encoded)
    extra = {"tokens": out.tokens} if out.tokens is not None else {}
    if out.mask is not None:
        assert out.tokens is not None, "a mask belongs to a token sequence"
        extra["mask"] = out.mask
    model = keras.Model({feeds[f].name: feeds[f] for f in feeds}, {"pooled": out.pooled, **extra})
    for layer in model.layers:
        assert layer.name.startswith(name) or isinstance(layer, keras.layers.InputLayer), f"layer {layer.name} is not scoped by '{name}'"
    got = model({k: v for k, v in arrays.items()}, training=False)
    assert len(got["pooled"].shape) == 2 and got["pooled"].shape[0] == 3
    if "tokens" in got:
        assert len(got["tokens"].shape) == 3 and got["tokens"].shape[0] == 3
    if "mask" in got:
        assert tuple(got["mask"].shape) == tuple(got["tokens"].shape[:2])


def fusion_cases():
    cases = []
    for name, cls in FUSIONS.items():
        for n in (1, 2, 3):
            if n >= cls.min_inputs:
                cases.append((name, n))
    return cases


@pytest.mark.parametrize("fname,n", fusion_cases(), ids=lambda x: str(x))
def test_fusion_contract(fname, n):
    """Every fusion works with any number of inputs (from its minimum), with and without tokens."""
    width = 8
    inputs, encoded = [], {}
    for i in range(n):
        pooled = keras.Input((width,), name=f"in{i}_pooled")
        inputs.append(pooled)
        tokens = None
        if i % 2 == 0:  # alternate inputs with and without token sequences
            tokens = keras.Input((i + 2, width), name=f"in{i}_tokens")
            inputs.append(tokens)
        encoded[f"in{i}"] = Encoded(pooled, tokens)
    fusion = FUSIONS.get(fname)(SpaceSpec())
    out = fusion.build(kt.HyperParameters(), encoded, width, 0.1)
    model = keras.Model(inputs, out)
    got = model([np.random.rand(4, *t.shape[1:]).astype("float32") for t in inputs])
    assert got.shape[0] == 4 and len(got.shape) == 2, "a fusion returns one fused vector per row"


@pytest.mark.parametrize("fname", [n for n, c in FUSIONS.items() if c.tokens])
def test_fusions_ignore_padded_tokens(fname):
    """What sits at a masked (padded) token position never changes a token fusion's output."""
    width, steps = 8, 5
    pooled = [keras.Input((width,), name=f"in{i}_pooled") for i in range(2)]
    tokens = [keras.Input((steps, width), name=f"in{i}_tokens") for i in range(2)]
    masks = [keras.Input((steps,), name=f"in{i}_mask") for i in range(2)]
    encoded = {f"in{i}": Encoded(pooled[i], tokens[i], masks[i]) for i in range(2)}
    fusion = FUSIONS.get(fname)(SpaceSpec())
    out = fusion.build(kt.HyperParameters(), encoded, width, 0.0)
    model = keras.Model([*pooled, *tokens, *masks], out)
    rng = np.random.default_rng(0)
    p = [rng.random((4, width), dtype="float32") for _ in range(2)]
    t = [rng.random((4, steps, width), dtype="float32") for _ in range(2)]
    m = [np.ones((4, steps), "float32") for _ in range(2)]
    m[0][:, 3:] = 0  # the last two tokens of input 0 are padding
    m[1][0, 1:] = 0  # a row with one real token
    noisy = [x.copy() for x in t]
    noisy[0][:, 3:] += 10.0 * rng.random((4, 2, width), dtype="float32")
    noisy[1][0, 1:] -= 5.0
    a = keras.ops.convert_to_numpy(model([*p, *t, *m]))
    b = keras.ops.convert_to_numpy(model([*p, *noisy, *m]))
    np.testing.assert_allclose(a, b, atol=1e-5)
    # and the mask is what hides them: the same change without it moves the output
    c = keras.ops.convert_to_numpy(model([*p, *noisy, *[np.ones_like(x) for x in m]]))
    assert not np.allclose(a, c, atol=1e-3)


def test_cross_attention_combinations():
    from mmauto.fusion.cross_attention import combos

    assert combos(["V", "T"]) == [("V", "T")]
    assert combos(["V", "T", "A"]) == [("V", "T"), ("V", "A"), ("T", "A"), ("V", "T", "A")]


def test_the_demo_generates_every_registered_modality():
    """The demo (and so this contract test) has data for each modality the registry lists."""
    from mmauto.data.demo import ALL_MODALITIES
    from mmauto.registry import MODALITIES

    assert sorted(ALL_MODALITIES) == MODALITIES.names()


@pytest.mark.parametrize("modality", MODALITIES.names())
def test_modality_contract(preps, modality):
    """Serving inputs are scoped by the input's name and each has a missing value; decoded rows
    match the declared feature spec; a row sent with the missing values decodes as absent."""
    from mmauto.evaluation.predict import blank

    prep, name = input_of(preps, modality)
    mod, opts = prep.modality(name), prep.manifest.inputs[name].options
    serving = mod.serving_spec(name, opts)
    assert serving and all(k == name or k.startswith(f"{name}_") or k in mod.columns(opts) for k in serving)
    assert set(mod.missing_values(name, opts)) == set(serving)
    assert set(mod.example(name, opts)) <= set(serving)
    splits = load_splits(prep.manifest)
    sp = splits["train"]
    rows = sp.frame[[not any(cell_is_missing(v) for v in r) for r in sp.frame[mod.columns(opts)].values]].iloc[:2]
    spec = {k: v for k, v in prep.decoded_spec().items() if k.startswith(f"{name}__")}
    for frame, present in ((rows, 1.0), (blank(prep, rows, [name]), 0.0)):
        for row in prep.decoded_dataset(frame, sp.root, with_targets=False).take(2):
            for key, (shape, _) in spec.items():
                assert tuple(row[key].shape) == tuple(shape), key
            assert float(row[present_key(name)]) == present
    # Train-time augmentation keeps the features' shapes and dtypes, and changes them only
    # where the modality says it augments.
    batch = next(iter(prep.decoded_dataset(rows, sp.root, with_targets=False).batch(2)))
    out = prep.augment(batch, tf.constant([1, 2], tf.int64), [name])
    for key, (shape, dtype) in spec.items():
        assert tuple(out[key].shape) == (2, *shape) and out[key].dtype.name == dtype, key
    changed = any(not np.array_equal(out[k].numpy(), batch[k].numpy()) for k in spec if k != present_key(name))
    assert changed == mod.augments


def _two_input_model(fname, width=8, values=None, steps=3):
    """A fusion over two inputs (one with tokens, one pooled only), with some hps pinned."""
    inputs = [keras.Input((width,), name="a_pooled"), keras.Input((steps, width), name="a_tokens"), keras.Input((width,), name="b_pooled")]
    encoded = {"a": Encoded(inputs[0], inputs[1]), "b": Encoded(inputs[2], None)}
    hp = kt.HyperParameters()
    for k, v in (values or {}).items():
        hp.Fixed(k, v)
    fusion = FUSIONS.get(fname)(SpaceSpec())
    out = fusion.build(hp, encoded, width, 0.0)
    return keras.Model(inputs, out)


@pytest.mark.parametrize("fname", [n for n, _ in FUSIONS.items()])
def test_fusion_saves_and_loads(fname, tmp_path):
    """Every fusion's layers are serialisable: a saved model loads back with the same outputs."""
    model = _two_input_model(fname)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)  # a closure does not reload
    rng = np.random.default_rng(0)
    x = [rng.random((2, *t.shape[1:]), dtype="float32") for t in model.inputs]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=False)
    for a, b in zip(keras.tree.flatten(model(x)), keras.tree.flatten(loaded(x))):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6)


def test_pairwise_features():
    """[a * b, |a - b|, cos(a, b)], the same for (a, b) and (b, a)."""
    from mmauto.fusion.pairwise import PairFeatures

    a = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 0.0]], "float32")
    b = np.array([[2.0, -1.0, 1.0], [2.0, 0.0, 0.0]], "float32")
    got = keras.ops.convert_to_numpy(PairFeatures()(a, b))
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    np.testing.assert_allclose(got, np.concatenate([a * b, np.abs(a - b), cos[:, None]], -1), atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(PairFeatures()(b, a)), got, atol=1e-6)


def test_pairwise_symmetric_in_its_inputs():
    """Without the raw vectors, swapping the two inputs leaves the output unchanged (whether or
    not they pass the shared projection); appending the raw vectors tells them apart."""
    width = 8

    def swap_gap(values):
        inputs = [keras.Input((width,), name=f"in{i}") for i in range(2)]
        encoded = {f"in{i}": Encoded(x, None) for i, x in enumerate(inputs)}
        hp = kt.HyperParameters()
        for k, v in values.items():
            hp.Fixed(k, v)
        model = keras.Model(inputs, FUSIONS.get("pairwise")(SpaceSpec()).build(hp, encoded, width, 0.0))
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(2, 4, width)).astype("float32")
        return np.abs(keras.ops.convert_to_numpy(model([a, b])) - keras.ops.convert_to_numpy(model([b, a]))).max()

    for project in ("none", "shared"):
        for depth in (0, 1):
            assert swap_gap({"pairwise/project": project, "pairwise/vectors": False, "pairwise/depth": depth}) < 1e-5
        assert swap_gap({"pairwise/project": project, "pairwise/vectors": True, "pairwise/depth": 1}) > 1e-3


def test_tensor_product_terms():
    """The flattened outer product of [x1; 1] and [x2; 1] holds x1, x2, their products and 1."""
    from mmauto.fusion.tensor import TensorProduct, product_dims

    x1 = np.array([[1.0, 2.0]], "float32")
    x2 = np.array([[3.0, 4.0, 5.0]], "float32")
    got = keras.ops.convert_to_numpy(TensorProduct()([x1, x2])).reshape(3, 4)
    np.testing.assert_allclose(got, np.outer([1.0, 2.0, 1.0], [3.0, 4.0, 5.0, 1.0]))
    assert product_dims(16, 2) == 16 and (product_dims(16, 4) + 1) ** 4 <= 4096


def test_low_rank_product_formula():
    """sum_r w_r prod_m ([z_m; 1] W_m^r) + b, checked against numpy."""
    from mmauto.fusion.low_rank import LowRankProduct

    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(3, 2)).astype("float32")]
    layer = LowRankProduct(5, 3)
    got = keras.ops.convert_to_numpy(layer(xs))
    f = [np.einsum("bd,rdu->bru", np.concatenate([x, np.ones((3, 1), "float32")], -1), keras.ops.convert_to_numpy(w))
         for x, w in zip(xs, layer.factors)]
    want = (f[0] * f[1] * keras.ops.convert_to_numpy(layer.rank_weights)[None]).sum(1) + keras.ops.convert_to_numpy(layer.bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
