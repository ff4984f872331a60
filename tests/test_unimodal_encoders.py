"""`unimodal_encoders` (model/hypermodel.py): each encoder learns from its own input head only;
the fusion and the fused head learn on top of the encoders' outputs without training them."""

import keras_tuner as kt
import numpy as np
import pytest
import yaml


@pytest.fixture(scope="module")
def two_inputs(demo_dir, tmp_path_factory):
    """The demo (a 3-class label) cut to its text and table inputs, with `search.space` added:
    a function of the space giving (hypermodel, training frame, data folder)."""
    from mmauto.config.manifest import load_manifest
    from mmauto.data.checks import load_splits
    from mmauto.data.pipeline import Preprocessing
    from mmauto.model.hypermodel import MultimodalHyperModel

    tmp = tmp_path_factory.mktemp("unimodal")

    def write(space: dict):
        data = yaml.safe_load((demo_dir / "manifest.yaml").read_text())
        data["data"]["train"] = str(demo_dir / data["data"]["train"])
        data["inputs"] = {k: v for k, v in data["inputs"].items() if k in ("review", "meta")}
        data["search"] = {"space": {"fusion": "concat", "width": 8, **space}}
        path = tmp / "m.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        manifest = load_manifest(path)
        splits = load_splits(manifest)
        return MultimodalHyperModel(Preprocessing.fit(manifest, splits)), splits["train"].frame, demo_dir

    return write


def _gradients(hm, frame, root, values: dict) -> dict:
    """Per model block (the fused head's, each input's own head's): whether its loss on one
    batch reaches each input's encoder weights (`<input>_to_width`) and the fusion's."""
    import keras
    import tensorflow as tf

    hp = kt.HyperParameters()
    hp.values.update(values)
    model = hm.build(hp)
    ds = hm.prep.batches(hm.prep.decoded_dataset(frame.head(16), root), 16, hm.encoders(hp), hm.input_keys(hp))
    x, y = next(iter(ds))
    units = hm.prep.head.main_units
    targets = {"review": model.get_layer("review_to_width").kernel, "meta": model.get_layer("meta_to_width").kernel,
               "fusion": model.get_layer("head_logits").kernel}
    out = {}
    for block, name in enumerate(["fused", *hm.prep.head.inputs]):
        with tf.GradientTape() as tape:
            p = model(x, training=True)[:, block * units : (block + 1) * units]
            loss = keras.losses.sparse_categorical_crossentropy(y, p)
        grads = tape.gradient(loss, list(targets.values()))
        out[name] = {k: g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for k, g in zip(targets, grads)}
    return out


def test_the_fused_head_trains_no_encoder(two_inputs):
    # No modality dropout: a row with an input dropped is answered in the fused block by the
    # present inputs' own heads (layers.PresenceSwitch), which do train their encoders.
    hm, frame, root = two_inputs({"unimodal_encoders": True, "modality_dropout": 0.0})
    got = _gradients(hm, frame, root, {})
    assert got["fused"] == {"review": False, "meta": False, "fusion": True}
    assert got["review"] == {"review": True, "meta": False, "fusion": False}
    assert got["meta"] == {"review": False, "meta": True, "fusion": False}


def test_searched_off_first_and_the_fused_head_trains_the_encoders(two_inputs):
    hm, frame, root = two_inputs({})
    hp = kt.HyperParameters()
    hm.build(hp)
    space = {h.name: h for h in hp.space}
    # keras-tuner keeps a Choice of booleans as 0 / 1
    assert [bool(v) for v in space["unimodal_encoders"].values] == [False, True] and not hp.values["unimodal_encoders"]
    assert _gradients(hm, frame, root, {})["fused"] == {"review": True, "meta": True, "fusion": True}


def test_without_input_heads_there_is_nothing_to_train_the_encoders_alone(two_inputs):
    """With `input_heads: 0` the encoders would learn from nothing: the setting is not even
    in the space, and the fused head trains them."""
    hm, frame, root = two_inputs({"unimodal_encoders": True, "input_heads": 0})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert "unimodal_encoders" not in hp.values
    assert not any(layer.name.endswith("_to_fusion") for layer in model.layers)


def test_saved_and_served_unchanged(two_inputs, tmp_path):
    """The gradient stop is the identity at inference: the model saves, loads and answers the same."""
    import keras

    hm, frame, root = two_inputs({"unimodal_encoders": True})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    x, _ = next(iter(hm.prep.batches(hm.prep.decoded_dataset(frame.head(8), root), 8, hm.encoders(hp), hm.input_keys(hp))))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(loaded(x)), atol=1e-6)


def test_the_cnn_entry_sets_it_for_a_multiclass_label_only(two_inputs):
    """The built-in image/audio CNN entry turns it on, at the least modality dropout searched,
    for a multiclass label (where the bench measured it), in values a real space allows."""
    from mmauto.search import portfolio

    inputs = {"photo": "image", "voice": "audio"}
    wanted = {head: portfolio.entries_for(inputs, head=head)[0][1] for head in ("multiclass", "binary")}
    assert wanted["multiclass"]["unimodal_encoders"] is True and wanted["multiclass"]["modality_dropout"] == 0.05
    assert "unimodal_encoders" not in wanted["binary"]
    hm, _, _ = two_inputs({})
    assert hm.prep.head.name == "multiclass"
    hp = kt.HyperParameters()
    hm.build(hp)
    space = {h.name: h for h in hp.space}
    assert all(portfolio.valid(space[k], wanted["multiclass"][k]) for k in ("unimodal_encoders", "modality_dropout"))
