"""Embeddings at serving: the SavedModel's `serving_embed` signature and `mmauto embed`, on the
session's fitted demo run (conftest's `fitted`), and the ensemble's lead member on toy models."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

INPUTS = ["photo", "review", "voice", "meta"]  # the demo's inputs, in the manifest's order
COLUMNS = [f"embedding_{n}" for n in INPUTS] + ["embedding"]


@pytest.fixture(scope="module")
def served(fitted):
    """(signature, preprocessing, the demo's train rows, the demo folder, the model card)."""
    from mmauto import api

    run, _, demo = fitted
    _, prep, sig = api._open(run, "serving_embed")
    rows = pd.read_csv(demo / "train.csv", keep_default_na=False)
    return sig, prep, rows, demo, json.loads((run / "mmauto.json").read_text())


def embed(served, rows) -> dict:
    from mmauto.export.saved_model import call_signature

    sig, prep, _, demo, _ = served
    return call_signature(sig, prep.serving_values(rows, demo))


def test_signature_shapes_and_unit_norm(served):
    """One output per input and the fused one, of the card's widths, each row a unit vector."""
    card = served[4]
    out = embed(served, served[2].head(8))
    assert sorted(out) == sorted(COLUMNS)
    listed = card["signatures"]["serving_embed"]["outputs"]
    assert list(listed) == COLUMNS
    for name, v in out.items():
        assert v.dtype == np.float32 and v.shape == (8, listed[name]["shape"][1]), name
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5, err_msg=name)
    assert listed["embedding_photo"]["shape"] == [None, 16]  # the fit pinned width 16
    assert len({tuple(r) for r in out["embedding_photo"]}) > 1  # the rows' photos differ


def test_a_blanked_input_gives_its_learned_missing_embedding(fitted, served):
    """Blank the photo of rows with different photos: their photo embedding becomes one vector,
    the gate's learned `missing` weight normalised; the other inputs' embeddings are untouched."""
    import tensorflow as tf

    from mmauto.evaluation.predict import blank

    _, prep, rows, _, _ = served
    rows = rows[rows["image"] != ""].head(4)
    assert rows["image"].nunique() == 4
    full = embed(served, rows)
    gone = embed(served, blank(prep, rows, ["photo"]))
    loaded = tf.saved_model.load(str(fitted[0] / "model"))  # held: its signature's variables live in it
    (weight,) = [v.numpy() for v in loaded.signatures["serving_embed"].variables if v.name == "photo_missing/missing:0"]
    # tf.math.l2_normalize keeps a zero vector zero. With the fallback heads (the default) no
    # answer reads the missing embedding, so it can stay at its initial zeros.
    learned = weight / np.sqrt(max(float(np.sum(weight**2)), 1e-12))
    np.testing.assert_allclose(gone["embedding_photo"], np.tile(learned, (4, 1)), atol=1e-5)
    assert np.abs(gone["embedding_photo"] - full["embedding_photo"]).max(axis=1).min() > 1e-3
    assert np.abs(gone["embedding"] - full["embedding"]).max(axis=1).min() > 1e-4  # the fusion saw it
    for name in ("review", "voice", "meta"):
        np.testing.assert_allclose(gone[f"embedding_{name}"], full[f"embedding_{name}"], atol=1e-6)


def test_a_batch_of_zero_rows_gets_empty_embeddings(served):
    import tensorflow as tf

    sig, _, _, _, card = served
    spec = sig.structured_input_signature[1]
    out = sig(**{k: tf.zeros([0] + [d or 1 for d in s.shape[1:]], s.dtype) for k, s in spec.items()})
    widths = {k: v["shape"][1] for k, v in card["signatures"]["serving_embed"]["outputs"].items()}
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (0, w) for k, w in widths.items()}


def test_cli_writes_the_signatures_embeddings(fitted, served, tmp_path):
    """`mmauto embed`: one row per row, the id column as predict writes it, list<float32> columns
    holding what the signature answers for the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run, _, demo = fitted
    out = tmp_path / "sub" / "e.parquet"
    r = run_cli("embed", run, demo / "train.csv", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    table = pq.read_table(out)
    rows = served[2]
    assert table.column_names == ["id", *COLUMNS] and table.num_rows == len(rows)
    assert all(table.schema.field(c).type == pa.list_(pa.float32()) for c in COLUMNS)
    assert table.column("id").to_pylist() == rows["id"].tolist()
    direct = embed(served, rows)
    for c in COLUMNS:
        np.testing.assert_allclose(np.stack(table.column(c).to_numpy(zero_copy_only=False)), direct[c], atol=1e-5, err_msg=c)


def test_api_numbers_rows_without_an_id(fitted, tmp_path):
    from mmauto import api

    run, _, demo = fitted
    table = demo / "embed_no_id.csv"  # beside train.csv: media paths are relative to the table
    pd.read_csv(demo / "train.csv", keep_default_na=False).head(3).drop(columns=["id"]).to_csv(table, index=False)
    got = api.embed(run, table)
    assert list(got.columns) == ["row", *COLUMNS] and got["row"].tolist() == [1, 2, 3]


def test_cli_refuses_an_out_that_is_not_parquet(tmp_path):
    """Checked before the run is opened: the run folder need not exist."""
    r = run_cli("embed", tmp_path / "no_run", tmp_path / "data.csv", "--out", tmp_path / "e.csv")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: --out: ") and "give a path ending in .parquet" in lines[0]
    assert not (tmp_path / "e.csv").exists()


def _toy(width: int):
    """A whole-graph model in miniature: one input gated for missing values, a `fused` layer."""
    import keras

    from mmauto.layers import MissingGate

    x, present = keras.Input((3,), name="a__x"), keras.Input((), name="a__present")
    pooled, _ = MissingGate(name="a_missing")(keras.layers.Dense(width)(x), present)
    fused = keras.layers.Identity(name="fused")(keras.layers.Dense(width + 1)(pooled))
    return keras.Model({"a__x": x, "a__present": present}, keras.layers.Dense(2, activation="softmax")(fused))


@pytest.mark.parametrize("weights, lead", [([0.3, 0.7], "2"), ([0.5, 0.5], "1"), ([1.0], "1")])
def test_an_ensemble_embeds_with_its_highest_weight_member(weights, lead):
    from mmauto.model.embedding import embedding_model
    from mmauto.model.ensemble import ensemble_model

    members = {str(i + 1): (_toy(4 + i), ["a__x", "a__present"]) for i in range(len(weights))}
    model = ensemble_model(members, weights)
    got = embedding_model(model, ["a"])
    width = 4 + int(lead) - 1
    assert {k: v.shape for k, v in got.output.items()} == {"embedding_a": (None, width), "embedding": (None, width + 1)}
    own = members[lead][0].weights
    assert got.weights and all(any(w is o for o in own) for w in got.weights)  # shared, not copied


def test_an_ensemble_never_embeds_with_its_linear_model():
    """The linear model (run/linear.py) has no fused vector: the lead is the heaviest searched member."""
    import keras

    from mmauto.model.embedding import embedding_model
    from mmauto.model.ensemble import ensemble_model, lead_member

    x, present = keras.Input((3,), name="a__x"), keras.Input((), name="a__present")
    linear = keras.Model({"a__x": x, "a__present": present}, keras.layers.Dense(2, activation="softmax")(x))
    members = {"1": (_toy(4), ["a__x", "a__present"]), "linear": (linear, ["a__x", "a__present"])}
    model = ensemble_model(members, [0.2, 0.8])
    assert lead_member(model).name == "trial_1"
    assert embedding_model(model, ["a"]).output["embedding"].shape == (None, 5)
