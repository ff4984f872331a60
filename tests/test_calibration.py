"""Calibration after the search (stage `calibrate`, heads/calibration.py): temperature scaling,
decision thresholds, split-conformal intervals; and one small fit whose SavedModel serves them."""

import json
import shutil
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from conftest import run_cli

from mmauto.heads import calibration as cal
from mmauto.heads import head_for, scaling


def train_spec(**kw):
    base = {"calibrate": True, "threshold": None, "threshold_metric": "accuracy", "interval_coverage": 0.9}
    return types.SimpleNamespace(**{**base, **kw})


def overconfident(n=3000, classes=4, seed=0, sharpen=3.0):
    """Softmax outputs whose logits are the true ones times `sharpen`: right on average in
    ranking, over-confident in probability."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    p_true = cal.softmax(logits)
    y = np.array([rng.choice(classes, p=p) for p in p_true])
    return cal.softmax(logits * sharpen).astype("float32"), y


def test_temperature_scaling_fixes_overconfidence():
    probs, y = overconfident()
    head = head_for("classification", "label", ["a", "b", "c", "d"], {"classes": ["a", "b", "c", "d"]})
    info = head.calibrate(probs, y, train_spec())["calibration"]
    assert info["applied"] and 2.0 < info["temperature"] < 4.5  # the logits were sharpened 3x
    assert info["ece_after"] < info["ece_before"] / 2
    assert info["log_loss_after"] < info["log_loss_before"]
    calibrated = head.expected(probs)
    assert np.allclose(calibrated.sum(axis=1), 1, atol=1e-5)
    assert (calibrated.argmax(axis=1) == probs.argmax(axis=1)).all()  # the ranking is kept
    # the served graph applies the same temperature
    served = head.serve(tf.constant(probs))["probabilities"].numpy()
    assert np.abs(served - calibrated).max() < 1e-5


def test_temperature_not_kept_when_already_calibrated_or_switched_off():
    probs, y = overconfident(sharpen=1.0, seed=1)
    head = head_for("classification", "label", ["a", "b", "c", "d"], {"classes": ["a", "b", "c", "d"]})
    info = head.calibrate(probs, y, train_spec())["calibration"]
    assert abs(info["fitted_temperature"] - 1.0) < 0.15
    off = head_for("classification", "label", ["a", "b", "c", "d"], {"classes": ["a", "b", "c", "d"]})
    sharp, y2 = overconfident(seed=2)
    info = off.calibrate(sharp, y2, train_spec(calibrate=False))["calibration"]
    assert not info["applied"] and off.temperature is None and info["method"] is None
    assert np.array_equal(off.expected(sharp), sharp)


def shifted_binary(n=4000, seed=0):
    """Sigmoid outputs over-confident (logits x2.5) and shifted (positives rarer than the
    model thinks: the true logit is the model's / 2.5 - 1.5)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < cal.sigmoid(z - 1.5)).astype(int)
    return cal.sigmoid(2.5 * z).astype("float32")[:, None], y


def test_binary_temperature_and_threshold():
    p, y = shifted_binary()
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    out = head.calibrate(p, y, train_spec(calibrate="temperature"))
    c = out["calibration"]
    assert c["applied"] and c["temperature"] > 1 and c["ece_after"] < c["ece_before"]
    t = out["threshold"]
    assert t > 0.55 and out["threshold_chosen_for"] == "accuracy"
    probs = head.expected(p)
    acc = lambda thr: np.mean((probs[:, 1] >= thr) == y)  # noqa: E731
    assert acc(t) > acc(0.5)
    served = head.serve(tf.constant(p))
    assert np.abs(served["probabilities"].numpy() - probs).max() < 1e-5
    labels = served["label"].numpy().astype(str)
    assert (labels == np.where(probs[:, 1] >= t, "yes", "no")).all()
    assert head.card()["threshold"] == t and head.card()["calibration"]["temperature"] == c["temperature"]


def test_platt_scaling_fixes_a_shifted_binary_model():
    """Default `calibrate: true`: a scale and a bias on the logit (vector scaling of one logit,
    Platt's) win the cross-validation over temperature scaling, which cannot move a shift;
    the served probabilities equal the numpy ones and fit fresh rows better."""
    p, y = shifted_binary()
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = head.calibrate(p, y, train_spec())["calibration"]
    cv = c["cross_validated_log_loss"]
    assert c["method"] == "vector" and c["applied"] and cv["vector"] < cv["temperature"] < cv["none"]
    assert abs(c["scale"][0] - 0.4) < 0.05 and abs(c["bias"][0] + 1.5) < 0.15  # the true logit is z / 2.5 - 1.5
    assert head.temperature is None and c["ece_after"] < c["ece_before"] / 3
    fresh, y2 = shifted_binary(seed=1)
    pinned = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    pinned.calibrate(p, y, train_spec(calibrate="temperature"))
    bce = lambda q: -np.mean(y2 * np.log(q[:, 1]) + (1 - y2) * np.log(q[:, 0]))  # noqa: E731
    assert bce(head.expected(fresh)) < bce(pinned.expected(fresh)) - 0.01
    served = head.serve(tf.constant(fresh))["probabilities"].numpy()
    assert np.abs(served - head.expected(fresh)).max() < 1e-5
    assert head.card()["calibration"]["method"] == "vector"


def test_platt_scaling_is_kept_for_a_small_shift():
    """A sigmoid's vector scaling is one bias more than temperature scaling: served when its
    likelihood gain pays for the one parameter more; the bias moves the base rate that
    temperature scaling cannot."""
    def rows(seed):
        rng = np.random.default_rng(seed)
        z = rng.normal(0, 2, 3000)
        return cal.sigmoid(1.2 * z).astype("float32")[:, None], (rng.random(3000) < cal.sigmoid(z - 0.25)).astype(int)

    p, y = rows(0)
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = head.calibrate(p, y, train_spec())["calibration"]
    lr, k = c["likelihood_ratio"], c["parameters"]
    assert k == {"temperature": 1, "vector": 2, "beta": 3} and (lr["vector"] - 2) ** 2 / lr["vector"] > (lr["temperature"] - 1) ** 2 / lr["temperature"]
    assert c["method"] == "vector" and c["applied"] and c["bias"][0] < -0.1
    pinned = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    pinned.calibrate(p, y, train_spec(calibrate="temperature"))
    fresh, y2 = rows(1)
    bce = lambda q: -np.mean(y2 * np.log(q[:, 1]) + (1 - y2) * np.log(q[:, 0]))  # noqa: E731
    assert bce(head.expected(fresh)) < bce(pinned.expected(fresh))


def two_sided(n=4000, seed=0, a=0.4, b=1.8, c=-0.5):
    """Sigmoid outputs whose true logit is a ln p - b ln(1 - p) + c: too sure where the model
    says negative (a < 1), not sure enough where it says positive (b > 1), as the reviews'
    ensembles are; one scale on the logit cannot fix both sides."""
    rng = np.random.default_rng(seed)
    p = cal.sigmoid(rng.normal(1.5, 2.5, n)).astype("float32")
    true = a * np.log(p) - b * np.log1p(-p) + c
    return p[:, None], (rng.random(n) < cal.sigmoid(true)).astype(int)


def test_beta_calibration_fixes_a_two_sided_distortion():
    """Default `calibrate: true` on a binary label: beta calibration (three parameters) wins the
    cross-validation over temperature and Platt scaling, recovers the distortion, serves in
    the graph what numpy computes, and fits fresh rows better than Platt scaling pinned."""
    p, y = two_sided()
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = head.calibrate(p, y, train_spec())["calibration"]
    cv = c["cross_validated_log_loss"]
    assert c["method"] == "beta" and c["applied"] and cv["beta"] < min(cv["vector"], cv["temperature"], cv["none"])
    a, b, bias = c["beta"]
    assert abs(a - 0.4) < 0.15 and abs(b - 1.8) < 0.2 and abs(bias + 0.5) < 0.3
    assert c["shrinkage"] == scaling.shrinkage(c["likelihood_ratio"]["beta"], 3) > 0.9 and c["ece_after"] < c["ece_before"] / 2
    assert head.temperature is None and head.vector_scaling is None and head.card()["calibration"]["method"] == "beta"
    fresh, y2 = two_sided(seed=1)
    served = head.serve(tf.constant(fresh))["probabilities"].numpy()
    assert np.abs(served - head.expected(fresh)).max() < 1e-5
    platt = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    assert platt.calibrate(p, y, train_spec(calibrate="vector"))["calibration"]["method"] == "vector"
    q = lambda h: np.clip(h.expected(fresh)[:, 1], 1e-7, 1 - 1e-7)  # noqa: E731  (float32 reaches 1)
    bce = lambda r: -np.mean(y2 * np.log(r) + (1 - y2) * np.log(1 - r))  # noqa: E731
    assert bce(q(head)) < bce(q(platt)) - 0.005
    pinned = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    full, w = pinned.calibrate(p, y, train_spec(calibrate="beta"))["calibration"]["beta"], c["shrinkage"]  # pinned: not shrunk
    assert c["beta"] == pytest.approx([1 - w + w * full[0], 1 - w + w * full[1], w * full[2]], abs=2e-6)


def test_beta_calibration_is_monotone_and_identity_when_calibrated():
    """a and b stay >= 0, so the served probability keeps the model's ranking; on calibrated
    outputs the fit stays near the identity (a = b = 1, c = 0)."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < cal.sigmoid(z)).astype(int)
    a, b, c = scaling.fit_beta(z, y)
    assert abs(a - 1) < 0.1 and abs(b - 1) < 0.1 and abs(c) < 0.1
    w = scaling.fit_beta(z, 1 - y)  # anti-correlated: the fit may flatten, never invert
    assert w[0] >= 0 and w[1] >= 0
    grid = np.linspace(-8, 8, 50)
    assert np.all(np.diff(scaling.beta_logits(grid, w)) >= -1e-12)


def test_pinned_beta_needs_a_two_class_label(demo_dir, tmp_path):
    """`calibrate: beta` on the demo's three-class label: one line naming the key and the
    target, exit 2, before any training."""
    from mmauto.config.manifest import load_manifest
    from mmauto.data.checks import load_splits
    from mmauto.errors import ManifestError

    shutil.copytree(demo_dir, tmp_path / "d")
    path = tmp_path / "d" / "manifest.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["train"]["calibrate"] = "beta"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ManifestError, match="train.calibrate: 'beta' calibrates a two-class label, and target 'label' has 3 classes"):
        load_splits(load_manifest(path))
    r = run_cli("validate", path)
    assert r.returncode == 2 and "train.calibrate" in r.stderr + r.stdout and "Traceback" not in r.stderr
    # An auxiliary target is trained, never calibrated: its four classes do not matter.
    from mmauto.data.demo import write_demo

    write_demo(tmp_path / "yn", rows=60, seed=0, redundant=True)
    path = tmp_path / "yn" / "manifest.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["train"] = {**(raw.get("train") or {}), "calibrate": "beta"}
    raw["target"] = ["label", {"column": "store", "auxiliary": True}]
    raw["inputs"]["meta"]["categorical"] = [c for c in raw["inputs"]["meta"]["categorical"] if c != "store"]
    path.write_text(yaml.safe_dump(raw))
    assert len(load_splits(load_manifest(path)).classes_by_target["store"]) > 2


def test_vector_scaling_fixes_per_class_miscalibration():
    """Three classes, each with its own over-confidence and bias: vector scaling (per-class
    scales and biases) raises the accuracy the biases cost, and is what the graph serves;
    pinned to temperature the same rows keep a worse log loss. With `calibrate: true` on 80 rows,
    too few for matrix scaling's 12 parameters, vector scaling is chosen and served shrunk."""
    rng = np.random.default_rng(4)
    n, classes = 3000, ["a", "b", "c"]
    true = rng.normal(0, 1.5, (n, 3))
    y = np.array([rng.choice(3, p=q) for q in cal.softmax(true)])
    probs = cal.softmax(true * [3.0, 1.0, 0.5] + [0.0, 1.5, -1.0]).astype("float32")
    head = head_for("classification", "label", classes, {"classes": classes})
    c = head.calibrate(probs, y, train_spec(calibrate="vector"))["calibration"]
    assert c["method"] == "vector" and c["applied"] and len(c["scale"]) == len(c["bias"]) == 3
    temp = head_for("classification", "label", classes, {"classes": classes})
    t = temp.calibrate(probs, y, train_spec(calibrate="temperature"))["calibration"]
    assert c["log_loss_after"] < t["log_loss_after"] - 0.02 and c["ece_after"] < t["ece_after"]
    fixed = head.expected(probs)
    assert np.mean(fixed.argmax(1) == y) > np.mean(probs.argmax(1) == y) + 0.02
    served = head.serve(tf.constant(probs))["probabilities"].numpy()
    assert np.abs(served - fixed).max() < 1e-5
    few = head_for("classification", "label", classes, {"classes": classes})
    small = few.calibrate(probs[:80], y[:80], train_spec())["calibration"]
    assert small["method"] == "vector" and small["applied"] and 0 < small["shrinkage"] < 1
    assert small["cross_validated_log_loss"] is None and set(small["parameters"]) == {"temperature", "vector"}
    off = head_for("classification", "label", classes, {"classes": classes})
    assert off.calibrate(probs, y, train_spec(calibrate=False))["calibration"]["method"] is None and off.vector_scaling is None


def confused(n, seed):
    """Five classes whose model gives class 3 mostly class 4's true logit and the reverse (a
    rating model that mixes up neighbouring stars): softmax(t A) for true logits t."""
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 1.5, (n, 5))
    y = np.array([rng.choice(5, p=q) for q in cal.softmax(t)])
    mix = np.eye(5)
    mix[3:, 3:] = [[0.3, 0.7], [0.7, 0.3]]
    return cal.softmax(t @ mix).astype("float32"), y


