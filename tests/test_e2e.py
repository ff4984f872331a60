"""End to end through the CLI: fit the demo data, then a process with only TensorFlow serves
the SavedModel from raw bytes and strings and agrees with `mmauto predict` row by row."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import run_cli


def test_run_folder(fitted):
    run, summary, _ = fitted
    for f in ("model/saved_model.pb", "mmauto.json", "metrics.json", "history.json", "leaderboard.csv", "leaderboard.json", "preprocessing.json", "fit.log"):
        assert (run / f).exists(), f
    card = json.loads((run / "mmauto.json").read_text())
    names = {i["name"]: i for i in card["signatures"]["serving_default"]["inputs"]}
    assert set(names) == {"photo", "review", "voice", "price", "weight", "colour", "store"}
    assert names["photo"]["dtype"] == "string" and names["price"]["dtype"] == "float32"
    assert card["labels"] == ["high", "low", "mid"] and card["parity"]["max_abs_diff"] <= 1e-4
    assert summary["fusion"] == "concat" and summary["trials"] == 1
    assert set(json.loads((run / "metrics.json").read_text())) == {"validation", "test"}


SERVE = textwrap.dedent(
    """
    import sys, json, numpy as np, pandas as pd, tensorflow as tf
    from pathlib import Path
    assert "mmauto" not in sys.modules and "keras_hub" not in sys.modules
    run, data = Path(sys.argv[1]), Path(sys.argv[2])
    frame = pd.read_csv(data / "train.csv")
    sig = tf.saved_model.load(str(run / "model")).signatures["serving_default"]
    def blob(p):
        return (data / p).read_bytes() if isinstance(p, str) and p else b""
    feed = {
        "photo": tf.constant([blob(p) for p in frame["image"]]),
        "voice": tf.constant([blob(p) for p in frame["audio"]]),
        "review": tf.constant(frame["review"].fillna("").astype(str).tolist()),
        "price": tf.constant(frame["price"].astype("float32").values),
        "weight": tf.constant(frame["weight"].astype("float32").values),
        "colour": tf.constant(frame["colour"].fillna("").astype(str).tolist()),
        "store": tf.constant(frame["store"].fillna("").astype(str).tolist()),
    }
    out = sig(**feed)
    print(json.dumps({"labels": [x.decode() for x in out["label"].numpy()], "probs": out["probabilities"].numpy().tolist()}))
    """
)


def serve(run, data):
    r = subprocess.run([sys.executable, "-c", SERVE, str(run), str(data)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_savedmodel_matches_predict(fitted, tmp_path):
    run, _, data = fitted
    r = run_cli("predict", run, data / "train.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    preds = pd.read_csv(tmp_path / "p.csv")
    served = serve(run, data)
    assert preds["prediction"].tolist() == served["labels"]
    assert list(preds.columns) == ["id", "prediction", "prob_high", "prob_low", "prob_mid"]
    assert abs(preds[["prob_high", "prob_low", "prob_mid"]].values - served["probs"]).max() < 1e-5


def test_missing_inputs_agree(fitted, tmp_path):
    """Empty cells in predict and empty bytes in the SavedModel are the same missing input."""
    run, _, data = fitted
    blanked = tmp_path / "data"
    import shutil

    shutil.copytree(data, blanked)
    frame = pd.read_csv(blanked / "train.csv")
    frame.loc[::2, "image"] = ""
    frame.loc[1::3, "review"] = ""
    frame.loc[::5, "price"] = None
    frame.to_csv(blanked / "train.csv", index=False)
    r = run_cli("predict", run, blanked / "train.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    assert pd.read_csv(tmp_path / "p.csv")["prediction"].tolist() == serve(run, blanked)["labels"]


def test_evaluate_and_ablate(fitted):
    run, _, data = fitted
    r = run_cli("evaluate", run, data / "train.csv", "--ablate", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert 0 <= res["metrics"]["accuracy"] <= 1 and res["metrics"]["confusion_matrix"]["labels"] == ["high", "low", "mid"]
    removed = [tuple(x["removed"]) for x in res["ablation"]["rows"]]
    assert ("photo",) in removed and ("meta",) in removed and ("photo", "review") in removed


def test_leaderboard_json(fitted):
    run, _, _ = fitted
    r = run_cli("leaderboard", run, "--json")
    rows = json.loads(r.stdout)
    # An exported ensemble (here: the trial and the linear model, run/linear.py) has its row on top.
    trials = [row for row in rows if row["trial"] != "ensemble"]
    assert trials[0]["status"] == "completed" and trials[0]["fusion"] == "concat"
    assert {"trial", "fusion", "status", "score", "seconds"} <= set(trials[0])
    # Piped into a file or a CI log the table keeps whole cells (rich's 80 columns cut them).
    r = run_cli("leaderboard", run, env={"COLUMNS": ""})
    assert r.returncode == 0 and "completed" in r.stdout and "concat" in r.stdout and "…" not in r.stdout


def test_predict_on_folder_without_run(tmp_path):
    r = run_cli("predict", tmp_path, tmp_path / "x.csv")
    assert r.returncode == 2 and "not an mmauto run folder" in r.stderr


def test_explain_gives_each_inputs_contribution(fitted, tmp_path):
    """serving_explain's contribution of an input is the predicted class's probability as sent
    minus its probability with that input left empty (what serving_default answers then)."""
    import numpy as np
    import pandas as pd

    from mmauto import api
    from mmauto.evaluation.predict import blank

    run, _, demo = fitted
    rows = pd.read_csv(demo / "train.csv", keep_default_na=False).head(6)
    table = demo / "explain_rows.csv"  # media paths are relative to the table's folder
    rows.to_csv(table, index=False)
    got = api.predict(run, table, explain=True)
    plain = api.predict(run, table)
    probs = [c for c in plain.columns if c.startswith("prob_")]
    np.testing.assert_allclose(got[probs].to_numpy(), plain[probs].to_numpy(), atol=1e-5)
    pick = plain[probs].to_numpy().argmax(axis=1)
    m, prep, _ = api._open(run)
    for name in m.inputs:
        blank(prep, rows, [name]).to_csv(demo / "explain_blank.csv", index=False)
        without = api.predict(run, demo / "explain_blank.csv")[probs].to_numpy()
        want = plain[probs].to_numpy()[np.arange(6), pick] - without[np.arange(6), pick]
        np.testing.assert_allclose(got[f"contribution_{name}"].to_numpy(), want, atol=1e-4)
    r = run_cli("predict", run, table, "--explain", "--out", tmp_path / "p.csv")
    assert r.returncode == 0 and "contribution_review" in pd.read_csv(tmp_path / "p.csv").columns


def test_a_batch_of_zero_rows_gets_empty_outputs(fitted):
    """0 rows used to fail inside batch normalisation; both signatures now answer empty outputs."""
    import tensorflow as tf

    run, _, _ = fitted
    model = tf.saved_model.load(str(run / "model"))
    for name in ("serving_default", "serving_waveform", "serving_explain"):
        sig = model.signatures[name]
        spec = sig.structured_input_signature[1]
        out = sig(**{k: tf.zeros([0] + [d or 1 for d in s.shape[1:]], s.dtype) for k, s in spec.items()})
        assert out["probabilities"].shape == (0, 3) and out["label"].shape == (0,) and out["label"].dtype == tf.string


def _mp3(path):
    sf = pytest.importorskip("soundfile")
    import numpy as np

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    sf.write(str(path), (0.3 * np.sin(np.linspace(0, 2000, 8000))).astype("float32"), 16000, format="MP3")
    return path


def test_audio_that_is_not_wav(fitted, tmp_path, monkeypatch):
    """MP3 bytes sent to the SavedModel fail with a message naming the input (TensorFlow's own
    quoted the bytes: a UnicodeDecodeError in Python). `mmauto predict` converts an MP3 file as
    training does; MP3 bytes that reach the model anyway are a one-line error naming row and
    input; a Parquet cell holding the bytes is refused as not a path."""
    import shutil

    import tensorflow as tf

    from mmauto import api
    from mmauto.errors import DataError
    from mmauto.modalities import audio

    run, _, data = fitted
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    mp3 = _mp3(folder / "audio" / "song.mp3")
    sig = tf.saved_model.load(str(run / "model")).signatures["serving_default"]
    spec = sig.structured_input_signature[1]
    feed = {k: tf.constant([b""] if s.dtype == tf.string else [float("nan")], s.dtype) for k, s in spec.items()}
    feed["voice"] = tf.constant([mp3.read_bytes()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="voice: the bytes are not a WAV file"):
        sig(**feed)

    frame = pd.read_csv(folder / "train.csv").head(4)
    frame.loc[1, "audio"] = "audio/song.mp3"
    frame.to_csv(folder / "mp3.csv", index=False)
    r = run_cli("predict", run, folder / "mp3.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 4

    # The bytes unconverted, as a client would send them: the row and the input are named.
    monkeypatch.setattr(audio, "to_wav_bytes", lambda p: open(p, "rb").read())
    with pytest.raises(DataError) as err:
        api.predict(run, folder / "mp3.csv", tmp_path / "q.csv")
    assert str(err.value).startswith("row 2: the model cannot take input 'voice': voice: the bytes are not a WAV file")
    monkeypatch.undo()

    frame["audio"] = [(folder / p).read_bytes() for p in frame["audio"]]
    frame.to_parquet(folder / "bytes.parquet")
    r = run_cli("predict", run, folder / "bytes.parquet", "--out", tmp_path / "b.csv")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "4 row(s) with not a file path (rows 1, 2, 3, 4)" in r.stderr and "takes file paths" in r.stderr


def test_predict_refuses_rows_with_every_input_missing(fitted, tmp_path):
    """The SavedModel answers such a row with no sign; predict refuses it, and the card says so."""
    import shutil

    run, _, data = fitted
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    frame = pd.read_csv(folder / "train.csv").head(5)
    for col in ("image", "audio", "review", "price", "weight", "colour", "store"):
        frame.loc[2, col] = None
    frame.to_csv(folder / "t.csv", index=False)
    r = run_cli("predict", run, folder / "t.csv", "--out", tmp_path / "p.csv")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "1 row(s) with no input present (rows 3)" in r.stderr and not (tmp_path / "p.csv").exists()
    card = json.loads((run / "mmauto.json").read_text())
    assert "EVERY input missing" in card["missing_inputs"] and "`mmauto predict` refuses such rows" in card["missing_inputs"]


def test_eval_predictions_are_addressable(fitted):
    """Each row of eval_predictions.csv names its split, table, 1-based row there and id."""
    run, _, data = fitted
    preds = pd.read_csv(run / "eval_predictions.csv", keep_default_na=False, dtype={"prediction": str, "target": str})
    assert list(preds.columns[:4]) == ["split", "table", "row", "id"]
    assert preds.groupby("split").size().to_dict() == {"test": 24, "validation": 24}
    assert set(preds["table"]) == {str((data / "train.csv").resolve())} and preds["row"].is_unique
    source = pd.read_csv(data / "train.csv", keep_default_na=False, dtype=str).iloc[preds["row"] - 1]
    assert preds["id"].astype(str).tolist() == source["id"].tolist()
    assert preds["target"].tolist() == source["label"].tolist()
