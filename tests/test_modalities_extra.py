"""Video, time series and precomputed embeddings: reading and sampling, row checks under both
error policies, pipeline shapes, the encoders' searched variants, the demo, and one fit whose
SavedModel a TensorFlow-only process serves exactly as `mmauto predict` does."""

import json
import shutil
import subprocess
import sys
import textwrap

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd
import pydantic
import pytest
import yaml
from conftest import run_cli
from PIL import Image

from mmauto.config.manifest import load_manifest
from mmauto.data.checks import load_splits
from mmauto.data.demo import ALL_MODALITIES, DEFAULT_MODALITIES, _write_video, write_demo
from mmauto.data.pipeline import Preprocessing
from mmauto.errors import DataError, ManifestError
from mmauto.modalities.timeseries import TimeseriesOptions, fix_length, parse_series
from mmauto.modalities.video import VideoOptions, read_frames, sample_indices

EXTRA = [m for m in ALL_MODALITIES if m not in DEFAULT_MODALITIES]


def ramp(n=8, size=16):
    """n frames of one flat grey level each: frame k is 20 + 25 k."""
    return [np.full((size, size, 3), 20 + 25 * k, np.uint8) for k in range(n)]


def levels(frames):
    return [int(round(float(f.mean()))) for f in frames]


# === Video ===


def test_sampling_rules():
    uniform = VideoOptions(column="v", frames=4)
    assert sample_indices(8, 25.0, uniform) == [1, 3, 5, 7]  # the middle of 4 equal segments
    assert sample_indices(2, 25.0, uniform) == [0, 0, 1, 1]  # a short clip repeats frames
    fps = VideoOptions(column="v", frames=4, sampling="fps", fps=4)
    assert sample_indices(40, 8.0, fps) == [0, 2, 4, 6]  # one frame every 1/4 s at 8 fps
    assert sample_indices(5, 8.0, fps) == [0, 2, 4, 4]  # past the end: the last frame again
    for bad in ({"sampling": "fps"}, {"fps": 4}, {"size": [4, 4]}):
        with pytest.raises(pydantic.ValidationError):
            VideoOptions(column="v", **bad)


def test_read_frames_from_file_and_folder(tmp_path):
    _write_video(tmp_path / "clip.mp4", ramp())
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, f in enumerate(ramp(size=24)):  # larger than the model size: resized on reading
        Image.fromarray(f).save(folder / f"{k:03d}.png")
    opts = VideoOptions(column="v", frames=4, size=[16, 16])
    from_folder = read_frames(str(folder), opts)
    assert from_folder.shape == (4, 16, 16, 3) and from_folder.dtype == np.uint8
    assert levels(from_folder) == [45, 95, 145, 195]  # frames 1, 3, 5, 7
    from_file = read_frames(str(tmp_path / "clip.mp4"), opts)
    assert np.allclose(levels(from_file), [45, 95, 145, 195], atol=4)  # lossy codec
    gray = read_frames(str(folder), VideoOptions(column="v", frames=2, size=[8, 12], channels=1))
    assert gray.shape == (2, 8, 12, 1)
    # fps sampling: the folder counts as folder_fps frames per second.
    fps = read_frames(str(folder), VideoOptions(column="v", frames=3, size=[16, 16], sampling="fps", fps=2, folder_fps=4))
    assert levels(fps) == [20, 70, 120]
    assert not read_frames("", opts).any()  # an empty path is a missing video: zeros


# === Time series ===


def test_series_cells(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10, dtype="float32").reshape(5, 2))
    (tmp_path / "b.csv").write_text("x,y\n1,2\n3,\n5,6\n")
    (tmp_path / "c.csv").write_text("1,2\n3,oops\n")
    assert parse_series(str(tmp_path / "a.npy"), 2).shape == (5, 2)
    b = parse_series(str(tmp_path / "b.csv"), 2)  # header row skipped, a blank is a gap (NaN)
    assert b.shape == (3, 2) and np.isnan(b[1, 1]) and b[2, 0] == 5
    assert parse_series("[1, 2, 3]", 1).shape == (3, 1)
    assert parse_series("[[1, 2], [3, null]]", 2).shape == (2, 2)
    assert parse_series("", 2) is None and parse_series("[null, null]", 1) is None
    for ref, reason in [(str(tmp_path / "c.csv"), "unreadable series"), ("[1, 2]", "wrong channel count"),
                        (str(tmp_path / "none.npy"), "missing media file"), ("[[1], [2, 3]]", "unreadable series")]:
        with pytest.raises(ValueError) as err:
            parse_series(ref, 2)
        assert err.value.reason == reason
    opts = TimeseriesOptions(column="s", length=4, channels=2)
    padded = fix_length(parse_series(str(tmp_path / "a.npy"), 2)[:3], opts)
    assert padded.shape == (4, 2) and np.isnan(padded[3]).all() and padded[2, 1] == 5
    assert fix_length(parse_series(str(tmp_path / "a.npy"), 2), opts)[-1, 0] == 6  # trimmed to 4


