"""Matched pairs (heads/matching.py): a binary target's positive rows teach the encoders by a
contrastive loss; the served model is the head's alone."""

import json

import numpy as np
import pytest
import yaml
from conftest import run_cli
from test_colearning import answers_without_image, fit_redundant_demo


def _infonce(a, b):
    """Symmetric InfoNCE of row-aligned unit vectors (numpy), per row."""
    logits = a @ b.T / 0.1

    def ce(m):
        m = m - m.max(axis=1, keepdims=True)
        return -(np.diag(m) - np.log(np.exp(m).sum(axis=1)))

    return 0.5 * (ce(logits) + ce(logits.T))


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def test_the_loss_is_infonce_over_the_positive_rows_with_both_inputs():
    from mmauto.heads.matching import DIM, matched_pairs_loss

    rng = np.random.default_rng(0)
    a, b = _unit(rng.normal(size=(6, DIM))), _unit(rng.normal(size=(6, DIM)))
    b[4] = 0.0  # row 4's second input missing
    positive = np.array([1, 0, 1, 1, 1, 0], "float32")
    got = np.asarray(matched_pairs_loss(positive, [a, b]))
    keep = [0, 2, 3]  # positive with both inputs: the only anchors and the only negatives
    want = np.zeros(6)
    want[keep] = _infonce(a[keep], b[keep]) * 6 / 3
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert got.mean() == pytest.approx(_infonce(a[keep], b[keep]).mean(), rel=1e-4)


def test_the_loss_adds_weight_times_the_contrastive_term_to_the_heads():
    import keras

    from mmauto.heads.matching import DIM, MatchingLoss, matched_pairs_loss

    rng = np.random.default_rng(1)
    inner = keras.losses.BinaryCrossentropy()
    y = np.array([[1.0], [1.0], [0.0], [1.0]], "float32")
    p = rng.uniform(0.1, 0.9, size=(4, 1)).astype("float32")
    z = [_unit(rng.normal(size=(4, DIM))) for _ in range(2)]
    got = float(MatchingLoss(inner, 1, 2, 0.5)(y, np.concatenate([p, *z], axis=1)))
    want = float(inner(y, p)) + 0.5 * float(np.mean(matched_pairs_loss(y[:, 0], z)))
    assert got == pytest.approx(want, rel=1e-5)
    assert float(MatchingLoss(inner, 1, 2, 0.0)(y, np.concatenate([p, *z], axis=1))) == pytest.approx(float(inner(y, p)), rel=1e-6)


def test_on_only_for_one_binary_target_over_several_inputs():
    from mmauto.heads import head_for
    from mmauto.heads.input_heads import with_input_heads
    from mmauto.heads.matching import DIM, Matching, with_matching

    binary = head_for("classification", "same", ["no", "yes"], {}, 0.5)
    multiclass = head_for("classification", "digit", ["a", "b", "c"], {}, 0.5)
    assert with_matching(binary, ["image"], None) is binary
    assert with_matching(binary, ["image", "audio"], 0) is binary
    assert with_matching(multiclass, ["image", "audio"], None) is multiclass
    wrapped = with_matching(with_input_heads(binary, ["image", "audio"], None), ["image", "audio"], 0.5)
    assert isinstance(wrapped, Matching) and wrapped.units == 3 + 2 * DIM
    assert wrapped.card()["matching"] == {"inputs": ["image", "audio"], "positive_class": "yes"}
    y = np.concatenate([[[0.9], [0.2]], np.full((2, 2 + 2 * DIM), 0.5)], axis=1).astype("float32")
    assert wrapped.numpy_outputs(y)["probabilities"][:, 1].tolist() == pytest.approx([0.9, 0.2])