def test_matrix_scaling_fixes_confused_classes():
    """Dirichlet calibration (matrix scaling): where the model mixes up two classes, no scale
    per class can undo it and a matrix can. `calibrate: true` chooses it on 3,000 validation
    rows, serves it (shrunk by its likelihood ratio) in the graph as in numpy, and it wins back
    the accuracy and log loss the confusion cost on fresh rows; on 500 rows (fewer than 20 per
    parameter) it is not tried; pinned on a two-class label it is beta calibration."""
    from mmauto.report.html import _scaling_line
    from mmauto_cli.model_cmds import _scaling

    probs, y = confused(3000, 0)
    classes = ["1", "2", "3", "4", "5"]
    head = head_for("classification", "stars", classes, {"classes": classes})
    c = head.calibrate(probs, y, train_spec())["calibration"]
    assert c["method"] == "matrix" and c["applied"] and c["parameters"]["matrix"] == 30
    assert 0.9 < c["shrinkage"] < 1 and np.shape(c["matrix"]) == (5, 5) and head.vector_scaling is None
    fresh, y2 = confused(20000, 1)
    served = head.serve(tf.constant(fresh))["probabilities"].numpy()
    assert np.abs(served - head.expected(fresh)).max() < 1e-5
    vector = head_for("classification", "stars", classes, {"classes": classes})
    vector.calibrate(probs, y, train_spec(calibrate="vector"))
    nll = lambda q: -np.mean(np.log(q[np.arange(len(y2)), y2]))  # noqa: E731
    assert nll(served) < nll(vector.expected(fresh)) - 0.05 < nll(fresh) - 0.05
    assert np.mean(served.argmax(1) == y2) > np.mean(fresh.argmax(1) == y2) + 0.05
    assert _scaling(c).startswith("matrix scaling (5 x 5 and a bias), shrunk to 0.9")
    assert _scaling_line(c).startswith("Matrix scaling (each class logit")
    few = head_for("classification", "stars", classes, {"classes": classes})
    assert "matrix" not in few.calibrate(probs[:500], y[:500], train_spec())["calibration"]["parameters"]
    p, y = two_sided()
    binary = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    assert binary.calibrate(p, y, train_spec(calibrate="matrix"))["calibration"]["method"] == "beta"


