"""`task: zero_shot`: a tiny CLIP preset built in code, loaded from its folder as users do; the
fit trains nothing, exports a raw-input SavedModel, and its answers are those of keras-hub's
own CLIP forward pass on the class prompts."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli
from hub_presets import tiny_clip, tiny_siglip, tiny_vit

SERVE = textwrap.dedent(
    """
    import sys, json, pandas as pd, tensorflow as tf
    from pathlib import Path
    run, root = Path(sys.argv[1]), Path(sys.argv[2])
    f = pd.read_csv(root / "images.csv")
    out = tf.saved_model.load(str(run / "model")).signatures["serving_default"](photo=tf.constant([(root / p).read_bytes() for p in f["image"]]))
    assert not {"keras_hub", "mmauto", "tensorflow_text", "keras_nlp"} & set(sys.modules), sorted(m for m in sys.modules if "keras" in m)
    print(json.dumps(out["probabilities"].numpy().tolist()))
    """
)
SIZE = 32
CLASSES = ["red", "blue", "green"]
TEMPLATE = "the {} thing."  # not the default: a prompt built another way gives other answers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A CLIP and a ViT preset folder, and a labelled table of 12 PNG images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("zs")
    clip = tiny_clip(root / "clip", size=SIZE)
    siglip = tiny_siglip(root / "siglip", size=SIZE)
    vit = tiny_vit(root / "vit", size=SIZE)
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    rows = []
    for i in range(12):
        label = CLASSES[i % 3]
        img = rng.integers(0, 60, (SIZE, SIZE, 3))
        img[..., i % 3] += 150 + 10 * (i // 3)
        if i % 4 == 0:  # some wide images: the decoder resizes them in the graph
            img = np.repeat(img, 2, axis=1)
        Image.fromarray(img.astype("uint8")).save(root / "images" / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"images/{i}.png", "colour": label})
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    return {"root": root, "clip": clip, "siglip": siglip, "vit": vit, "table": root / "images.csv"}


def manifest(world, path, **changes):
    data = {
        "task": "zero_shot",
        "data": {"train": str(world["table"])},
        "target": "colour",
        "inputs": {"photo": {"modality": "image", "column": "image", "size": [SIZE, SIZE],
                             "encoder": {"preset": str(world["clip"])}}},
        "zero_shot": {"classes": CLASSES, "template": TEMPLATE},
    }
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def zs_run(world):
    m = manifest(world, world["root"] / "m.yaml")
    r = run_cli("fit", m, "--out", world["root"] / "run", "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return world["root"] / "run", json.loads(r.stdout)


def keras_hub_probabilities(world, frame, family="clip"):
    """softmax(exp(logit_scale) * cos(image, prompt) [+ bias]) through keras-hub's own backbone
    forward (its CLIPHead or SigLIPHead), with the prompts tokenised by its preprocessor."""
    import keras_hub
    import tensorflow as tf

    backbone, preprocessor = {"clip": (keras_hub.models.CLIPBackbone, keras_hub.models.CLIPPreprocessor),
                              "siglip": (keras_hub.models.SigLIPBackbone, keras_hub.models.SigLIPPreprocessor)}[family]
    bb = backbone.from_preset(str(world[family]))
    pre = preprocessor.from_preset(str(world[family]), sequence_length=16)
    images = []
    for p in frame["image"]:
        img = tf.io.decode_png((world["root"] / p).read_bytes(), channels=3)
        images.append(tf.image.resize(tf.cast(img, tf.float32), (SIZE, SIZE), antialias=True))
    x = pre({"prompts": tf.constant([TEMPLATE.replace("{}", c) for c in CLASSES]), "images": tf.stack(images)})
    logits = np.asarray(bb({"images": x["images"], "token_ids": x["token_ids"]})["vision_logits"], "float64")
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_zero_shot_fit_exports_clip_answers(zs_run, world, tmp_path):
    run, summary = zs_run
    assert summary["trials"] == 0 and summary["parity"]["rows"] == 12 and summary["parity"]["max_abs_diff"] <= 1e-4
    assert summary["zero_shot"]["prompts"] == ["the red thing.", "the blue thing.", "the green thing."]
    frame = pd.read_csv(world["table"])
    expected = keras_hub_probabilities(world, frame)
    assert expected.std(axis=0).max() > 1e-3  # the images are told apart: a constant answer would not test much

    p = run_cli("predict", run, world["table"], "--out", tmp_path / "p.csv")
    assert p.returncode == 0, p.stderr[-3000:]
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["id", "prediction"] + [f"prob_{c}" for c in CLASSES]
    got = pred[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert pred["prediction"].tolist() == [CLASSES[i] for i in expected.argmax(axis=1)]

    # The SavedModel alone (TensorFlow only: no mmauto, keras-hub or tensorflow-text) answers the same from raw bytes.
    r = subprocess.run([sys.executable, "-c", SERVE, str(run), str(world["root"])], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_allclose(np.array(json.loads(r.stdout.strip().splitlines()[-1])), got, atol=1e-5)
    import tensorflow as tf

    sig = tf.saved_model.load(str(run / "model")).signatures["serving_default"]
    out = sig(photo=tf.constant([(world["root"] / x).read_bytes() for x in frame["image"]]))
    np.testing.assert_allclose(out["probabilities"].numpy(), got, atol=1e-5)
    empty = sig(photo=tf.constant([b""]))["probabilities"].numpy()  # a missing image: no evidence
    np.testing.assert_allclose(empty, np.full((1, 3), 1 / 3), atol=1e-6)

    # Evaluation is the multiclass classifier's, on the labelled table.
    metrics = json.loads((run / "metrics.json").read_text())["train"]
    truth = frame["colour"].map(CLASSES.index).to_numpy()
    assert metrics["rows"] == 12 and metrics["accuracy"] == pytest.approx(float((expected.argmax(axis=1) == truth).mean()))
    assert set(metrics) >= {"macro_f1", "log_loss", "confusion_matrix", "per_class"}
    card = json.loads((run / "mmauto.json").read_text())
    assert card["task"] == "zero_shot" and card["labels"] == CLASSES and card["op_libraries"] == []
    e = run_cli("evaluate", run, world["table"], "--json")
    assert e.returncode == 0, e.stderr[-3000:]
    assert json.loads(e.stdout)["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])

    # serving_embed: the image tower's embedding, L2-normalised (the projection's 8 dimensions).
    b = run_cli("embed", run, world["table"], "--out", tmp_path / "e.parquet")
    assert b.returncode == 0, b.stderr[-3000:]
    emb = np.stack(pd.read_parquet(tmp_path / "e.parquet")["embedding_photo"].to_numpy())
    assert emb.shape == (12, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_siglip_preset(world, tmp_path):
    inputs = {"photo": {"modality": "image", "column": "image", "size": [SIZE, SIZE], "encoder": {"preset": str(world["siglip"])}}}
    m = manifest(world, tmp_path / "m.yaml", inputs=inputs, target=None)
    r = run_cli("fit", m, "--out", tmp_path / "run", "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["zero_shot"]["family"] == "siglip" and summary["metrics"] == {}  # no target: nothing scored
    p = run_cli("predict", tmp_path / "run", world["table"], "--out", tmp_path / "p.csv")
    assert p.returncode == 0, p.stderr[-3000:]
    got = pd.read_csv(tmp_path / "p.csv")[[f"prob_{c}" for c in CLASSES]].to_numpy()
    expected = keras_hub_probabilities(world, pd.read_csv(world["table"]), "siglip")
    assert expected.std(axis=0).max() > 1e-3
    np.testing.assert_allclose(got, expected, atol=1e-4)
    e = run_cli("evaluate", tmp_path / "run", world["table"], timeout=300)
    assert e.returncode == 2 and "names no `target` column" in e.stderr and "Traceback" not in e.stderr, e.stderr[-2000:]


TEXTS = ["the red thing", "A RED photo.", "blue", "the Blue cat", "green dog", "a photo of a green thing", "red red red", "dog"]


def keras_hub_text_probabilities(world, texts, family):
    """Each text's text-tower embedding against the prompts', through keras-hub's own
    preprocessor, text tower and head (its logit scale, and SigLIP's bias)."""
    import keras_hub
    import tensorflow as tf

    backbone, preprocessor = {"clip": (keras_hub.models.CLIPBackbone, keras_hub.models.CLIPPreprocessor),
                              "siglip": (keras_hub.models.SigLIPBackbone, keras_hub.models.SigLIPPreprocessor)}[family]
    bb = backbone.from_preset(str(world[family]))
    pre = preprocessor.from_preset(str(world[family]), sequence_length=16)
    pre.image_converter = None

    def embed(strings):
        return bb.get_text_embeddings(pre({"prompts": tf.constant(strings), "images": None})["token_ids"])

    head = bb.get_layer("clip_head" if family == "clip" else "siglip_head")
    logits = np.asarray(head(embed(texts), embed([TEMPLATE.replace("{}", c) for c in CLASSES]))[0], "float64")
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_text_input(world, tmp_path, family):
    pd.DataFrame({"review": TEXTS, "colour": ["red", "red", "blue", "blue", "green", "green", "red", "blue"]}).to_csv(tmp_path / "t.csv", index=False)
    inputs = {"review": {"modality": "text", "column": "review", "encoder": {"preset": str(world[family])}}}
    m = manifest(world, tmp_path / "m.yaml", inputs=inputs, data={"train": str(tmp_path / "t.csv")})
    r = run_cli("fit", m, "--out", tmp_path / "run", "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["parity"]["rows"] == len(TEXTS)
    expected = keras_hub_text_probabilities(world, TEXTS, family)
    assert expected.std(axis=0).max() > 1e-3
    p = run_cli("predict", tmp_path / "run", tmp_path / "t.csv", "--out", tmp_path / "p.csv")
    assert p.returncode == 0, p.stderr[-3000:]
    got = pd.read_csv(tmp_path / "p.csv")[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    card = json.loads((tmp_path / "run" / "mmauto.json").read_text())
    assert card["op_libraries"] == ["tensorflow-text"]  # the rows are tokenised in the graph
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    truth = pd.read_csv(tmp_path / "t.csv")["colour"].map(CLASSES.index).to_numpy()
    assert metrics["accuracy"] == pytest.approx(float((expected.argmax(axis=1) == truth).mean()))

    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    sig = tf.saved_model.load(str(tmp_path / "run" / "model")).signatures["serving_default"]
    np.testing.assert_allclose(sig(review=tf.constant(TEXTS))["probabilities"].numpy(), got, atol=1e-5)
    np.testing.assert_allclose(sig(review=tf.constant([""]))["probabilities"].numpy(), np.full((1, 3), 1 / 3), atol=1e-6)


@pytest.mark.parametrize("change, key", [
    ({"zero_shot": None}, "zero_shot: required with task zero_shot"),
    ({"zero_shot": {"classes": ["cat"]}}, "zero_shot.classes"),
    ({"zero_shot": {"template": "a {}"}}, "zero_shot.classes: required key is missing"),
    ({"zero_shot": {"classes": ["cat", "dog"], "template": "a photo"}}, "zero_shot.template"),
    ({"inputs": {"a": {"modality": "image", "column": "image", "encoder": {"preset": "x"}},
                 "b": {"modality": "image", "column": "image", "encoder": {"preset": "x"}}}}, "inputs: task zero_shot takes exactly one input"),
    ({"inputs": {"photo": {"modality": "image", "column": "image"}}}, "inputs.photo.encoder.preset: task zero_shot needs a CLIP or SigLIP preset"),
    ({"task": "classification"}, "zero_shot: only `task: zero_shot` reads this key"),
    ({"inputs": {"t": {"modality": "tabular", "numeric": ["id"]}}}, "inputs.t.modality: task zero_shot classifies an image or a text input"),
])
def test_manifest_errors_are_one_line(world, tmp_path, change, key):
    m = manifest(world, tmp_path / "m.yaml", **change)
    r = run_cli("validate", m, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and key in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_non_clip_preset_is_one_line(world, tmp_path):
    inputs = {"photo": {"modality": "image", "column": "image", "size": [SIZE, SIZE], "encoder": {"preset": str(world["vit"])}}}
    m = manifest(world, tmp_path / "m.yaml", inputs=inputs)
    r = run_cli("fit", m, "--out", tmp_path / "run", timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is a ViTBackbone; task zero_shot needs a CLIP or SigLIP preset" in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_label_outside_the_classes_is_a_bad_row(world, tmp_path):
    frame = pd.read_csv(world["table"])
    frame.loc[3, "colour"] = "purple"
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "images").symlink_to(world["root"] / "images")
    m = manifest(world, tmp_path / "m.yaml", data={"train": str(tmp_path / "t.csv")})
    r = run_cli("validate", m, timeout=120)
    assert r.returncode == 2 and "1 row(s) with a label not among zero_shot.classes (rows 4)" in r.stderr, r.stderr[-2000:]