def test_a_multi_target_model_matches_on_its_primary_binary_target():
    """Auxiliary digit targets listed first: the positive rows are read from the primary
    target's column, and a row without it (NaN) is not one."""
    import keras

    from mmauto.config.manifest import TargetSpec
    from mmauto.heads.matching import DIM, Matching, MatchingLoss, matched_pairs_loss, with_matching
    from mmauto.heads.multi import MultiHead

    specs = [TargetSpec(column="digit", task="classification", auxiliary=True), TargetSpec(column="same", task="classification")]
    multi = MultiHead.build(specs, {"digit": {"classes": list("0123456789")}, "same": {"classes": ["no", "yes"]}}, 0.5)
    wrapped = with_matching(multi, ["image", "audio"], None)
    assert isinstance(wrapped, Matching) and multi.primary_column == 1
    assert wrapped.card()["matching"]["positive_class"] == "yes"
    assert len(wrapped.column_targets()) == wrapped.units == 11 + 2 * DIM
    rng = np.random.default_rng(2)
    y = np.array([[3, 1.0], [4, 1.0], [5, np.nan], [6, 0.0], [7, 1.0]], "float32")
    z = [_unit(rng.normal(size=(5, DIM))) for _ in range(2)]

    class Zero(keras.losses.Loss):  # the head's loss is not what is tested here
        def call(self, y_true, y_pred):
            return keras.ops.zeros_like(y_pred[:, 0])

    pred = np.concatenate([np.zeros((5, 1), "float32"), *z], axis=1)
    got = float(MatchingLoss(Zero(), 1, 2, 1.0, column=1)(y, pred))
    want = float(np.mean(matched_pairs_loss(np.array([1, 1, 0, 0, 1], "float32"), z)))
    assert got == pytest.approx(want, rel=1e-4)


def test_it_teaches_encoders_what_matches():
    """Two inputs that show one of 5 classes through different random maps; the label says
    only whether the two show the same class. Trained with the contrastive loss on the
    positive rows, the embeddings of a matching pair are closer than those of a mismatched
    pair; the head's loss alone, at the same steps, does not get there."""
    import keras

    from mmauto.heads.matching import MatchEmbeddings, MatchingLoss

    rng = np.random.default_rng(0)
    n, k, d = 1200, 5, 16
    maps = [rng.normal(size=(k, d)) for _ in range(2)]
    ca = rng.integers(0, k, n)
    same = rng.random(n) < 0.5
    cb = np.where(same, ca, (ca + rng.integers(1, k, n)) % k)
    xa = (maps[0][ca] + 0.3 * rng.normal(size=(n, d))).astype("float32")
    xb = (maps[1][cb] + 0.3 * rng.normal(size=(n, d))).astype("float32")
    y = same.astype("float32").reshape(-1, 1)

    def gap(weight):
        keras.utils.set_random_seed(0)
        a_in, b_in = keras.Input((d,)), keras.Input((d,))
        ones = keras.layers.Lambda(lambda t: keras.ops.ones_like(t[:, :1]))
        z = MatchEmbeddings(2)([a_in, b_in, ones(a_in), ones(b_in)])
        p = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([a_in, b_in]))
        model = keras.Model([a_in, b_in], keras.layers.Concatenate()([p, z]))
        model.compile(keras.optimizers.Adam(3e-3), loss=MatchingLoss(keras.losses.BinaryCrossentropy(), 1, 2, weight))
        model.fit([xa, xb], y, batch_size=64, epochs=8, verbose=0)
        out = model.predict([xa, xb], verbose=0)
        za, zb = out[:, 1 : 1 + 32], out[:, 1 + 32 :]
        cos = (za * zb).sum(axis=1)
        return cos[same].mean() - cos[~same].mean()

    taught, untaught = gap(1.0), gap(0.0)
    assert taught > 0.5, taught
    assert untaught < 0.2, untaught


@pytest.fixture(scope="module")
def matched_run(tmp_path_factory):
    """The redundant demo (every input tells the yes/no label) with the contrastive loss pinned on."""
    return fit_redundant_demo(tmp_path_factory.mktemp("matching"), {}, {"match_weight": 0.5})


def test_a_model_trained_with_it_serves_the_head_alone(matched_run, tmp_path):
    run, data, summary = matched_run
    assert summary["metrics"]["test"]["accuracy"] >= 0.9, summary["metrics"]
    card = json.loads((run / "mmauto.json").read_text())
    assert card["matching"] == {"inputs": ["photo", "review", "voice", "meta"], "positive_class": "yes"}
    assert card["hyperparameters"]["match_weight"] == 0.5
    assert set(card["signatures"]["serving_default"]["outputs"]) == {"probabilities", "label"}
    accuracy, predicted, served = answers_without_image(run, data, tmp_path)
    assert predicted == served  # parity through the SavedModel, the embeddings left out


def test_match_weight_is_validated(demo_copy):
    m = demo_copy / "manifest.yaml"
    data = yaml.safe_load(m.read_text())
    data["search"] = {"space": {"match_weight": [0.5, -1]}}
    m.write_text(yaml.safe_dump(data))
    r = run_cli("validate", m)
    assert r.returncode == 2 and "match_weight" in r.stderr and "0 (off) or more" in r.stderr, r.stderr