def test_ece_floor_reads_a_calibrated_model_on_a_small_set():
    """A perfectly calibrated model scores ECE well above 0 on a few hundred rows; the floor
    says how much, and shrinks with the rows."""
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 1.0, 300)
    eces = [cal.ece(conf, rng.random(300) < conf) for _ in range(200)]
    floor = cal.ece_floor(conf)
    assert 0.03 < floor < 0.08 and abs(floor - np.mean(eces)) < 0.01
    assert cal.ece_floor(np.tile(conf, 100)) < floor / 5
    assert cal.ece_floor(np.ones(50)) == 0.0 and cal.ece_floor([]) == 0.0
    head = head_for("classification", "label", ["a", "b", "c"], {"classes": ["a", "b", "c"]})
    probs = cal.softmax(rng.normal(0, 2, (300, 3))).astype("float32")
    scores = head.score(list(rng.choice(["a", "b", "c"], 300)), {"probabilities": probs})
    assert scores["ece_floor"] == pytest.approx(cal.ece_floor(probs.max(1)))


def test_threshold_choice_on_skewed_scores():
    # Scores all below 0.5 but separating the classes at 0.3: the default 0.5 labels everything 0.
    rng = np.random.default_rng(1)
    y = rng.random(500) < 0.4
    p = np.where(y, rng.uniform(0.32, 0.48, 500), rng.uniform(0.02, 0.28, 500))
    for metric in ("accuracy", "f1"):
        t = cal.choose_threshold(p, y, metric)
        assert 0.28 <= t <= 0.32
    assert cal.choose_threshold(p, np.zeros(500), "f1") == 0.5  # no positives: the default stays


