"""Stage `linear` (mmauto/run/linear.py): a logistic regression over the text inputs' TF-IDF,
an ensemble candidate beside the trials."""

import numpy as np
import pytest
import yaml
from test_search import small_manifest


def _prepared(demo_dir, tmp_path, **search):
    return _prepared_from(small_manifest(demo_dir, tmp_path / "m.yaml", **search), tmp_path)


def _prepared_from(manifest, folder):
    from mmauto.run.context import FitOptions
    from mmauto.run.load import load
    from mmauto.run.prepare import prepare_data

    seen = []
    run = load(manifest, folder / "run", FitOptions(), seen.append)
    return run, prepare_data(run), seen


@pytest.mark.parametrize("label", ["3 classes", "yes/no"])
def test_the_keras_linear_model_is_the_fitted_regression(demo_dir, tmp_path, label):
    """The Keras model serves exactly the probabilities scikit-learn's regression gives on the
    same features, in the trials' output layout (the head's block, its input heads' copies, and
    for a binary label the matching embeddings' columns, zeros here)."""
    from sklearn.linear_model import LogisticRegression

    from mmauto.data.demo import write_demo
    from mmauto.heads.wrapper import unwrapped
    from mmauto.run import linear as stage

    if label == "yes/no":
        demo_dir = tmp_path / "demo"
        write_demo(demo_dir, rows=120, seed=0, redundant=True)
    run, data, seen = _prepared(demo_dir, tmp_path)
    member = stage.linear(run, data)
    assert member is not None and member.encoders == {"review": "tfidf"} and member.strength in stage.STRENGTHS
    units = data.prep.head.units
    assert member.val_predictions.shape == (data.splits["validation"].rows, units)
    feeds = {"review": data.prep.encoder_inputs("review", "tfidf")["tfidf"][:2]}
    x_train = stage._features(data.prep, data.datasets["train"], feeds, None)
    x_val = stage._features(data.prep, data.datasets["validation"], feeds, None)
    block = stage._blocks(data.prep.head)[0]
    y_train = stage._labels(np.asarray(data.prep.targets(data.splits["train"].frame)), block).astype(int)
    fitted = LogisticRegression(C=member.strength, max_iter=1000).fit(x_train, y_train)
    classes = unwrapped(data.prep.head).units
    expected = np.zeros((x_val.shape[0], max(classes, 2)))
    expected[:, fitted.classes_] = fitted.predict_proba(x_val)
    if classes == 1:  # a binary head's one column: the probability of the second class
        expected = expected[:, 1:]
        classes = 1
    if label == "yes/no":
        assert type(data.prep.head).__name__ == "Matching"  # its embeddings' columns follow the answer
    answer = data.prep.head.units if label == "3 classes" else data.prep.head.head.units
    for block in range(answer // classes):  # every block answers the same
        np.testing.assert_allclose(member.val_predictions[:, block * classes : (block + 1) * classes], expected, atol=1e-4)
    assert not member.val_predictions[:, answer:].any()
    assert np.allclose(np.load(run.run_dir / "linear" / "val_predictions.npy"), member.val_predictions)
    said = [e for e in seen if "linear model (TF-IDF of review; label: logistic regression C=" in getattr(e, "text", "")]
    assert [e.kind for e in said] == ["info"]  # a result, not a warning


def test_several_targets_get_one_regression_each(demo_dir, tmp_path):
    """A classification and a regression target served, an auxiliary one trained only: a
    logistic regression for the first, a ridge regression (on the value in standard deviations)
    for the second, each at its own strength, side by side in the model's layout; the auxiliary
    target gets zero logits in the model (even probabilities) and NaN in the kept predictions,
    so the ensemble selection leaves the linear model out for it."""
    from sklearn.linear_model import LogisticRegression, Ridge

    from mmauto.heads.wrapper import unwrapped
    from mmauto.run import linear as stage

    path = small_manifest(demo_dir, tmp_path / "m.yaml")
    spec = yaml.safe_load(path.read_text())
    spec["target"] = ["label", {"column": "price", "task": "regression"}, {"column": "store", "auxiliary": True}]
    spec["inputs"] = {"review": spec["inputs"]["review"]}
    path.write_text(yaml.safe_dump(spec))
    run, data, seen = _prepared_from(path, tmp_path)
    member = stage.linear(run, data)
    assert set(member.fits) == {"label", "price"} and member.fits["price"].kind == "ridge"
    head = unwrapped(data.prep.head)
    (la, lb), (pa, _), (sa, sb) = head.pred_slices
    feeds = {"review": data.prep.encoder_inputs("review", "tfidf")["tfidf"][:2]}
    x_train, x_val = (stage._features(data.prep, data.datasets[s], feeds, None) for s in ("train", "validation"))
    y = np.asarray(data.prep.targets(data.splits["train"].frame), "float64")
    lr = LogisticRegression(C=member.fits["label"].strength, max_iter=1000).fit(x_train, y[:, 0].astype(int))
    np.testing.assert_allclose(member.val_predictions[:, la:lb], lr.predict_proba(x_val), atol=1e-4)
    ridge = Ridge(alpha=1.0 / member.fits["price"].strength).fit(x_train, y[:, 1])
    np.testing.assert_allclose(member.val_predictions[:, pa], ridge.predict(x_val), atol=1e-4)
    assert np.isnan(member.val_predictions[:, sa:sb]).all() and np.isfinite(member.val_predictions[:, :sa]).all()
    val = data.prep.batches(data.datasets["validation"], 64, {"review": "tfidf"}, member.input_keys)
    np.testing.assert_allclose(np.asarray(member.model.predict(val, verbose=0))[:, sa:sb], 1 / (sb - sa), atol=1e-6)
    assert any("label: logistic regression" in getattr(e, "text", "") and "price: ridge" in getattr(e, "text", "") for e in seen)


def test_no_linear_model_when_turned_off_or_without_text(demo_dir, tmp_path):
    from mmauto.run import linear as stage

    off, off_data, _ = _prepared(demo_dir, tmp_path, linear=False)
    assert stage.linear(off, off_data) is None
    table_only = tmp_path / "table"
    table_only.mkdir()
    spec = yaml.safe_load((tmp_path / "m.yaml").read_text())
    spec["inputs"] = {"meta": spec["inputs"]["meta"]}
    spec["search"]["linear"] = True
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    run, data, _ = _prepared_from(tmp_path / "m.yaml", table_only)
    assert stage.linear(run, data) is None


@pytest.mark.parametrize("seen", [[0, 1, 2], [0, 2]])
def test_the_weights_give_each_class_its_probability(seen):
    """Multiclass weights from scikit-learn's coefficients, also when the training rows hold only
    two of the classes (scikit-learn then fits one logit) or lack one."""
    from sklearn.linear_model import LogisticRegression

    from mmauto.heads.calibration import softmax
    from mmauto.run.linear import _weights

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4))
    y = np.array(seen)[rng.integers(0, len(seen), 90)]
    fitted = LogisticRegression(C=1.0).fit(x, y)
    kernel, bias = _weights(fitted, 3, 4)
    got = softmax(x @ kernel + bias)
    expected = np.zeros((90, 3))
    expected[:, fitted.classes_] = fitted.predict_proba(x)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_time_budget_bounds_the_strengths_tried(demo_dir, tmp_path, monkeypatch):
    """Past its share of the budget the stage keeps the best strength so far (here: the first)."""
    from sklearn.linear_model import LogisticRegression

    from mmauto.run import linear as stage

    run, data, _ = _prepared(demo_dir, tmp_path)
    fits = []
    fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, *a, **k: fits.append(self.C) or fit(self, *a, **k))
    assert stage.linear(run, data) is not None and fits == list(stage.STRENGTHS)  # no budget: every strength
    fits.clear()
    run.budget = 600.0
    monkeypatch.setattr(stage, "BUDGET_SHARE", 0.0)
    assert stage.linear(run, data).strength == stage.STRENGTHS[0] and fits == [stage.STRENGTHS[0]]


