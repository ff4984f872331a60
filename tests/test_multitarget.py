"""Several targets in one model: the manifest, the masked loss, and one fit end to end (a
classification and a regression target served, an auxiliary target trained only, rows whose
target is empty masked)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli

from mmauto.config.manifest import load_manifest
from mmauto.errors import ManifestError


def _manifest(tmp_path, demo_dir, target, train=None):
    d = tmp_path / "data"
    if not d.exists():
        shutil.copytree(demo_dir, d)
    m = yaml.safe_load((d / "manifest.yaml").read_text())
    m["target"] = target
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in ("review", "photo")}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 16}}
    m["train"] = {"epochs": 3, "batch_size": 16, **(train or {})}
    (d / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    return d / "manifest.yaml"


def test_targets_resolve_their_tasks(demo_dir, tmp_path):
    m = load_manifest(_manifest(tmp_path, demo_dir, [{"column": "store", "auxiliary": True}, "label",
                                                     {"column": "price", "task": "regression", "weight": [0.5, 1.0]}]))
    assert [(t.column, t.task, t.auxiliary) for t in m.targets] == [
        ("store", "classification", True), ("label", "classification", False), ("price", "regression", False)]
    assert m.target.column == "label"  # the first served target is the primary
    assert [t.column for t in m.served_targets] == ["label", "price"]
    assert m.targets[2].weight == [0.5, 1.0]
    single = load_manifest(_manifest(tmp_path, demo_dir, "label"))
    assert [t.column for t in single.targets] == ["label"] and single.target.task == "classification"


@pytest.mark.parametrize("target, train, key, says", [
    (["label", "label"], None, "target[1]", "named twice"),
    ([{"column": "label", "auxiliary": True}], None, "target", "every target is auxiliary"),
    ({"column": "label", "auxiliary": True}, None, "target.auxiliary", "list the targets"),
    (["label", {"column": "price", "task": "regression", "separator": ","}], None, "target[1].separator", "only a multilabel"),
    (["label", {"column": "price", "task": "regression"}], {"loss_weights": {"prize": 1.0}}, "train.loss_weights.prize", "price"),
    (["label", {"column": "price", "task": "regression", "weight": -1}], None, "target", ">= 0"),
    (["label", {"column": "price", "task": "size"}], None, "target", "regression"),
    (["label", "weight"], None, "inputs", "is a target"),
])
def test_bad_targets_are_named(demo_dir, tmp_path, target, train, key, says):
    path = _manifest(tmp_path, demo_dir, target, train)
    if target == ["label", "weight"]:  # the demo's `meta` input reads `weight`
        m = yaml.safe_load(path.read_text())
        m["inputs"]["meta"] = {"modality": "tabular", "numeric": ["weight"]}
        path.write_text(yaml.safe_dump(m))
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert key in str(e.value) and says in str(e.value)


def test_masked_loss_skips_rows_without_the_target():
    import keras

    from mmauto.heads.masked import MaskedMetric, MaskedTargetsLoss

    ce, mse = keras.losses.SparseCategoricalCrossentropy(), keras.losses.MeanSquaredError()
    # Targets: a class index (column 0) and a value (column 1); output: 3 probabilities, 1 value.
    y_true = np.array([[0, 1.0], [np.nan, 2.0], [2, np.nan], [0, 0.5]], "float32")
    y_pred = np.array([[0.7, 0.2, 0.1, 1.5], [0.1, 0.1, 0.8, 2.0], [0.2, 0.2, 0.6, 9.0], [0.3, 0.4, 0.3, 0.0]], "float32")
    loss = MaskedTargetsLoss([(ce, (0, 1), (0, 3), None), (mse, (1, 2), (3, 4), None)], [1.0, 0.5])
    got = float(loss(y_true, y_pred))
    rows = [0, 2, 3]
    want_ce = np.mean([-np.log(y_pred[r, int(y_true[r, 0])]) for r in rows])
    want_mse = np.mean([(y_pred[r, 3] - y_true[r, 1]) ** 2 for r in (0, 1, 3)])
    assert got == pytest.approx(want_ce + 0.5 * want_mse, rel=1e-5)
    acc = MaskedMetric(keras.metrics.SparseCategoricalAccuracy(), (0, 1), (0, 3), name="accuracy")
    acc.update_state(y_true, y_pred)
    assert float(acc.result()) == pytest.approx(2 / 3)  # rows 0 and 2 right, row 3 wrong, row 1 not counted


def test_learned_loss_weights_train():
    import keras

    from mmauto.heads.masked import MaskedTargetsLoss
    from mmauto.layers import TaskUncertainty

    x = keras.Input((4,))
    out = TaskUncertainty(2, name="output")(keras.layers.Dense(2)(x))
    model = keras.Model(x, out)
    mse = keras.losses.MeanSquaredError()
    log_vars = model.get_layer("output").log_vars
    model.compile("sgd", MaskedTargetsLoss([(mse, (0, 1), (0, 1), None), (mse, (1, 2), (1, 2), None)], [1, 1], log_vars))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 4)).astype("float32")
    ys = np.stack([xs[:, 0] * 10, xs[:, 1] * 0.1], axis=1).astype("float32")  # one noisy-scale target, one small
    model.fit(xs, ys, epochs=3, verbose=0)
    s = np.asarray(log_vars)
    assert s[0] > s[1]  # the target with the larger loss gets the larger variance (the smaller weight)


@pytest.fixture(scope="module")
def multi_run(demo_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    path = _manifest(tmp, demo_dir, ["label", {"column": "price", "task": "regression"}, {"column": "store", "auxiliary": True}],
                     {"loss_weights": "auto"})
    frame = pd.read_csv(path.parent / "train.csv")
    frame["label"] = frame["label"].astype(object)
    frame.loc[frame.index % 10 == 3, "label"] = ""  # masked for `label`, still trains `price` and `store`
    frame.loc[[5, 9], "price"] = np.nan
    frame.to_csv(path.parent / "train.csv", index=False)
    r = run_cli("fit", path, "--out", tmp / "run", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, path, json.loads(r.stdout)


def test_two_served_targets_and_an_auxiliary_one(multi_run):
    import tensorflow as tf

    tmp, path, summary = multi_run
    run = tmp / "run"
    sig = tf.saved_model.load(str(run / "model")).signatures["serving_default"]
    outputs = set(sig.structured_outputs)
    assert {"label_probabilities", "label_label", "price_value"} <= outputs
    assert not any(k.startswith("store") for k in outputs) and "probabilities" not in outputs
    card = json.loads((run / "mmauto.json").read_text())
    assert card["targets"]["store"]["auxiliary"] and card["targets"]["store"]["outputs"] is None
    assert len(card["input_heads"]) >= 2  # each input's copy of every target's head (input_heads.py)
    assert set(card["signatures"]["serving_default"]["outputs"]) == outputs
    assert summary["objective"] == "val_accuracy"  # the primary target's, under its plain name
    stages = summary["stages"]
    assert list(stages) == ["prepare_data", "linear", "search", "select", "ensemble", "calibrate", "export", "evaluate"]
    # Each stage is rounded to 0.01 s and the total to 0.1 s: the sum may pass the total by those roundings.
    rounding = 0.05 + 0.005 * len(stages)
    assert all(s >= 0 for s in stages.values()) and sum(stages.values()) <= summary["seconds"] + rounding
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert set(metrics[split]["targets"]) == {"label", "price"}
        assert metrics[split]["accuracy"] == metrics[split]["targets"]["label"]["accuracy"]
        assert metrics[split]["targets"]["price"]["rmse"] > 0
    # Rows whose label is empty are not scored for it, but are for price.
    evals = pd.read_csv(run / "eval_predictions.csv", keep_default_na=False)
    val = evals[evals["split"] == "validation"]
    assert metrics["validation"]["targets"]["label"]["rows"] == int((val["target"] != "").sum()) < len(val)
    assert metrics["validation"]["targets"]["price"]["rows"] == len(val)
    assert "Per target" in (run / "report" / "index.html").read_text()


def test_predict_writes_columns_per_target_as_served(multi_run):
    tmp, path, _ = multi_run
    run = tmp / "run"
    r = run_cli("predict", run, path.parent / "train.csv", "--out", tmp / "p.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    p = pd.read_csv(tmp / "p.csv")
    assert {"label_prediction", "label_prob_high", "price_prediction"} <= set(p.columns)
    assert not any(c.startswith("store") for c in p.columns)
    assert np.allclose(p[["label_prob_high", "label_prob_low", "label_prob_mid"]].sum(axis=1), 1.0, atol=1e-5)
    # The auxiliary target's column is not needed to evaluate what is served.
    pd.read_csv(path.parent / "train.csv").drop(columns=["store"]).to_csv(path.parent / "no_store.csv", index=False)
    r = run_cli("evaluate", run, path.parent / "no_store.csv", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert set(json.loads(r.stdout)["metrics"]["targets"]) == {"label", "price"}
    pd.read_csv(path.parent / "train.csv").drop(columns=["price"]).to_csv(path.parent / "no_price.csv", index=False)
    r = run_cli("evaluate", run, path.parent / "no_price.csv")
    assert r.returncode == 2 and "column 'price' named by target[1]" in r.stderr


def test_a_target_empty_in_every_row_is_an_error(demo_dir, tmp_path):
    path = _manifest(tmp_path, demo_dir, ["label", {"column": "price", "task": "regression"}])
    frame = pd.read_csv(path.parent / "train.csv")
    frame["price"] = np.nan
    frame.to_csv(path.parent / "train.csv", index=False)
    r = run_cli("validate", path)
    assert r.returncode == 2 and "target 'price'" in r.stderr and "empty in every training row" in r.stderr
    assert "Traceback" not in r.stderr


def test_one_served_target_keeps_the_plain_output_names(demo_dir, tmp_path):
    from mmauto.heads.multi import MultiHead

    m = load_manifest(_manifest(tmp_path, demo_dir, ["label", {"column": "store", "auxiliary": True}]))
    states = {"label": {"classes": ["high", "low", "mid"]}, "store": {"classes": ["east", "north", "south", "west"]}}
    head = MultiHead.build(m.targets, states, 0.5)
    assert sorted(head.output_specs()) == ["label", "probabilities"]
    assert head.units == 7 and head.pred_slices == [(0, 3), (3, 7)] and head.true_slices == [(0, 1), (1, 2)]
    y = np.random.default_rng(0).dirichlet(np.ones(3), 4).astype("float32")
    y = np.concatenate([y, np.full((4, 4), 0.25, "float32")], axis=1)
    assert np.allclose(head.expected(y), y[:, :3])  # the auxiliary target's columns are not served


def test_other_targets_metrics_have_their_directions():
    from mmauto.heads import objective_direction

    assert objective_direction("val_price_rmse") == "min" and objective_direction("val_rating_log_loss") == "min"
    assert objective_direction("val_rating_accuracy") == "max" and objective_direction("val_auc") == "max"


def test_loss_weights_are_learned_unless_some_are_given(demo_dir, tmp_path):
    import keras_tuner as kt

    from mmauto.heads.multi import MultiHead

    states = {"label": {"classes": ["high", "low", "mid"]}, "price": {"mean": 0.0, "std": 1.0}}
    m = load_manifest(_manifest(tmp_path, demo_dir, ["label", {"column": "price", "task": "regression"}]))
    assert MultiHead.build(m.targets, states, 0.5, m.train.loss_weights).loss_weights == "auto"
    m = load_manifest(_manifest(tmp_path, demo_dir, ["label", {"column": "price", "task": "regression", "weight": [0.5, 2.0]}]))
    head = MultiHead.build(m.targets, states, 0.5, m.train.loss_weights)
    hp = kt.HyperParameters()
    assert head.loss_weights is None and head.weights(hp) == [1.0, 0.5]  # the searched list's first value by default