def test_pinned_threshold_stays():
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]}, threshold=0.7)
    p = np.linspace(0.01, 0.99, 200, dtype="float32")[:, None]
    out = head.calibrate(p, (p[:, 0] > 0.2).astype(int), train_spec(threshold=0.7))
    assert out["threshold"] == 0.7 and out["threshold_chosen_for"] is None
    ml = head_for("multilabel", "tags", ["a", "b"], {"classes": ["a", "b"]}, threshold=0.3)
    out = ml.calibrate(np.tile(p, (1, 2)), np.ones((200, 2)), train_spec(threshold=0.3))
    assert ml.thresholds == [0.3, 0.3]


def test_multilabel_thresholds_per_label():
    rng = np.random.default_rng(2)
    n = 1000
    truth = (rng.random((n, 2)) < [0.5, 0.3]).astype(int)
    # label a separates at 0.5; label b's scores are all low, separating at 0.2
    p = np.stack([np.where(truth[:, 0], rng.uniform(0.55, 0.95, n), rng.uniform(0.05, 0.45, n)),
                  np.where(truth[:, 1], rng.uniform(0.22, 0.4, n), rng.uniform(0.01, 0.18, n))], axis=1).astype("float32")
    head = head_for("multilabel", "tags", ["a", "b"], {"classes": ["a", "b"]})
    out = head.calibrate(p, truth, train_spec(calibrate=False))
    ta, tb = out["thresholds"]["a"], out["thresholds"]["b"]
    assert 0.45 <= ta <= 0.55 and 0.18 <= tb <= 0.22
    labels = head.serve(tf.constant(p))["label"].numpy().astype(str)
    want = ["|".join(c for c, on in zip("ab", row) if on) for row in truth]
    assert list(labels) == want
    scores = head.score([[c for c, on in zip("ab", row) if on] for row in truth], {"probabilities": p})
    assert scores["macro_f1"] == 1.0 and scores["ece"] == pytest.approx(cal.ece(p, truth))