def test_series_decoder_any_length():
    import tensorflow as tf

    from mmauto.modalities.timeseries import TimeseriesDecoder

    opts = TimeseriesOptions(column="s", length=6, channels=2)
    dec = TimeseriesDecoder("s", opts, {"mean": [1.0, 10.0], "std": [2.0, 5.0]})
    for steps in (3, 6, 9):
        x = np.full((3, steps, 2), np.nan, np.float32)
        x[0] = 1.0
        x[1, :2] = [[3.0, 20.0], [np.nan, 15.0]]
        feats, present = dec({"s": tf.constant(x)})
        assert feats["series"].shape == (3, 6, 2) and feats["mask"].shape == (3, 6)
        assert present.numpy().tolist() == [1.0, 1.0, 0.0]  # an all-NaN row is missing
        z = feats["series"].numpy()
        assert z[1, 0].tolist() == [1.0, 2.0] and z[1, 1].tolist() == [0.0, 1.0]  # NaN -> 0
        assert feats["mask"].numpy()[1].tolist() == [1, 1, 0, 0, 0, 0]
        assert not np.isnan(z).any()


# === Checks under both error policies ===


@pytest.fixture
def extra_copy(demo_extra_dir, tmp_path):
    dst = tmp_path / "extra"
    shutil.copytree(demo_extra_dir, dst)
    return dst


