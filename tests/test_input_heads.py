"""Each input's own copy of the head (heads/input_heads.py): trained on every row by its own
loss, it answers rows with an input missing even when modality dropout never removed one."""

import json

import numpy as np
import pytest
from test_colearning import answers_without_image, fit_redundant_demo


def test_the_loss_is_the_heads_plus_each_inputs_copy():
    import keras

    from mmauto.heads.input_heads import InputHeadsLoss

    inner = keras.losses.SparseCategoricalCrossentropy()
    y = np.array([0, 2, 1])
    blocks = [np.random.default_rng(i).dirichlet(np.ones(3), size=3).astype("float32") for i in range(3)]
    got = float(InputHeadsLoss(inner, 3, 2, 0.25)(y, np.concatenate(blocks, axis=1)))
    want = float(inner(y, blocks[0])) + 0.25 * (float(inner(y, blocks[1])) + float(inner(y, blocks[2])))
    assert got == pytest.approx(want, rel=1e-5)


def test_off_with_one_input_or_weight_zero():
    from mmauto.heads import head_for
    from mmauto.heads.input_heads import InputHeads, with_input_heads

    head = head_for("classification", "label", ["a", "b", "c"], {}, 0.5)
    assert with_input_heads(head, ["image"], None) is head
    assert with_input_heads(head, ["image", "audio"], 0) is head
    wrapped = with_input_heads(head, ["image", "audio"], None)
    assert isinstance(wrapped, InputHeads) and wrapped.units == 9 and wrapped.main_units == 3
    y = np.concatenate([np.eye(3)[[0, 1]], np.full((2, 6), 1 / 3)], axis=1).astype("float32")
    assert wrapped.numpy_outputs(y)["probabilities"].argmax(axis=1).tolist() == [0, 1]


def test_ensemble_selection_reads_the_primary_targets_block():
    """With several targets, ensemble selection scores the primary target's columns of the
    head's block, on the rows that have it (it read every block once: a shape error)."""
    from mmauto.config.manifest import TargetSpec
    from mmauto.heads.input_heads import InputHeads
    from mmauto.heads.multi import MultiHead

    specs = [TargetSpec(column="label", task="classification"), TargetSpec(column="price", task="regression")]
    multi = MultiHead.build(specs, {"label": {"classes": ["a", "b", "c"]}, "price": {"mean": 0.0, "std": 1.0}}, 0.5)
    wrapped = InputHeads(multi, ["image", "audio"])
    assert wrapped.units == 3 * (3 + 1)
    pred = np.arange(5 * 12, dtype="float32").reshape(5, 12)
    targets = np.array([[0, 1.0], [np.nan, 2.0], [2, 0.5], [1, 0.0], [0, 1.0]], "float32")
    preds, y = wrapped.primary_view({"t": pred}, targets)
    assert preds["t"].tolist() == pred[[0, 2, 3, 4], :3].tolist() and y.reshape(-1).tolist() == [0, 2, 1, 0]


@pytest.fixture(scope="module")
def no_dropout_run(tmp_path_factory):
    """Modality dropout pinned at 0: no training row lacks an input, so before input heads the
    fallback heads never trained and a row with its image blanked was answered at chance."""
    return fit_redundant_demo(tmp_path_factory.mktemp("input_heads"), {"input_heads": 0.5}, {"modality_dropout": 0.0})


def test_a_row_without_its_image_is_answered_by_heads_trained_on_every_row(no_dropout_run, tmp_path):
    run, data, summary = no_dropout_run
    assert summary["metrics"]["test"]["accuracy"] >= 0.9, summary["metrics"]
    card = json.loads((run / "mmauto.json").read_text())
    assert card["input_heads"] == ["photo", "review", "voice", "meta"]
    accuracy, predicted, served = answers_without_image(run, data, tmp_path)
    assert accuracy >= 0.95  # 0.78 without the input heads
    assert predicted == served  # empty image bytes in the SavedModel