def test_the_ensemble_leaves_the_linear_model_out_for_a_target_it_did_not_fit(demo_dir, tmp_path):
    """Its kept predictions are NaN in the columns of a target it did not fit (a multilabel or
    auxiliary one; here a regression target stands in): the ensemble selection of that target
    never picks it (its column weights there are 0), while the other target's may."""
    from mmauto.config.manifest import load_manifest
    from mmauto.heads.multi import MultiHead
    from mmauto.run.ensemble import _column_weights, choose

    path = small_manifest(demo_dir, tmp_path / "m.yaml")
    spec = yaml.safe_load(path.read_text())
    spec["target"] = ["label", {"column": "price", "task": "regression"}]
    spec["inputs"] = {"review": spec["inputs"]["review"]}
    path.write_text(yaml.safe_dump(spec))
    m = load_manifest(path)
    head = MultiHead.build(m.targets, {"label": {"classes": ["a", "b"]}, "price": {"mean": 0.0, "std": 1.0}}, 0.5)
    rng = np.random.default_rng(0)
    y = np.stack([rng.integers(0, 2, 200), rng.normal(size=200)], axis=1).astype("float32")
    truth = np.stack([y[:, 0] * 0.8 + 0.1, y[:, 1]], axis=1)
    preds = {"0000": truth + rng.normal(0, 0.3, truth.shape), "linear": truth.copy()}
    preds["0000"][:, 0] = np.clip(preds["0000"][:, 0], 0.01, 0.99)
    seen = choose(head, {k: v.astype("float32") for k, v in preds.items()}, y, 25)
    assert seen["targets"]["price"]["weights"][seen["members"].index("linear")] > 0.5  # were its columns kept
    preds["linear"][:, 1] = np.nan  # the regression target: not fitted
    info = choose(head, {k: v.astype("float32") for k, v in preds.items()}, y, 25)
    assert info["targets"]["label"]["weights"][info["members"].index("linear")] > 0.5  # the better one there
    assert info["targets"]["price"]["weights"][info["members"].index("linear")] == 0.0
    linear_row = _column_weights(head, info)[info["members"].index("linear")]
    assert linear_row[1] == 0.0 and linear_row[0] > 0.5
