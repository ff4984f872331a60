"""A trial's product of its inputs' heads as an ensemble candidate (model/experts.py,
layers.ProductOfExperts): the math, the prior, and one fit that serves it."""

import json
import shutil
import types

import numpy as np
import pandas as pd
import pytest
import yaml

from mmauto.heads import head_for
from mmauto.heads.input_heads import InputHeads
from mmauto.heads.matching import with_matching
from mmauto.heads.multi import MultiHead
from mmauto.model import experts


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_product_is_bayes_rule_over_the_present_inputs():
    """Rows with every input present get softmax(sum of the inputs' log-probabilities - (n - 1)
    log prior), or for sigmoid outputs the same on logits; a row with an input missing keeps
    the head's block (the model's answer from what is present); the inputs' blocks pass."""
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    head = InputHeads(head_for("classification", "y", classes, {"classes": classes}), ["image", "audio"], None)
    assert experts.input_heads(head) is head and experts.input_heads(head.head) is None
    matching = with_matching(InputHeads(head_for("classification", "y", ["no", "yes"], {"classes": ["no", "yes"]}), ["a", "b"], None), ["a", "b"], None)
    assert isinstance(experts.input_heads(matching), InputHeads)
    spec = lambda column: types.SimpleNamespace(column=column, name=column, task="classification", auxiliary=False, weight=None)  # noqa: E731
    states = {"deal": {"classes": ["no", "yes"]}, "stars": {"classes": ["1", "2", "3"]}}
    multi = InputHeads(MultiHead.build([spec("deal"), spec("stars")], states, 0.5), ["image", "audio"], None)
    assert experts.input_heads(multi) is None  # several targets: no product
    y = np.concatenate([softmax(rng.normal(size=(5, 3))) for _ in range(3)], axis=1).astype("float32")
    present = np.array([[1, 1], [1, 1], [1, 0], [0, 1], [1, 1]], "float32")
    prior = [0.5, 0.3, 0.2]
    got = experts.view(head, y, present, prior)
    want = softmax(np.log(y[:, 3:6]) + np.log(y[:, 6:9]) - np.log(prior))
    every = present.min(axis=1) == 1
    np.testing.assert_allclose(got[every, :3], want[every], atol=1e-5)
    np.testing.assert_allclose(got[~every, :3], y[~every, :3], atol=1e-6)
    np.testing.assert_allclose(got[:, 3:], y[:, 3:], atol=1e-6)

    binary = InputHeads(head_for("classification", "y", ["no", "yes"], {"classes": ["no", "yes"]}), ["text", "table"], None)
    p = rng.uniform(0.05, 0.95, (4, 5)).astype("float32")  # the last 2: columns the matching loss adds
    logit = lambda q: np.log(q) - np.log1p(-q)  # noqa: E731
    got = experts.view(binary, p, np.ones((4, 2)), [0.8])
    np.testing.assert_allclose(got[:, 0], 1 / (1 + np.exp(-(logit(p[:, 1]) + logit(p[:, 2]) - logit(0.8)))), atol=1e-5)
    np.testing.assert_allclose(got[:, 1:], p[:, 1:], atol=1e-6)


def test_the_prior_is_what_the_heads_learnt():
    classes = ["a", "b", "c"]
    head = InputHeads(head_for("classification", "y", classes, {"classes": classes}), ["image", "audio"], None)
    assert experts.prior(head, np.array([0, 0, 0, 1]), balanced=False) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert experts.prior(head, np.array([0, 0, 0, 1]), balanced=True) == pytest.approx([1 / 3] * 3)
    binary = InputHeads(head_for("classification", "y", ["no", "yes"], {"classes": ["no", "yes"]}), ["text", "table"], None)
    assert experts.prior(binary, np.array([[1.0], [1.0], [0.0]]), balanced=False) == pytest.approx([0.6])
    assert experts.candidate("0003") == "0003_experts" and experts.trial_of("0003_experts") == "0003" == experts.trial_of("0003")


def test_a_chosen_product_is_served_from_raw_inputs(demo_dir, tmp_path, monkeypatch):
    """Greedy selection held to one trial and its product, half each: the SavedModel serves,
    row by row, half the trial's head and half the product of its inputs' heads, both from its
    kept validation outputs; the card names the members and the prior; a row with an input
    missing still gets probabilities."""
    from mmauto import api
    from mmauto.run import ensemble as stage

    real = stage.choose

    def held(head, preds, targets, size):
        product = next(t for t in preds if experts.is_product(t))
        trial = experts.trial_of(product)
        info = real(head, {trial: preds[trial], product: preds[product]}, targets, size)
        return {**info, "members": [trial, product], "weights": [0.5, 0.5]}

    monkeypatch.setattr(stage, "choose", held)
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    m = yaml.safe_load((data / "manifest.yaml").read_text())
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in ("review", "meta")}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 16}}
    m["train"] = {"epochs": 2, "batch_size": 32, "calibrate": False}
    (data / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    run = tmp_path / "run"
    summary = api.fit(data / "manifest.yaml", run)
    trial = summary["best_trial"]
    card = json.loads((run / "mmauto.json").read_text())
    assert card["ensemble"]["members"] == [trial, f"{trial}_experts"] and card["ensemble"]["weights"] == [0.5, 0.5]
    assert card["ensemble"]["best_single"]["trial"] == trial  # a product is not a single model
    prior = card["ensemble"]["prior"]
    assert len(prior) == 3 and sum(prior) == pytest.approx(1.0)
    kept = np.load(run / "search" / f"trial_{trial}" / "val_predictions.npy")
    assert np.load(run / "search" / "val_present.npy").shape == (len(kept), 2)
    product = softmax(np.log(np.clip(kept[:, 3:6], 1e-7, 1)) + np.log(np.clip(kept[:, 6:9], 1e-7, 1)) - np.log(prior))
    served = pd.read_csv(run / "eval_predictions.csv", keep_default_na=False)
    served = served[served["split"] == "validation"]
    probs = served[[f"prob_{c}" for c in card["labels"]]].to_numpy()
    np.testing.assert_allclose(probs, 0.5 * kept[:, :3] + 0.5 * product, atol=1e-4)
    rows = pd.read_csv(data / "train.csv", keep_default_na=False).head(3).assign(review="")
    rows.to_csv(tmp_path / "blank.csv", index=False)
    out = api.predict(run, tmp_path / "blank.csv")
    assert np.allclose(out[[c for c in out.columns if c.startswith("prob_")]].sum(axis=1), 1.0, atol=1e-4)