def _edit(folder, rows: dict, on_error=None):
    frame = pd.read_json(folder / "train.jsonl", lines=True)
    for (row, col), value in rows.items():
        frame[col] = frame[col].astype(object)
        frame.at[row, col] = value
    frame.to_json(folder / "train.jsonl", orient="records", lines=True)
    if on_error:
        data = yaml.safe_load((folder / "manifest.yaml").read_text())
        data["data"]["on_error"] = on_error
        (folder / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "manifest.yaml"


BAD = [
    ((1, "video"), "videos/none.mp4", "missing media file", "none.mp4 not found"),
    ((2, "video"), "videos/broken.mp4", "corrupt video", "broken.mp4"),
    ((3, "series"), [[1.0, 2.0, 3.0]] * 5, "wrong channel count", "expected 2 channel(s), got 3"),
    ((4, "series"), "series/table.txt", "unreadable series", "expected a .npy or .csv file"),
    ((5, "embedding"), [0.5] * 7, "wrong embedding size", "expected 8 values, got 7"),
    ((6, "embedding"), "[1, 2, \"x\"]", "unreadable embedding", "not a number"),
]


def test_bad_rows_fail_then_skip(extra_copy):
    (extra_copy / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    (extra_copy / "series" / "table.txt").write_text("1,2\n")
    path = _edit(extra_copy, {cell: value for cell, value, _, _ in BAD})
    with pytest.raises(DataError) as err:
        load_splits(load_manifest(path))
    msg = str(err.value)
    assert "train.jsonl" in msg and "on_error: skip" in msg and "(+5 more bad rows)" in msg
    _edit(extra_copy, {}, on_error="skip")
    splits = load_splits(load_manifest(path))
    assert sum(s.rows for s in splits.splits.values()) == 40 - len(BAD)
    got = {p.reason: (p.rows, p.details) for p in splits.dropped}
    for (row, _), _, reason, detail in BAD:
        rows, details = got[reason]
        assert row + 1 in rows, reason
        assert any(detail in d for d in details), (reason, details)


def test_empty_cells_are_missing(extra_copy):
    path = _edit(extra_copy, {(0, "video"): "", (1, "series"): None, (2, "embedding"): None, (3, "series"): "[]",
                              (4, "embedding"): [None] * 8})
    splits = load_splits(load_manifest(path))
    assert not splits.dropped
    missing = {n: sum(int((~s.present[n]).sum()) for s in splits.splits.values()) for n in ("video", "sensor", "vector")}
    assert missing == {"video": 1, "sensor": 2, "vector": 2}


def test_parquet_and_csv_tables(extra_copy):
    """List cells read from Parquet (arrays) and CSV (JSON text) are the same values."""
    path = _edit(extra_copy, {(0, "video"): "", (1, "series"): "", (2, "embedding"): None})
    frame = pd.read_json(extra_copy / "train.jsonl", lines=True)
    # The series inline too: [T][C] lists (Parquet stores them as arrays of arrays).
    frame["series"] = [np.load(extra_copy / p).tolist() if p else None for p in frame["series"]]
    frame.to_json(extra_copy / "train.jsonl", orient="records", lines=True)
    frame.to_parquet(extra_copy / "train.parquet")
    frame.to_csv(extra_copy / "train.csv", index=False)
    values = {}
    for table in ("train.jsonl", "train.parquet", "train.csv"):
        data = yaml.safe_load(path.read_text())
        data["data"]["train"] = table
        (extra_copy / "t.yaml").write_text(yaml.safe_dump(data))
        m = load_manifest(extra_copy / "t.yaml")
        train = load_splits(m)["train"]
        raw = Preprocessing.fit(m, load_splits(m)).serving_values(train.frame, train.root)
        values[table] = {k: raw[k] for k in ("sensor", "vector")}
    for table in ("train.parquet", "train.csv"):
        for k in ("sensor", "vector"):
            assert np.array_equal(values[table][k], values["train.jsonl"][k], equal_nan=True), (table, k)


@pytest.mark.parametrize("name,change,fragment", [
    ("video", {"sampling": "fps"}, "needs `fps`"),
    ("video", {"fps": 2}, "only applies to sampling: fps"),
    ("sensor", {"channels": None}, "channels: required key is missing"),
    ("vector", {"dim": 0}, "dim"),
])
def test_option_errors_name_the_key(extra_copy, name, change, fragment):
    data = yaml.safe_load((extra_copy / "manifest.yaml").read_text())
    body = data["inputs"][name]
    for key, value in change.items():
        body.pop(key) if value is None else body.__setitem__(key, value)
    (extra_copy / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError) as err:
        load_manifest(extra_copy / "bad.yaml")
    assert f"inputs.{name}" in str(err.value) and fragment in str(err.value), str(err.value)


# === Pipeline ===


def test_pipeline_shapes_and_serving_agree(extra_copy):
    import tensorflow as tf

    path = _edit(extra_copy, {(0, "video"): "", (1, "series"): "", (2, "embedding"): None})
    m = load_manifest(path)
    splits = load_splits(m)
    prep = Preprocessing.fit(m, splits)
    train = splits["train"]
    ds = prep.decoded_dataset(train.frame, train.root)
    x, y = next(iter(prep.batches(ds, 8, {"video": "frame_cnn", "sensor": "tcn", "vector": "projection"})))
    assert x["video__frames"].shape == (8, 4, 16, 16, 3) and x["video__frames"].dtype.name == "uint8"
    assert x["sensor__series"].shape == (8, 32, 2) and x["sensor__mask"].shape == (8, 32)
    assert x["vector__vector"].shape == (8, 8) and x["vector__vector"].dtype.name == "float32"
    assert not np.isnan(x["sensor__series"].numpy()).any()

    # Training-time decoding (paths, tf.data) and serving-time decoding (the raw tensors a
    # client sends, through the graph the SavedModel holds) give the same features.
    rows = splits["validation"].frame
    served = prep.serving_values(rows, train.root)
    assert served["video"].shape == (len(rows), 4, 16, 16, 3) and served["video"].dtype == np.uint8
    assert served["sensor"].shape == (len(rows), 32, 2) and served["vector"].shape == (len(rows), 8)
    graph = prep.graph({})
    from_serving = graph.decode({k: tf.constant(v) for k, v in served.items()})
    trained = list(prep.decoded_dataset(rows, train.root, with_targets=False).batch(len(rows)))[0]
    for key, value in trained.items():
        assert np.array_equal(value.numpy(), from_serving[key].numpy()), key
    present = {k: v.numpy() for k, v in from_serving.items() if k.endswith("__present")}
    expect = splits["validation"].present
    assert all((present[f"{n}__present"] == expect[n]).all() for n in ("video", "sensor", "vector"))

    # All-zero frames at serving time are a missing video.
    zero = dict(served, video=np.zeros_like(served["video"]))
    assert graph.decode({k: tf.constant(v) for k, v in zero.items()})["video__present"].numpy().sum() == 0

    # Frames of another size are resized in the graph to the model's 16x16.
    big = dict(served, video=np.repeat(np.repeat(served["video"], 2, axis=2), 2, axis=3))  # 32x32, each pixel 2x2
    resized = graph.decode({k: tf.constant(v) for k, v in big.items()})["video__frames"].numpy()
    assert resized.shape == served["video"].shape
    assert np.abs(resized.astype(int) - served["video"].astype(int)).mean() < 8


@pytest.mark.parametrize("etype,hps,shape,feature", [
    ("frame_cnn", {"video/frame_cnn/pool": "attention"}, (4, 16, 16, 3), "frames"),
    ("temporal_conv", {"video/temporal_conv/depth": 3}, (4, 16, 16, 3), "frames"),
    ("ts_transformer", {}, (150, 3), "series"),  # long: patches of 3 steps -> 50 tokens
    ("tcn", {"sensor/tcn/kernel": 5}, (5, 3), "series"),
])
def test_encoder_variants(extra_copy, etype, hps, shape, feature):
    """The searched branches the contract test's default choices do not build."""
    from mmauto.config.manifest import load_manifest as load
    from mmauto.encoders import ENCODERS

    m = load(extra_copy / "manifest.yaml")
    name = {"frames": "video", "series": "sensor"}[feature]
    spec = m.inputs[name]
    enc = ENCODERS.get(etype)(spec, {})
    hp = kt.HyperParameters()
    for k, v in hps.items():
        hp.Fixed(k, v)
    feeds = {feature: keras.Input(shape, dtype="uint8" if feature == "frames" else "float32", name=f"{name}__{feature}")}
    if feature == "series":
        feeds["mask"] = keras.Input(shape[:1], name=f"{name}__mask")
    out = enc.build(hp, feeds, name)
    model = keras.Model({v.name: v for v in feeds.values()}, [out.pooled, out.tokens])
    batch = {v.name: (np.random.rand(2, *v.shape[1:]) * (255 if k == "frames" else 1)).astype(v.dtype) for k, v in feeds.items()}
    pooled, tokens = model(batch)
    assert pooled.shape[0] == 2 and tokens.shape[0] == 2 and len(tokens.shape) == 3
    if etype == "ts_transformer":
        assert tokens.shape[1] == 50
    if feature == "frames":
        assert tokens.shape[1] == 4  # one token per frame


# === Demo ===


def test_demo_adds_modalities_without_changing_the_others(tmp_path):
    a = write_demo(tmp_path / "a", rows=20, seed=5)
    b = write_demo(tmp_path / "b", rows=20, seed=5, modalities=ALL_MODALITIES)
    assert b.name == "manifest.yaml" and yaml.safe_load(b.read_text())["data"]["train"] == "train.jsonl"
    base = pd.read_csv(tmp_path / "a" / "train.csv")
    full = pd.read_json(tmp_path / "b" / "train.jsonl", lines=True)
    for col in ("image", "audio", "review", "price", "colour", "store"):
        assert base[col].tolist() == full[col].tolist(), col
    assert (tmp_path / "a" / base["image"][3]).read_bytes() == (tmp_path / "b" / base["image"][3]).read_bytes()
    assert set(yaml.safe_load(b.read_text())["inputs"]) == {"photo", "review", "voice", "meta", "video", "sensor", "vector"}
    assert len(full["embedding"][0]) == 8 and (tmp_path / "b" / full["video"][0]).is_file()
    assert yaml.safe_load(a.read_text())["data"]["train"] == "train.csv"


def test_cli_demo_modalities(tmp_path):
    r = run_cli("demo", "--out", tmp_path / "d", "--rows", "24", "--modalities", "video,timeseries,text", "--data-only")
    assert r.returncode == 0, r.stderr
    r = run_cli("validate", tmp_path / "d" / "manifest.yaml", "--json")
    assert r.returncode == 0, r.stderr
    assert {i["modality"] for i in json.loads(r.stdout)["inputs"]} == {"video", "timeseries", "text"}
    r = run_cli("demo", "--out", tmp_path / "e", "--modalities", "vidoe", "--data-only")
    assert r.returncode == 2 and "did you mean 'video'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# === End to end ===


SERVE = textwrap.dedent(
    """
    # A client with TensorFlow only: frames, series and vectors prepared as the README says.
    import sys, json, numpy as np, tensorflow as tf
    from pathlib import Path
    assert "mmauto" not in sys.modules and "av" not in sys.modules
    run, data = Path(sys.argv[1]), Path(sys.argv[2])
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    sig = tf.saved_model.load(str(run / "model")).signatures["serving_default"]
    F = 4

    def frames(cell):
        if not cell:
            return np.zeros((F, 16, 16, 3), np.uint8)  # all-zero frames: a missing video
        p = data / cell
        if p.is_dir():  # a frame folder: image files in name order
            clip = [tf.io.decode_png(tf.io.read_file(str(f)), channels=3).numpy() for f in sorted(p.iterdir())]
        else:  # a video file: this client decoded it with its own tool beforehand
            clip = list(np.load(str(p) + ".frames.npy"))
        n = len(clip)
        return np.stack([clip[min(int((k + 0.5) * n / F), n - 1)] for k in range(F)])  # uniform sampling

    series = [np.load(data / r["series"]) if r["series"] else np.full((1, 2), np.nan, np.float32) for r in rows]
    longest = max(len(s) for s in series)  # any length: the model pads and trims to its own
    batch = np.full((len(rows), longest, 2), np.nan, np.float32)
    for i, s in enumerate(series):
        batch[i, : len(s)] = s
    out = sig(
        review=tf.constant([r["review"] or "" for r in rows]),
        video=tf.constant(np.stack([frames(r["video"]) for r in rows])),
        sensor=tf.constant(batch),
        vector=tf.constant(np.array([r["embedding"] or [np.nan] * 8 for r in rows], np.float32)),
    )
    print(json.dumps({"labels": [x.decode() for x in out["label"].numpy()], "probs": out["probabilities"].numpy().tolist()}))
    """
)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """Text, video (files and frame folders), series and embeddings, with empty cells."""
    import av

    root = tmp_path_factory.mktemp("mixed")
    m = write_demo(root / "data", rows=80, seed=2, modalities=["text", "video", "timeseries", "embedding"], missing=0.15)
    frame = pd.read_json(root / "data" / "train.jsonl", lines=True)
    for i, cell in enumerate(frame["video"].tolist()):
        if not cell:
            continue
        with av.open(str(root / "data" / cell)) as c:
            clip = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        if i % 2:  # odd rows: the client's own decoding of the file, for the serving process
            np.save(root / "data" / f"{cell}.frames.npy", clip)
        else:  # even rows: a frame folder instead of the file
            folder = root / "data" / "frames" / f"row_{i:03d}"
            folder.mkdir(parents=True)
            for k, f in enumerate(clip):
                Image.fromarray(f).save(folder / f"f{k:02d}.png")
            frame.at[i, "video"] = f"frames/row_{i:03d}"
    frame.to_json(root / "data" / "train.jsonl", orient="records", lines=True)
    data = yaml.safe_load(m.read_text())
    data["inputs"]["video"]["encoder"] = {"type": "frame_cnn"}
    data["inputs"]["sensor"]["encoder"] = {"type": "tcn"}
    data["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "transformer", "width": 16}}
    data["train"] = {"epochs": 2, "batch_size": 16, "modality_dropout": 0.2}
    m.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("fit", m, "--out", root / "run", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "run", root / "data", json.loads(r.stdout)


def test_mixed_fit_serves_like_predict(mixed_run, tmp_path):
    run, data, summary = mixed_run
    assert summary["encoders"]["video"] == "frame_cnn" and summary["parity"]["max_abs_diff"] <= 1e-4
    card = json.loads((run / "mmauto.json").read_text())
    inputs = {i["name"]: i for i in card["signatures"]["serving_default"]["inputs"]}
    assert inputs["video"]["shape"] == [None, 4, None, None, 3] and inputs["video"]["dtype"] == "uint8"
    assert inputs["sensor"]["shape"] == [None, None, 2] and inputs["vector"]["shape"] == [None, 8]
    assert inputs["video"]["missing"] == "all-zero frames" and inputs["vector"]["missing"] == "all NaN"
    assert (run / "report" / "index.html").exists() and (run / "ablation.json").exists()

    r = run_cli("predict", run, data / "train.jsonl", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    preds = pd.read_csv(tmp_path / "p.csv")
    proc = subprocess.run([sys.executable, "-c", SERVE, str(run), str(data)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert preds["prediction"].tolist() == served["labels"]
    probs = preds[[c for c in preds.columns if c.startswith("prob_")]].values
    assert abs(probs - np.array(served["probs"])).max() < 1e-5
