"""Greedy ensemble selection (mmauto.search.ensemble) on synthetic validation predictions."""

import numpy as np
import pytest

from mmauto.search import ensemble


def complementary_binary(rows=200, seed=0):
    """Two weak trials, each confident and right on its own half of the rows and unsure (0.5)
    on the other, and a mediocre one; together the first two beat every single trial."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows).astype("float32").reshape(-1, 1)
    half = np.arange(rows) < rows // 2
    sure = np.where(y[:, 0] == 1, 0.9, 0.1)
    a = np.where(half, sure, 0.5).reshape(-1, 1)
    b = np.where(~half, sure, 0.5).reshape(-1, 1)
    c = np.where(y[:, 0] == 1, 0.6, 0.4).reshape(-1, 1)
    return {"0": a.astype("float32"), "1": b.astype("float32"), "2": c.astype("float32")}, y


def test_complementary_trials_beat_the_best_single_one():
    preds, y = complementary_binary()
    result = ensemble.select(preds, y, ensemble.scorer("binary"))
    assert result.metric == "log_loss"
    assert result.score < result.best_single_score - 0.02
    assert set(result.members) >= {"0", "1"}
    assert sum(result.weights) == pytest.approx(1.0)
    assert all(w > 0 for w in result.weights)
    blended = ensemble.blend(preds, result.members, result.weights)
    assert blended.dtype == np.float32 and blended.shape == y.shape
    assert ensemble.scorer("binary")(y, blended) == pytest.approx(result.score, rel=1e-5)


def test_a_dominant_trial_gets_all_the_weight():
    rng = np.random.default_rng(1)
    rows, classes = 150, 4
    y = rng.integers(0, classes, rows)
    good = np.full((rows, classes), 0.02)
    good[np.arange(rows), y] = 0.94
    noisy = [rng.dirichlet(np.ones(classes), rows) for _ in range(3)]
    preds = {"3": noisy[0], "7": good, "10": noisy[1], "12": noisy[2]}
    result = ensemble.select(preds, y, ensemble.scorer("multiclass"), size=25)
    assert result.members == ["7"] and result.weights == [1.0]
    assert result.best_single == "7" and result.score == pytest.approx(result.best_single_score)


def test_selection_is_deterministic_and_ties_keep_fewer_members():
    preds, y = complementary_binary(seed=3)
    preds["5"] = preds["0"].copy()  # an exact duplicate of trial 0: never a second member
    runs = [ensemble.select(dict(reversed(list(preds.items()))) if i % 2 else preds, y, ensemble.scorer("binary")) for i in range(3)]
    assert all(r == runs[0] for r in runs)
    assert not {"0", "5"} <= set(runs[0].members)


def test_regression_and_sorted_initialisation():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(300, 1))
    noise = rng.normal(size=(4, 300, 1))
    # Independent errors: the mean of several trials has a smaller RMSE than any one.
    preds = {str(i): y + 0.5 * noise[i] for i in range(4)}
    rmse = ensemble.scorer("regression")
    assert rmse.name == "rmse"
    result = ensemble.select(preds, y, rmse, size=10)
    assert len(result.members) >= 3 and result.score < result.best_single_score
    init = ensemble.select(preds, y, rmse, size=10, sorted_init=2)
    assert len(init.members) >= 2 and sum(init.weights) == pytest.approx(1.0)
    assert init.trajectory[0] == pytest.approx(rmse(y, (preds[init.best_single] + preds[init.members[1]]) / 2))


def test_scorer_per_kind_and_objective():
    y = np.array([[1, 0], [0, 1], [1, 1]], "float32")
    p = np.array([[0.9, 0.2], [0.3, 0.7], [0.6, 0.8]], "float32")
    assert ensemble.scorer("multilabel").name == "log_loss" and ensemble.scorer("multilabel")(y, p) > 0
    assert ensemble.scorer("multiclass", "val_accuracy").name == "error_rate"
    assert ensemble.scorer("binary", "val_auc")(np.array([0, 1, 1]), np.array([0.2, 0.8, 0.6])) == pytest.approx(0.0)
    assert ensemble.scorer("regression", "val_mae").name == "mae"
    with pytest.raises(ValueError):
        ensemble.scorer("ranking")
    with pytest.raises(ValueError):
        ensemble.scorer("regression", "val_accuracy")


def test_non_finite_trials_are_left_out_and_shapes_checked():
    preds, y = complementary_binary()
    preds["9"] = np.full_like(preds["0"], np.nan)
    assert "9" not in ensemble.select(preds, y, ensemble.scorer("binary")).members
    with pytest.raises(ValueError):
        ensemble.select({"0": preds["0"][:10]}, y, ensemble.scorer("binary"))


def test_load_reads_a_search_folder(tmp_path):
    preds, y = complementary_binary(rows=20)
    np.save(tmp_path / "val_targets.npy", y)
    for tid, p in preds.items():
        (tmp_path / f"trial_{tid}").mkdir()
        np.save(tmp_path / f"trial_{tid}" / "val_predictions.npy", p)
    loaded, targets = ensemble.load(tmp_path)
    assert sorted(loaded) == ["0", "1", "2"] and np.array_equal(targets, y)
    assert list(ensemble.load(tmp_path, ["1"])[0]) == ["1"]


def test_each_target_gets_its_own_members_and_weights():
    """Two served targets (binary, then 3 classes), an auxiliary one, each input's head copy
    beside them: trial "a" is right on the first target and guesses the second, "b" the
    reverse. The first target's weights go to "a" alone, the second's to "b"; the ensemble's
    columns follow them (auxiliary columns and every copy's columns like the head's), and a
    Blend with those column weights serves each target from its own trial."""
    import types

    import keras

    from mmauto.heads.input_heads import InputHeads
    from mmauto.heads.multi import MultiHead
    from mmauto.layers import Blend
    from mmauto.run.ensemble import _column_weights, choose

    spec = lambda column, task, aux=False: types.SimpleNamespace(column=column, name=column, task=task, auxiliary=aux, weight=None)  # noqa: E731
    specs = [spec("deal", "classification"), spec("stars", "classification"), spec("store", "classification", True)]
    states = {"deal": {"classes": ["no", "yes"]}, "stars": {"classes": ["1", "2", "3"]}, "store": {"classes": ["x", "y"]}}
    head = InputHeads(MultiHead.build(specs, states, 0.5), ["photo", "voice"])
    rng = np.random.default_rng(0)
    n = 200
    deal, stars = rng.integers(0, 2, n), rng.integers(0, 3, n)
    targets = np.stack([deal, stars, rng.integers(0, 2, n)], axis=1).astype("float32")
    targets[:10, 1] = np.nan  # rows without `stars` still score `deal`
    sure_deal = np.where(deal == 1, 0.95, 0.05)[:, None]
    sure_stars = np.eye(3)[stars] * 0.9 + 0.1 / 3
    block = lambda d, s: np.concatenate([d, s, np.full((n, 1), 0.5)], axis=1)  # noqa: E731
    a = np.tile(block(sure_deal, np.full((n, 3), 1 / 3)), 3)
    b = np.tile(block(np.full((n, 1), 0.5), sure_stars), 3)
    info = choose(head, {"a": a.astype("float32"), "b": b.astype("float32")}, targets, 25)
    assert info["members"] == ["a", "b"] and info["weights"] == [1.0, 0.0]
    assert info["targets"]["deal"]["weights"] == [1.0, 0.0] and info["targets"]["stars"]["weights"] == [0.0, 1.0]
    assert set(info["targets"]) == {"deal", "stars"}
    columns = _column_weights(head, info)
    assert columns == [[1.0, 0.0, 0.0, 0.0, 1.0] * 3, [0.0, 1.0, 1.0, 1.0, 0.0] * 3]
    layer = Blend(info["weights"], column_weights=columns)
    served = keras.ops.convert_to_numpy(layer([a, b]))
    assert np.allclose(served[:, 0], a[:, 0]) and np.allclose(served[:, 1:4], b[:, 1:4])
    assert Blend.from_config(layer.get_config()).column_weights == columns
    # One target: no per-target weights, the members' weights apply to every column.
    single = choose(MultiHead.build(specs[:1], states, 0.5), {"a": a[:, :1], "b": b[:, :1]}, targets[:, :1], 25)
    assert "targets" not in single and _column_weights(None, single) is None


def test_an_ensemble_too_large_for_the_time_left_keeps_its_heaviest_members():
    from mmauto.run.ensemble import heaviest

    info = {"members": ["a", "b", "c", "d"], "weights": [0.1, 0.5, 0.0, 0.4]}
    assert heaviest(info, 2) == ["b", "d"] and heaviest(info, 4) == ["a", "b", "c", "d"]
    # several targets: a member heavy for any of them counts
    info["targets"] = {"x": {"weights": [0.1, 0.5, 0.0, 0.4]}, "y": {"weights": [0.0, 0.0, 0.9, 0.1]}}
    assert heaviest(info, 2) == ["b", "c"]
    # a trial and its product of input heads (model/experts.py) read one model: they count once
    info = {"members": ["1", "1_experts", "2_experts", "3"], "weights": [0.2, 0.4, 0.3, 0.1]}
    assert heaviest(info, 1) == ["1", "1_experts"] and heaviest(info, 2) == ["1", "1_experts", "2_experts"]
    assert heaviest(info, 0) == []


def overconfident_members(rows=800, seed=0, sharpen=2.5):
    """Binary validation outputs of three members: two see the true logit with their own noise
    and are `sharpen` times too sure; one is calibrated."""
    from mmauto.heads.calibration import sigmoid

    rng = np.random.default_rng(seed)
    logit = rng.normal(0, 2.0, rows)
    y = (rng.random(rows) < sigmoid(logit)).astype("float32").reshape(-1, 1)
    sure = {k: sigmoid(sharpen * (logit + rng.normal(0, 1.0, rows))) for k in ("a", "b")}
    return {**sure, "c": sigmoid(logit)}, y


def test_overconfident_members_are_rescaled_before_the_average():
    """Each candidate's probabilities get their own temperature (fitted on validation, shrunk by
    its evidence) before selection averages them, unless calibration is off; a calibrated
    member keeps 1. The overconfident members' average has the lower validation log loss rescaled."""
    import types

    from mmauto.heads import head_for
    from mmauto.heads.calibration import scaled_blocks
    from mmauto.run.ensemble import _member_scalings

    members, y = overconfident_members()
    preds = {k: np.stack([p, np.full_like(p, 0.5)], axis=1).astype("float32") for k, p in members.items()}  # + an extra column
    head = head_for("classification", "same", ["no", "yes"], {"classes": ["no", "yes"]})
    run = lambda calibrate: types.SimpleNamespace(manifest=types.SimpleNamespace(train=types.SimpleNamespace(calibrate=calibrate)))  # noqa: E731
    scalings = _member_scalings(run(True), head, preds, y)
    assert set(scalings) <= {"a", "b", "c"} and {"a", "b"} <= set(scalings)
    for k in ("a", "b"):
        (block,) = scalings[k]
        assert block["kind"] == "sigmoid" and (block["start"], block["stop"]) == (0, 1) and 1.8 < block["temperature"] < 4.0, block
    assert abs(scalings.get("c", [{"temperature": 1.0}])[0]["temperature"] - 1.0) < 0.15
    assert _member_scalings(run(False), head, preds, y) == {}
    scaled = {k: scaled_blocks(p, scalings.get(k, [])) for k, p in preds.items()}
    assert all(np.array_equal(scaled[k][:, 1], preds[k][:, 1]) for k in preds)  # other columns pass through
    loss = ensemble.scorer("binary")
    raw = ensemble.select({k: preds[k][:, :1] for k in "ab"}, y, loss)
    rescaled = ensemble.select({k: scaled[k][:, :1] for k in "ab"}, y, loss)
    assert rescaled.score < raw.score - 0.01, (rescaled.score, raw.score)


