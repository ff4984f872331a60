"""Train-time augmentation: the ops, the training pipeline, the searched setting."""

import json

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
import yaml

from mmauto.config.manifest import load_manifest
from mmauto.data.checks import load_splits
from mmauto.data.pipeline import Preprocessing
from mmauto.errors import ManifestError
from mmauto.modalities import _augment as aug

SEED = tf.constant([3, 7], tf.int64)


def test_shift_moves_whole_pixels_within_a_tenth():
    x = np.zeros((32, 28, 28, 1), "float32")
    x[:, 14, 14, 0] = 255.0
    out = aug.shift(tf.constant(x), SEED, 0.1).numpy()
    assert out.shape == x.shape
    moves = set()
    for img in out[..., 0]:
        (r,), (c,) = np.nonzero(img == 255.0)
        assert abs(r - 14) <= 2 and abs(c - 14) <= 2 and (img > 0).sum() == 1
        moves.add((r - 14, c - 14))
    assert len(moves) > 5  # drawn per image
    np.testing.assert_array_equal(out, aug.shift(tf.constant(x), SEED, 0.1).numpy())
    assert not np.array_equal(out, aug.shift(tf.constant(x), tf.constant([4, 7], tf.int64), 0.1).numpy())


def test_erase_zeroes_one_rectangle_in_the_chosen_images():
    x = np.full((64, 20, 20, 3), 7.0, "float32")
    out = aug.erase(tf.constant(x), SEED, 0.5, probability=0.5).numpy()
    erased = 0
    for img in out:
        zero = (img == 0).all(axis=-1)
        if not zero.any():
            continue
        erased += 1
        rows, cols = np.nonzero(zero.any(axis=1))[0], np.nonzero(zero.any(axis=0))[0]
        assert len(rows) <= 10 and len(cols) <= 10
        assert zero[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all() and zero.sum() == len(rows) * len(cols)
    assert 16 <= erased <= 48
    np.testing.assert_array_equal(aug.erase(tf.constant(x), SEED, 0.5, probability=0.0).numpy(), x)


def test_spec_augment_masks_with_the_examples_mean():
    x = np.random.default_rng(0).normal(size=(16, 50, 40)).astype("float32") + np.arange(16, dtype="float32")[:, None, None]
    out = aug.spec_augment(tf.constant(x), SEED, 0.0, 0.2, 0.2).numpy()
    assert out.shape == x.shape
    for a, b in zip(x, out):
        changed = a != b
        assert changed.any() and np.allclose(b[changed], a.mean(), atol=1e-5)
        frames, bins = np.nonzero(changed.all(axis=1))[0], np.nonzero(changed.all(axis=0))[0]
        assert len(frames) <= 10 and len(bins) <= 8  # one band each, at most a fifth


def test_a_video_clip_moves_as_one_and_a_missing_clip_stays_missing():
    from mmauto.modalities.video import Video

    x = np.random.default_rng(0).integers(1, 255, size=(8, 3, 16, 16, 3)).astype("uint8")
    x[7] = 0
    out = Video().augment(None, {"frames": tf.constant(x)}, SEED)["frames"].numpy()
    assert out.dtype == np.uint8 and out.shape == x.shape and (out[7] == 0).all()
    assert sum(not np.array_equal(a, b) for a, b in zip(out, x)) >= 4
    for clip, orig in zip(out[:7], x[:7]):
        # One shift for the clip: each frame's shifted copy is found at the same offset.
        offsets = [{(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
                    if np.array_equal(np.roll(orig[i], (dy, dx), (0, 1))[2:-2, 2:-2][clip[i, 2:-2, 2:-2] != 0],
                                      clip[i, 2:-2, 2:-2][clip[i, 2:-2, 2:-2] != 0])} for i in range(3)]
        erased = (clip == 0).all(axis=-1)
        assert (erased == erased[:1]).all()  # the same rectangle in every frame
        assert offsets[0] and offsets[0] == offsets[1] == offsets[2]


def _prep(demo, drop_photo_row=None):
    import pandas as pd

    if drop_photo_row is not None:
        frame = pd.read_csv(demo / "train.csv")
        frame["image"] = frame["image"].astype(object)
        frame.loc[drop_photo_row, "image"] = None
        frame.to_csv(demo / "train.csv", index=False)
    m = load_manifest(demo / "manifest.yaml")
    splits = load_splits(m)
    prep = Preprocessing.fit(m, splits)
    return prep, prep.decoded_dataset(splits["train"].frame, splits["train"].root)


ENCODERS = {"photo": "cnn", "review": "tfidf", "voice": "cnn", "meta": "mlp"}


def _first(prep, ds, **kw):
    x, y = next(iter(prep.batches(ds, 64, ENCODERS, **kw)))
    return {k: v.numpy() for k, v in x.items()}, y.numpy()


def test_training_batches_augment_only_the_named_inputs_reproducibly(demo_copy):
    prep, ds = _prep(demo_copy, drop_photo_row=[0, 1, 2, 3, 4, 5])
    plain, y0 = _first(prep, ds, shuffle_seed=1)
    augmented, y1 = _first(prep, ds, shuffle_seed=1, augment=["photo", "voice"])
    again, _ = _first(prep, ds, shuffle_seed=1, augment=["photo", "voice"])
    np.testing.assert_array_equal(y0, y1)  # same rows, same order
    assert set(plain) == set(augmented)
    for key in plain:
        changed = not np.array_equal(plain[key], augmented[key])
        assert changed == (key in ("photo__image", "voice__spectrogram")), key
        np.testing.assert_array_equal(augmented[key], again[key])
    assert augmented["photo__image"].shape == plain["photo__image"].shape
    missing = augmented["photo__present"] == 0
    assert missing.any() and (augmented["photo__image"][missing] == 0).all()  # still reads as missing
    # Evaluation batches (no shuffle seed) are never augmented.
    val, _ = _first(prep, ds)
    val_aug, _ = _first(prep, ds, augment=["photo", "voice"])
    np.testing.assert_array_equal(val["photo__image"], val_aug["photo__image"])


def _hm(demo, inputs=None, **train):
    from mmauto.model.hypermodel import MultimodalHyperModel

    data = yaml.safe_load((demo / "manifest.yaml").read_text())
    if inputs is not None:
        data["inputs"] = {k: v for k, v in data["inputs"].items() if k in inputs}
    data["train"] = {**data.get("train", {}), **train}
    (demo / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    prep, _ = _prep(demo)
    return MultimodalHyperModel(prep)


def test_augment_is_searched_for_media_inputs_only(demo_copy, tmp_path):
    hp = kt.HyperParameters()
    assert _hm(demo_copy).augment(hp) is False  # searched, off first
    assert hp.get_config()["space"] and [h.values for h in hp.space if h.name == "augment"] == [[False, True]]
    hp = kt.HyperParameters()
    assert _hm(demo_copy, augment=True).augment(hp) is True and hp.values["augment"] is True
    hp = kt.HyperParameters()
    assert _hm(demo_copy, inputs=["review", "meta"]).augment(hp) is False and "augment" not in hp.values


def test_augment_setting_is_checked(demo_copy):
    data = yaml.safe_load((demo_copy / "manifest.yaml").read_text())
    data["search"] = {**data.get("search", {}), "space": {"augment": [True, "sometimes"]}}
    (demo_copy / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match="augment"):
        load_manifest(demo_copy / "manifest.yaml")


def test_fit_with_augmentation_exports_the_plain_graph(fitted):
    """The session's CLI fit trains with `train.augment: true` (conftest); its SavedModel
    matched `predict` (test_e2e) and holds no random op."""
    run, _, _ = fitted
    card = json.loads((run / "mmauto.json").read_text())
    assert card["hyperparameters"]["augment"] is True
    rows = [r for r in json.loads((run / "leaderboard.json").read_text()) if r["trial"] != "ensemble"]
    assert rows and all(r["augment"] is True for r in rows)
    assert "augment" in (run / "leaderboard.csv").read_text().splitlines()[0].split(",")
    graph = tf.saved_model.load(str(run / "model")).signatures["serving_default"].graph.as_graph_def()
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert not {op for op in ops if "Random" in op or "ImageProjectiveTransform" in op}
