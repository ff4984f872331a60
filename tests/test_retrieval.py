"""`task: retrieval`: the manifest, the InfoNCE loss and in-batch recall against NumPy, the
learned temperature, and one fit end to end (export, evaluate both ways, predict, search)."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli

from mmauto.config.manifest import load_manifest
from mmauto.errors import ManifestError


def _manifest(tmp_path, demo_dir, **changes):
    d = tmp_path / "data"
    if not d.exists():
        shutil.copytree(demo_dir, d)
    m = yaml.safe_load((d / "manifest.yaml").read_text())
    m.pop("target")
    m["task"] = "retrieval"
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in ("photo", "review")}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"width": 16, "embedding_width": 16}}
    m["train"] = {"epochs": 3, "batch_size": 16}
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (d / "retrieval.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    return d / "retrieval.yaml"


def test_search_help_does_not_import_tensorflow():
    code = ("import sys; from typer.testing import CliRunner; from mmauto_cli.main import app;"
            "r = CliRunner().invoke(app, ['search', '--help']); assert r.exit_code == 0 and '--top-k' in r.output, r.output;"
            "bad = [m for m in ('tensorflow', 'keras', 'pandas') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# === Manifest ===


def test_retrieval_manifest_has_no_target(demo_dir, tmp_path):
    m = load_manifest(_manifest(tmp_path, demo_dir))
    assert m.retrieval and m.targets == [] and m.target is None
    assert m.search.space.embedding_width == 16
    assert "target" not in m.to_dict()


@pytest.mark.parametrize("changes, key, says", [
    ({"target": "label"}, "target", "task retrieval has no target"),
    ({"inputs": {"photo": {"modality": "image", "column": "image"}}}, "inputs", "two or more inputs"),
    ({"task": "classification"}, "target", "required key is missing"),
])
def test_retrieval_manifest_errors_name_the_key(demo_dir, tmp_path, changes, key, says):
    with pytest.raises(ManifestError) as e:
        load_manifest(_manifest(tmp_path, demo_dir, **changes))
    assert f"{key}: " in str(e.value) and says in str(e.value)


# === Loss, metric, temperature ===


def _norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _numpy_infonce(blocks, scale):
    def ce(logits):  # per row, the cross-entropy of the diagonal
        logits = logits - logits.max(axis=1, keepdims=True)
        return -(np.diag(logits) - np.log(np.exp(logits).sum(axis=1)))


    pairs = [(i, j) for i in range(len(blocks)) for j in range(i + 1, len(blocks))]
    per_row = sum((ce(scale * blocks[i] @ blocks[j].T) + ce(scale * blocks[j] @ blocks[i].T)) / 2 for i, j in pairs) / len(pairs)
    return per_row.mean()


@pytest.mark.parametrize("n, log_scale, scale", [(2, math.log(2.5), 2.5), (3, math.log(1 / 0.07), 1 / 0.07), (2, 9.0, 100.0)])
def test_infonce_matches_numpy(n, log_scale, scale):
    import keras

    from mmauto.heads.retrieval_losses import InfoNCELoss

    rng = np.random.default_rng(0)
    blocks = [_norm(rng.normal(size=(5, 4))).astype("float32") for _ in range(n)]
    y_pred = np.concatenate(blocks, axis=1)
    loss = InfoNCELoss(n, keras.Variable(log_scale, dtype="float32"))  # 9.0 is clipped to log(100)
    got = float(loss(np.ones((5, n), "float32"), y_pred))
    assert got == pytest.approx(_numpy_infonce(blocks, scale), rel=1e-5)


def test_infonce_leaves_out_rows_missing_an_input():
    import keras

    from mmauto.heads.retrieval_losses import InfoNCELoss

    rng = np.random.default_rng(2)
    a, b = (_norm(rng.normal(size=(6, 4))).astype("float32") for _ in range(2))
    have = np.ones((6, 2), "float32")
    have[2, 1] = have[4, 0] = 0.0  # row 2 lacks b, row 4 lacks a
    loss = InfoNCELoss(2, keras.Variable(math.log(3.0), dtype="float32"))
    got = float(loss(have, np.concatenate([a, b], axis=1)))
    keep = [0, 1, 3, 5]
    assert got == pytest.approx(_numpy_infonce([a[keep], b[keep]], 3.0), rel=1e-5)
    assert got != pytest.approx(_numpy_infonce([a, b], 3.0), rel=1e-3)


def test_in_batch_recall_matches_numpy():
    from mmauto.heads.retrieval_losses import InBatchRecall

    rng = np.random.default_rng(1)
    a = _norm(rng.normal(size=(6, 3))).astype("float32")
    b = _norm(a + rng.normal(scale=0.8, size=a.shape)).astype("float32")
    m = InBatchRecall(2)
    m.update_state(np.ones((6, 2)), np.concatenate([a, b], axis=1))
    sims = a @ b.T
    want = (np.mean(sims.argmax(axis=1) == np.arange(6)) + np.mean(sims.T.argmax(axis=1) == np.arange(6))) / 2
    assert float(m.result()) == pytest.approx(want)
    assert 0 < want < 1  # the example tells right from wrong
    have = np.ones((6, 2))
    have[sims[0].argmax(), 1] = 0  # row 0's best wrong (or right) candidate lacks b
    m = InBatchRecall(2)
    m.update_state(have, np.concatenate([a, b], axis=1))
    keep = have[:, 1] > 0
    s = sims[keep][:, keep]
    want = (np.mean(s.argmax(axis=1) == np.arange(5)) + np.mean(s.T.argmax(axis=1) == np.arange(5))) / 2
    assert float(m.result()) == pytest.approx(want)


def test_learned_temperature_trains():
    import keras

    from mmauto.heads.retrieval_losses import InfoNCELoss
    from mmauto.layers import RETRIEVAL_LOGIT_SCALE, RetrievalEmbeddings

    keras.utils.set_random_seed(0)
    xa, xb = keras.Input((4,)), keras.Input((4,))
    out = RetrievalEmbeddings(2, name="output")(keras.layers.Concatenate()([keras.layers.Dense(3)(xa), keras.layers.Dense(3)(xb)]))
    model = keras.Model([xa, xb], out)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=InfoNCELoss(2, model.get_layer("output").logit_scale))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(32, 4)).astype("float32")
    before = float(model.get_layer("output").logit_scale.numpy())
    assert before == pytest.approx(RETRIEVAL_LOGIT_SCALE) == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    model.fit([a, a + 0.1 * rng.normal(size=a.shape).astype("float32")], np.ones((32, 2), "float32"), batch_size=8, epochs=2, verbose=0)
    after = float(model.get_layer("output").logit_scale.numpy())
    assert abs(after - before) > 1e-3


def test_score_ranks_the_whole_split_exactly():
    from mmauto.heads.retrieval import RetrievalHead

    rng = np.random.default_rng(3)
    a = _norm(rng.normal(size=(30, 5))).astype("float32")
    b = _norm(a + rng.normal(scale=0.7, size=a.shape)).astype("float32")
    head = RetrievalHead("", state={"inputs": ["a", "b"]})
    have = np.ones((30, 2))
    have[7, 1] = 0  # row 7 lacks b: scored in neither direction
    got = head.score(have.tolist(), {"embedding_a": a, "embedding_b": b})
    keep = np.arange(30) != 7
    sims = a[keep] @ b[keep].T
    ranks = 1 + (sims > np.diag(sims)[:, None]).sum(axis=1)  # a -> b
    ranks_t = 1 + (sims.T > np.diag(sims)[:, None]).sum(axis=1)  # b -> a
    assert got["a_to_b_rows"] == got["b_to_a_rows"] == 29
    assert got["a_to_b_recall_at_1"] == pytest.approx(np.mean(ranks == 1))
    assert got["a_to_b_recall_at_5"] == pytest.approx(np.mean(ranks <= 5))
    assert got["b_to_a_mean_rank"] == pytest.approx(ranks_t.mean())
    assert got["recall_at_10"] == pytest.approx((np.mean(ranks <= 10) + np.mean(ranks_t <= 10)) / 2)
    assert 0 < got["a_to_b_recall_at_1"] < 1 and got["a_to_b_recall_at_1"] != got["b_to_a_recall_at_1"]


# === End to end ===


def test_retrieval_fit_evaluate_predict_search(demo_dir, tmp_path):
    manifest = _manifest(tmp_path, demo_dir)
    data = tmp_path / "data"
    frame = pd.read_csv(data / "train.csv")
    frame.loc[[100, 101, 102], "review"] = ""  # three rows without a review: out of the pairs
    frame.to_csv(data / "train.csv", index=False)
    run = tmp_path / "run"
    r = run_cli("fit", manifest, "--out", run, "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads((run / "mmauto.json").read_text())
    assert card["task"] == "retrieval" and card["head"] == "retrieval" and card["embedding_dim"] == 16
    assert sorted(card["signatures"]["serving_default"]["outputs"]) == ["embedding_photo", "embedding_review"]
    assert json.loads((run / "ablation.json").read_text())["skipped"]
    assert "calibration skipped" in (run / "fit.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["rows"] > 0

    r = run_cli("evaluate", run, data / "train.csv", "--json")
    assert r.returncode == 0, r.stderr
    met = json.loads(r.stdout)["metrics"]
    assert met["rows"] == 120 and met["photo_to_review_rows"] == met["review_to_photo_rows"] == 117
    for way in ("photo_to_review", "review_to_photo"):
        assert 0 <= met[f"{way}_recall_at_1"] <= met[f"{way}_recall_at_5"] <= met[f"{way}_recall_at_10"] <= 1
        assert 1 <= met[f"{way}_mean_rank"] <= 120
    assert met["recall_at_10"] >= met["recall_at_1"]
    r = run_cli("evaluate", run, data / "train.csv", "--ablate")
    assert r.returncode == 0 and "ablation skipped: a retrieval model" in r.stdout, r.stderr

    # The served embeddings, one column per dimension, L2-normalised.
    r = run_cli("predict", run, data / "train.csv", "--out", tmp_path / "emb.csv")
    assert r.returncode == 0, r.stderr
    emb = pd.read_csv(tmp_path / "emb.csv")
    photo = emb[[f"embedding_photo_{k}" for k in range(16)]].to_numpy()
    review = emb[[f"embedding_review_{k}" for k in range(16)]].to_numpy()
    assert np.allclose(np.linalg.norm(photo, axis=1), 1, atol=1e-4) and np.allclose(np.linalg.norm(review, axis=1), 1, atol=1e-4)
    # `mmauto embed` (serving_embed) serves the same shared space.
    r = run_cli("embed", run, data / "train.csv", "--out", tmp_path / "emb.parquet")
    assert r.returncode == 0, r.stderr
    served = np.stack(pd.read_parquet(tmp_path / "emb.parquet")["embedding_photo"].to_numpy())
    assert np.allclose(served, photo, atol=1e-5)

    frame[["id", "review"]].iloc[:7].to_csv(tmp_path / "queries.csv", index=False)
    frame[["id", "image"]].to_csv(data / "candidates.csv", index=False)  # image paths are relative to the data folder
    r = run_cli("search", run, "--query", tmp_path / "queries.csv", "--candidates", data / "candidates.csv",
                "--top-k", 5, "--out", tmp_path / "ranked.csv")
    assert r.returncode == 0, r.stderr
    ranked = pd.read_csv(tmp_path / "ranked.csv")
    assert len(ranked) == 7 * 5 and list(ranked["rank"][:5]) == [1, 2, 3, 4, 5]
    for q, rows in ranked.groupby("query_row"):
        scores = rows.sort_values("rank")["score"].to_numpy()
        assert np.all(np.diff(scores) <= 1e-7)
        want = photo[rows["candidate_row"].to_numpy() - 1] @ review[q - 1]
        assert np.allclose(scores, want, atol=1e-4)
        assert scores[0] == pytest.approx((photo @ review[q - 1]).max(), abs=1e-4)  # nothing better left out
    assert list(ranked["query_id"][::5]) == list(frame["id"][:7])


@pytest.mark.parametrize("encoder", ["textcnn", "transformer"])
def test_retrieval_builds_with_every_text_encoder(demo_dir, tmp_path, encoder):
    """The projections' layer names must not collide with an encoder's own (`review_embed`)."""
    import keras_tuner as kt

    from mmauto.config.manifest import load_manifest
    from mmauto.data.checks import load_splits
    from mmauto.data.pipeline import Preprocessing
    from mmauto.model.hypermodel import MultimodalHyperModel

    path = _manifest(tmp_path, demo_dir)
    m = yaml.safe_load(path.read_text())
    m["inputs"]["review"]["encoder"] = {"type": encoder}
    path.write_text(yaml.safe_dump(m))
    manifest = load_manifest(path)
    model = MultimodalHyperModel(Preprocessing.fit(manifest, load_splits(manifest))).build(kt.HyperParameters())
    assert {"photo_retrieval_projection", "review_retrieval_projection"} <= {layer.name for layer in model.layers}