def test_conformal_interval_covers():
    rng = np.random.default_rng(3)
    x = rng.normal(size=4000)
    y = 3 * x + rng.standard_t(4, size=4000) * 2  # heavy-tailed noise
    pred = 3 * x
    half = cal.conformal_half_width((y - pred)[:2000], 0.9)
    inside = np.mean(np.abs((y - pred)[2000:]) <= half)
    assert 0.87 <= inside <= 0.93
    assert cal.conformal_half_width(np.ones(5), 0.9) is None  # too few rows for 90%
    head = head_for("regression", "price", None, {"mean": 10.0, "std": 2.0})
    z = ((pred - 10.0) / 2.0).astype("float32")[:, None]
    out = head.calibrate(z[:2000], ((y[:2000] - 10.0) / 2.0)[:, None], train_spec())
    assert out["interval"]["coverage"] == 0.9 and abs(out["interval"]["half_width"] - half) < 1e-3
    served = {k: v.numpy() for k, v in head.serve(tf.constant(z[2000:])).items()}
    assert set(served) == {"value", "value_lower", "value_upper"} and set(head.output_specs()) == set(served)
    scores = head.score(y[2000:], served)
    assert 0.87 <= scores["interval_coverage"] <= 0.93
    assert list(head.columns(served)) == ["prediction", "prediction_lower", "prediction_upper"]


def test_ece_bins():
    assert cal.ece([0.9] * 10, [True] * 9 + [False]) < 1e-9
    assert abs(cal.ece([0.9] * 10, [True] * 5 + [False] * 5) - 0.4) < 1e-9