def test_each_head_fits_its_members_blocks():
    """Softmax over a multiclass head's block, one temperature shared by a multilabel head's
    labels, each served target's block of a multi-target head at its columns (an auxiliary
    target's left alone), and the head's block of a wrapped head (its input heads' follow)."""
    import types

    from mmauto.heads import head_for
    from mmauto.heads.calibration import softmax
    from mmauto.heads.input_heads import InputHeads
    from mmauto.heads.multi import MultiHead

    rng = np.random.default_rng(1)
    n = 600
    logits = rng.normal(0, 1.5, (n, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(logits)])
    sharp = softmax(3.0 * logits).astype("float32")
    multiclass = head_for("classification", "stars", ["1", "2", "3"], {"classes": ["1", "2", "3"]})
    (block,) = multiclass.member_scaling(sharp, y)
    assert block["kind"] == "softmax" and (block["start"], block["stop"]) == (0, 3) and 2.0 < block["temperature"] < 4.5
    wrapped = InputHeads(multiclass, ["photo", "voice"])
    assert wrapped.member_scaling(np.tile(sharp, 3), y) == [block]
    labels = head_for("multilabel", "tags", ["x", "y"], {"classes": ["x", "y"]})
    truth = (rng.random((n, 2)) < 0.5).astype(int)
    sure = np.where(truth == 1, 0.99, 0.01).astype("float32")
    sure[: n // 5] = 1.0 - sure[: n // 5]  # a fifth wrong and sure: too confident
    (shared,) = labels.member_scaling(sure, truth)
    assert (shared["start"], shared["stop"]) == (0, 2) and shared["temperature"] > 1.5
    spec = lambda column, aux=False: types.SimpleNamespace(column=column, name=column, task="classification", auxiliary=aux, weight=None)  # noqa: E731
    states = {"deal": {"classes": ["no", "yes"]}, "stars": {"classes": ["1", "2", "3"]}, "store": {"classes": ["x", "y"]}}
    head = MultiHead.build([spec("deal"), spec("stars"), spec("store", True)], states, 0.5)
    deal = rng.integers(0, 2, n)
    sure_deal = np.where(deal == 1, 0.99, 0.01)
    sure_deal[: n // 5] = 1.0 - sure_deal[: n // 5]
    out = np.concatenate([sure_deal[:, None], sharp, np.full((n, 1), 0.5)], axis=1).astype("float32")
    targets = np.stack([deal, y, rng.integers(0, 2, n)], axis=1).astype("float32")
    blocks = head.member_scaling(out, targets)
    assert [(b["kind"], b["start"], b["stop"]) for b in blocks] == [("sigmoid", 0, 1), ("softmax", 1, 4)]
    assert blocks[1]["temperature"] == block["temperature"]


def test_the_ensemble_model_rescales_its_members_before_the_blend():
    """layers.ScaleProbabilities in the ensemble graph matches calibration.scaled_blocks; the
    other columns pass through; it saves its blocks; the lead member is still the heaviest trial."""
    import keras

    from mmauto.heads.calibration import EPS_SIGMOID, scaled_blocks
    from mmauto.layers import ScaleProbabilities
    from mmauto.model.ensemble import ensemble_model, lead_member

    def member(name):
        x = keras.Input((2,), name="x")
        return keras.Model(x, keras.layers.Identity(name=f"fused_{name}")(x), name=name)

    blocks = [{"kind": "sigmoid", "start": 0, "stop": 1, "temperature": 2.5, "eps": EPS_SIGMOID}]
    model = ensemble_model({"1": (member("m1"), ["x"]), "2": (member("m2"), ["x"])}, [0.25, 0.75], scalings={"1": blocks})
    x = np.array([[0.99, 0.3], [0.2, 0.7], [0.5, 0.1]], "float32")
    want = 0.25 * scaled_blocks(x, blocks) + 0.75 * x
    np.testing.assert_allclose(np.asarray(model(x)), want, atol=1e-6)
    assert want[0, 0] < 0.99 and want[0, 1] == np.float32(0.3)
    layer = model.get_layer("scaled_trial_1")
    assert ScaleProbabilities.from_config(layer.get_config()).blocks == blocks
    assert lead_member(model).name == "trial_2"