def small_fit(demo_dir, tmp_path, calibrate, frame=lambda f: f, target=None):
    """One 2-epoch trial on the demo's text and table, 84 training rows and 36 validation rows
    (val.csv), `train.calibrate` pinned; returns the data folder, RUN_DIR and the fit's summary."""
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    f = frame(pd.read_csv(data / "train.csv"))
    f.iloc[:84].to_csv(data / "train.csv", index=False)
    f.iloc[84:].to_csv(data / "val.csv", index=False)
    m = yaml.safe_load((data / "manifest.yaml").read_text())
    m["data"] = {"train": "train.csv", "validation": "val.csv"}
    m["target"] = target or m["target"]
    m["inputs"] = {k: v for k, v in m["inputs"].items() if k in ("review", "meta")}
    m["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 16}}
    m["train"] = {"epochs": 2, "batch_size": 16, "ensemble": False, "calibrate": calibrate}
    (data / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    run = tmp_path / "run"
    r = run_cli("fit", data / "manifest.yaml", "--out", run, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return data, run, json.loads(r.stdout)


def test_fit_serves_calibrated_probabilities_and_threshold(demo_dir, tmp_path):
    """A small binary fit: the card's calibration entry, `mmauto predict`'s probabilities equal
    the temperature-scaled outputs of the exported trial (its kept validation predictions), and
    the served label is the chosen threshold's."""
    def deal(f):
        flip = np.random.default_rng(0).random(len(f)) < 0.2  # noisy labels: validation is not separable
        return f.assign(deal=np.where((f["price"] > 50) ^ flip, "yes", "no"))

    # Pinned: on these 36 rows the default may serve Platt scaling; the graph's other scalings
    # are checked against numpy in the head tests above.
    data, run, summary = small_fit(demo_dir, tmp_path, "temperature", deal, target="deal")
    card = json.loads((run / "mmauto.json").read_text())
    c = card["calibration"]
    assert {"method", "temperature", "ece_before", "ece_after", "applied"} <= set(c) and c["method"] == "temperature"
    assert summary["calibration"]["calibration"] == c
    if c["applied"]:
        assert c["log_loss_after"] < c["log_loss_before"] and c["temperature"] != 1.0
    else:
        assert c["temperature"] == 1.0 and c["ece_after"] == c["ece_before"] and c["not_kept"]
    assert card["threshold_chosen_for"] == "accuracy" and 0 < card["threshold"] < 1
    print("calibration:", c, "threshold:", card["threshold"])

    # parity: the served probabilities are the calibrated outputs of the exported trial
    raw = np.load(run / "search" / f"trial_{summary['best_trial']}" / "val_predictions.npy")[:, 0]
    p = np.clip(raw.astype("float32"), np.float32(1e-7), np.float32(1 - 1e-7)).astype("float64")
    calibrated = 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / c["temperature"]))
    assert run_cli("predict", run, data / "val.csv", "--out", tmp_path / "p.csv").returncode == 0
    served = pd.read_csv(tmp_path / "p.csv")
    assert len(served) == len(calibrated) == 36
    assert np.abs(served["prob_yes"].to_numpy() - calibrated).max() < 1e-4
    assert (served["prediction"] == np.where(served["prob_yes"] >= card["threshold"], "yes", "no")).all()
    assert summary["metrics"]["validation"]["ece"] == pytest.approx(c["ece_after"], abs=1e-3)
    report = (run / "report" / "index.html").read_text()
    assert "Decision threshold" in report and "Temperature scaling" in report


def test_fit_serves_a_pinned_matrix_scaling(demo_dir, tmp_path):
    """`calibrate: matrix` on a small 3-class fit: the card holds the 3 x 3 matrix and the bias,
    and `mmauto predict` serves softmax(log p W + b) of the exported trial's kept validation
    outputs."""
    data, run, summary = small_fit(demo_dir, tmp_path, "matrix")
    c = json.loads((run / "mmauto.json").read_text())["calibration"]
    assert c["method"] == "matrix" and c["applied"] and c["shrinkage"] is None and np.shape(c["matrix"]) == (3, 3), c
    # the main head's probabilities come first (the per-input heads' follow)
    raw = np.load(run / "search" / f"trial_{summary['best_trial']}" / "val_predictions.npy")[:, :3].astype("float32")
    scaled = np.log(np.maximum(raw, np.float32(cal.EPS_SOFTMAX))) @ np.asarray(c["matrix"]) + c["bias"]
    assert run_cli("predict", run, data / "val.csv", "--out", tmp_path / "p.csv").returncode == 0
    served = pd.read_csv(tmp_path / "p.csv")
    classes = json.loads((run / "mmauto.json").read_text())["labels"]
    assert np.abs(served[[f"prob_{k}" for k in classes]].to_numpy() - cal.softmax(scaled)).max() < 1e-4
    assert "Matrix scaling" in (run / "report" / "index.html").read_text()


def test_separable_validation_keeps_no_temperature():
    y = np.arange(200) % 2
    p = np.where(y == 1, 0.8, 0.2).astype("float32")[:, None]  # right on every row: T -> 0
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = head.calibrate(p, y, train_spec())["calibration"]
    assert not c["applied"] and c["fitted_temperature"] < 0.06 and "bound" in c["not_kept"] and head.temperature is None
    for pinned in ("vector", "beta"):  # pinned, the same: a scale fitted to separated rows only grows
        h = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
        c = h.calibrate(p, y, train_spec(calibrate=pinned))["calibration"]
        assert c["method"] == pinned and not c["applied"] and "separated perfectly" in c["not_kept"], c
        assert np.allclose(h.expected(p)[:, 1], p[:, 0])


def test_calibration_settings_may_change_on_resume(demo_dir):
    from mmauto.config.manifest import load_manifest
    from mmauto.run.rundir import fingerprint

    m = load_manifest(demo_dir / "manifest.yaml")
    assert m.train.calibrate is True and m.train.threshold is None and m.train.threshold_metric == "accuracy"
    assert m.train.interval_coverage == 0.9
    train = fingerprint(m)["train"]
    assert not {"calibrate", "threshold_metric", "interval_coverage"} & set(train) and "threshold" in train


@pytest.mark.parametrize("kind", ["binary", "softmax"])
def test_a_gain_within_the_noise_serves_no_scaling(kind):
    """Probabilities that are already calibrated: a temperature or vector scaling fitted on
    these rows lowers their own log loss a little, but its cross-validated gain is within
    the noise (a likelihood ratio under its parameter count), so `calibrate: true` serves none and
    says why; the served probabilities are the model's."""
    rng = np.random.default_rng(7)
    if kind == "binary":
        z = rng.normal(0, 2, 3000)
        y = (rng.random(3000) < cal.sigmoid(z)).astype(int)
        probs, classes = cal.sigmoid(z).astype("float32")[:, None], ["no", "yes"]
    else:
        z = rng.normal(0, 1.5, (3000, 3))
        y = np.array([rng.choice(3, p=q) for q in cal.softmax(z)])
        probs, classes = cal.softmax(z).astype("float32"), ["a", "b", "c"]
    head = head_for("classification", "label", classes, {"classes": classes})
    c = head.calibrate(probs, y, train_spec())["calibration"]
    assert not c["applied"] and "likelihood ratio" in c["not_kept"]
    assert all(scaling.shrinkage(c["likelihood_ratio"][m], c["parameters"][m]) == 0 for m in c["likelihood_ratio"])
    assert c["log_loss_after"] == c["log_loss_before"]
    pinned = head_for("classification", "label", classes, {"classes": classes})
    assert pinned.calibrate(probs, y, train_spec(calibrate="temperature"))["calibration"]["applied"]  # pinned: as asked
    served = head.serve(tf.constant(probs))["probabilities"].numpy()
    expect = np.concatenate([1 - probs, probs], axis=1) if kind == "binary" else probs
    assert np.abs(served - expect).max() < 1e-5


def test_cli_and_report_name_the_scaling_served():
    """The fit's `calibration:` line and the report's sentence say which scaling was served."""
    from mmauto.report.html import _scaling_line
    from mmauto_cli.model_cmds import _scaling

    p, y = two_sided()
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = head.calibrate(p, y, train_spec())["calibration"]
    assert _scaling(c).startswith("beta calibration (a, b, c = 0.")
    assert _scaling_line(c).startswith("Beta calibration (logit = 0.") and "ln(1 - p)" in _scaling_line(c)
    platt = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    assert _scaling(platt.calibrate(p, y, train_spec(calibrate="vector"))["calibration"]).startswith("Platt scaling (scale ")
    rng = np.random.default_rng(7)
    z = rng.normal(0, 2, 3000)
    calibrated = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = calibrated.calibrate(cal.sigmoid(z).astype("float32")[:, None], (rng.random(3000) < cal.sigmoid(z)).astype(int), train_spec())
    assert "scaling not kept (no scaling's likelihood ratio" in _scaling(c["calibration"])


def under_confident(n, seed):
    """Three-class outputs softmax(z) whose true probabilities are softmax(1.4 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 3))
    return cal.softmax(z).astype("float32"), np.array([rng.choice(3, p=q) for q in cal.softmax(1.4 * z)])


def test_a_small_gain_is_served_shrunk():
    """`calibrate: true`: a scaling's fitted change of the logits is served times max(0, 1 - k/LR),
    LR its likelihood-ratio statistic on validation and k its parameters. Under-confident outputs
    on 200 rows: temperature scaling's cross-validated gain is 1.3 standard errors (an
    all-or-nothing gate at 2 served none); served shrunk, it is in the graph as in numpy and
    fits fresh rows better than none. Vector scaling's 6 parameters gain too little more."""
    assert scaling.shrinkage(0.5, 1) == scaling.shrinkage(1.0, 1) == 0.0 and scaling.shrinkage(4.0, 1) == 0.75
    p, y = under_confident(200, 0)
    head = head_for("classification", "label", ["a", "b", "c"], {"classes": ["a", "b", "c"]})
    c = head.calibrate(p, y, train_spec())["calibration"]
    assert 1 < c["cross_validated_gain_z"]["temperature"] < 2 and c["parameters"] == {"temperature": 1, "vector": 6}
    assert c["method"] == "temperature" and c["applied"] and c["shrinkage"] == scaling.shrinkage(c["likelihood_ratio"]["temperature"], 1)
    w, fitted = c["shrinkage"], c["fitted_temperature"]
    assert c["temperature"] == pytest.approx(1 / (1 - w + w / fitted), abs=1e-5) and fitted < c["temperature"] < 1
    fresh, y2 = under_confident(20000, 1)
    assert np.abs(head.serve(tf.constant(fresh))["probabilities"].numpy() - head.expected(fresh)).max() < 1e-5
    nll = lambda q: -np.mean(np.log(q[np.arange(len(y2)), y2]))  # noqa: E731
    assert nll(head.expected(fresh)) < nll(fresh) - 0.005


def test_a_pinned_bias_may_move_the_base_rate_of_an_uninformative_model():
    """Outputs no better than chance (a temperature runs to its upper bound) on a label that is
    positive 80% of the time: pinned Platt scaling's bias still moves the served base rate."""
    rng = np.random.default_rng(2)
    p = cal.sigmoid(rng.normal(0, 1, 2000)).astype("float32")[:, None]
    y = (rng.random(2000) < 0.8).astype(int)
    head = head_for("classification", "deal", ["no", "yes"], {"classes": ["no", "yes"]})
    c = head.calibrate(p, y, train_spec(calibrate="vector"))["calibration"]
    assert c["fitted_temperature"] > 19 and c["applied"] and c["method"] == "vector"
    assert abs(head.expected(p)[:, 1].mean() - 0.8) < 0.02


def test_multilabel_temperature_is_served_shrunk():
    """A multilabel head's shared temperature is served shrunk by 1 - 1/LR (LR over every row
    and label) with `calibrate: true`, as fitted when pinned, and not at all where its gain is
    under what a chance fit of one parameter gives."""
    rng = np.random.default_rng(5)

    def outputs(n, t_true):
        z = rng.normal(0.0, 2.0, (n, 3))
        truth = (rng.random((n, 3)) < cal.sigmoid(z / t_true)).astype(int)
        return cal.sigmoid(z).astype("float32"), truth

    p, truth = outputs(60, 1.6)  # over-confident: T near 1.6 fits
    head = head_for("multilabel", "tags", ["a", "b", "c"], {"classes": ["a", "b", "c"]})
    out = head.calibrate(p, truth, train_spec())["calibration"]
    t, lr = out["fitted_temperature"], out["likelihood_ratio"]["temperature"]
    assert out["applied"] and lr > 1.0 and out["shrinkage"] == pytest.approx(1 - 1 / lr, abs=1e-4)
    assert 1.0 < head.temperature < t and head.temperature == pytest.approx(1 / (1 - out["shrinkage"] + out["shrinkage"] / t), abs=1e-5)
    served = head.serve(tf.constant(p))["probabilities"].numpy()
    np.testing.assert_allclose(served, cal.sigmoid(cal.sigmoid_logits(p) / head.temperature), atol=1e-5)
    pinned = head_for("multilabel", "tags", ["a", "b", "c"], {"classes": ["a", "b", "c"]})
    assert pinned.calibrate(p, truth, train_spec(calibrate="temperature"))["calibration"]["temperature"] == pytest.approx(t)
    rng = np.random.default_rng(0)  # calibrated outputs: the T fitted to them gains LR 0.32 for 1 parameter
    p, truth = outputs(40, 1.0)
    calm = head_for("multilabel", "tags", ["a", "b", "c"], {"classes": ["a", "b", "c"]})
    got = calm.calibrate(p, truth, train_spec())["calibration"]
    assert not got["applied"] and calm.temperature is None and got["likelihood_ratio"]["temperature"] < 1.0, got
    assert "likelihood ratio on the 40 validation rows" in got["not_kept"]
