"""The data layer: checks under both error policies, splits, and tf.data shapes per modality."""

import numpy as np
import pandas as pd
import pytest
import yaml

from mmauto.config.manifest import load_manifest
from mmauto.data.checks import load_splits
from mmauto.errors import DataError


def edit(demo, fn=None, manifest=None):
    """Change the demo table (fn(frame) -> frame) and/or manifest keys; returns the manifest path."""
    if fn is not None:
        frame = pd.read_csv(demo / "train.csv")
        fn(frame).to_csv(demo / "train.csv", index=False)
    if manifest:
        data = yaml.safe_load((demo / "manifest.yaml").read_text())
        for k, v in manifest.items():
            data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
        (demo / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return demo / "manifest.yaml"


def set_cell(row, col, value):
    def fn(frame):
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
        return frame

    return fn


def test_demo_validates(demo_copy):
    splits = load_splits(load_manifest(demo_copy / "manifest.yaml"))
    assert sum(s.rows for s in splits.splits.values()) == 120
    assert set(splits.splits) == {"train", "validation", "test"}
    assert splits.classes == ["high", "low", "mid"]


def test_split_is_deterministic_and_stratified(demo_copy):
    a = load_splits(load_manifest(demo_copy / "manifest.yaml"))
    b = load_splits(load_manifest(demo_copy / "manifest.yaml"))
    assert a["test"].frame["id"].tolist() == b["test"].frame["id"].tolist()
    assert set(a["test"].frame["label"]) == {"high", "low", "mid"}
    assert not set(a["train"].frame["id"]) & set(a["test"].frame["id"])


@pytest.mark.parametrize(
    "col,value,reason",
    [
        ("image", "images/none.png", "missing media file"),
        ("audio", "audio/none.wav", "missing media file"),
        ("price", "cheap", "unparsable number"),
        ("label", None, "missing target"),
    ],
)
def test_bad_rows_fail_then_skip(demo_copy, col, value, reason):
    path = edit(demo_copy, set_cell(3, col, value))
    with pytest.raises(DataError) as err:
        load_splits(load_manifest(path))
    msg = str(err.value)
    assert reason in msg and "row 4" in msg and "train.csv" in msg and "on_error: skip" in msg
    edit(demo_copy, manifest={"data": {"on_error": "skip"}})
    splits = load_splits(load_manifest(path))
    assert sum(s.rows for s in splits.splits.values()) == 119
    assert [p.reason for p in splits.dropped] == [reason] and splits.dropped[0].rows == [4]


def test_corrupt_files(demo_copy):
    (demo_copy / "images" / "img_00002.png").write_bytes(b"not a png at all")
    (demo_copy / "audio" / "clip_00005.wav").write_bytes(b"RIFF....WAVEjunk")
    path = demo_copy / "manifest.yaml"
    with pytest.raises(DataError, match="corrupt image"):
        load_splits(load_manifest(path))
    edit(demo_copy, manifest={"data": {"on_error": "skip"}})
    splits = load_splits(load_manifest(path))
    assert sorted(p.reason for p in splits.dropped) == ["corrupt audio", "corrupt image"]
    assert sum(s.rows for s in splits.splits.values()) == 118


def test_empty_cells_are_missing_not_errors(demo_copy):
    path = edit(demo_copy, lambda f: f.assign(image=[None if i < 5 else v for i, v in enumerate(f["image"])]))
    splits = load_splits(load_manifest(path))
    assert not splits.dropped
    assert sum(int((~s.present["photo"]).sum()) for s in splits.splits.values()) == 5


def test_missing_column_names_the_key(demo_copy):
    path = edit(demo_copy, lambda f: f.rename(columns={"review": "reviews"}))
    with pytest.raises(DataError, match=r"column 'review' named by inputs.review is not in the table; did you mean 'reviews'\?"):
        load_splits(load_manifest(path))


def test_single_class_target(demo_copy):
    path = edit(demo_copy, lambda f: f.assign(label="same"))
    with pytest.raises(DataError, match="at least two are needed"):
        load_splits(load_manifest(path))


def test_unseen_validation_label(demo_copy):
    frame = pd.read_csv(demo_copy / "train.csv")
    frame.iloc[:20].assign(label=["low"] * 19 + ["other"]).to_csv(demo_copy / "val.csv", index=False)
    path = edit(demo_copy, manifest={"data": {"validation": "val.csv"}})
    with pytest.raises(DataError, match="a class never seen in training"):
        load_splits(load_manifest(path))


def test_empty_table(demo_copy):
    (demo_copy / "train.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_splits(load_manifest(demo_copy / "manifest.yaml"))


def test_parquet_and_jsonl(demo_copy):
    frame = pd.read_csv(demo_copy / "train.csv")
    frame.to_parquet(demo_copy / "train.parquet")
    frame.to_json(demo_copy / "train.jsonl", orient="records", lines=True)
    for name in ("train.parquet", "train.jsonl"):
        path = edit(demo_copy, manifest={"data": {"train": name}})
        assert load_splits(load_manifest(path))["train"].rows > 50


def test_image_folder_dataset(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 20), (i * 20, 0, 0)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "m.yaml").write_text(
        "task: classification\ndata: {train: imgs}\ntarget: label\n"
        "inputs:\n  photo: {modality: image, column: image, size: [16, 16]}\n"
    )
    splits = load_splits(load_manifest(tmp_path / "m.yaml"))
    assert splits.classes == ["cat", "dog"]
    assert sum(s.rows for s in splits.splits.values()) == 12


def test_pipeline_shapes_and_dtypes(demo_copy):
    from mmauto.data.pipeline import Preprocessing

    path = edit(demo_copy, set_cell(0, "review", None))
    m = load_manifest(path)
    splits = load_splits(m)
    prep = Preprocessing.fit(m, splits)
    ds = prep.decoded_dataset(splits["train"].frame, splits["train"].root)
    encoders = {"photo": "cnn", "review": "tfidf", "voice": "cnn", "meta": "mlp"}
    x, y = next(iter(prep.batches(ds, 8, encoders)))
    assert x["photo__image"].shape == (8, 32, 32, 3) and x["photo__image"].dtype.name == "float32"
    assert float(x["photo__image"].numpy().max()) <= 255.0
    assert x["voice__spectrogram"].shape == (8, 48, 40)
    assert x["meta__numeric"].shape == (8, 4) and x["meta__categorical"].dtype.name == "int32"
    assert x["review__tfidf__tfidf"].shape[0] == 8
    assert y.shape == (8,) and y.dtype.name == "int32"
    present = np.concatenate([b[0]["review__present"].numpy() for b in prep.batches(ds, 64, encoders)])
    assert present.sum() == len(present) - int((~splits["train"].present["review"]).sum())


# === Values are read as written (issue 18) ===


def test_na_like_strings_are_values_not_missing(demo_copy):
    def fn(frame):
        frame = frame.astype({"colour": object, "review": object, "label": object})
        frame.loc[:11, "label"] = "NA"  # a class named NA, in enough rows to reach every split
        frame.loc[0, "colour"] = "NA"
        frame.loc[1, "review"] = "None"
        frame.loc[2, "review"] = "null"
        return frame

    m = load_manifest(edit(demo_copy, fn))
    splits = load_splits(m)
    assert not splits.dropped
    assert "NA" in splits.classes
    rows = pd.concat([s.frame for s in splits.splits.values()]).set_index("id")
    assert rows.loc[0, "colour"] == "NA" and rows.loc[1, "review"] == "None" and rows.loc[2, "review"] == "null"
    assert sum(int((~s.present["review"]).sum()) for s in splits.splits.values()) == 0


def test_numeric_missing_is_empty_or_nan_only(demo_copy):
    path = edit(demo_copy, lambda f: f.astype({"price": object}).assign(
        price=lambda g: ["", "NaN", "nan"] + g["price"].tolist()[3:]))
    splits = load_splits(load_manifest(path))
    assert not splits.dropped
    path = edit(demo_copy, set_cell(5, "price", "NA"))
    with pytest.raises(DataError, match=r"row 6: inputs.meta: column 'price' holds 'NA' \(a missing number is an empty cell or NaN\)"):
        load_splits(load_manifest(path))


def test_parquet_list_or_struct_column_is_an_error(demo_copy):
    frame = pd.read_csv(demo_copy / "train.csv")
    path = edit(demo_copy, manifest={"data": {"train": "train.parquet"}})
    frame.assign(review=[t.split() for t in frame["review"]]).to_parquet(demo_copy / "train.parquet")
    with pytest.raises(DataError, match=r"train.parquet: column 'review' holds a list \(row 1\) but inputs.review \(text\) takes one value per cell"):
        load_splits(load_manifest(path))
    frame.assign(colour=[{"name": c} for c in frame["colour"]]).to_parquet(demo_copy / "train.parquet")
    with pytest.raises(DataError, match=r"column 'colour' holds a struct \(mapping\) \(row 1\) but inputs.meta \(tabular\)"):
        load_splits(load_manifest(path))


def test_duplicated_csv_column_is_an_error(demo_copy):
    lines = (demo_copy / "train.csv").read_text().splitlines()
    lines[0] = lines[0].replace(",colour,", ",price,")  # price twice: pandas would read the second as price.1
    (demo_copy / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.csv: column 'price' appears twice in the header \(columns 5 and 7\)"):
        load_splits(load_manifest(demo_copy / "manifest.yaml"))


def test_broken_jsonl_line_is_named(demo_copy):
    frame = pd.read_csv(demo_copy / "train.csv")
    frame.to_json(demo_copy / "train.jsonl", orient="records", lines=True)
    lines = (demo_copy / "train.jsonl").read_text().splitlines()
    lines[6] = lines[6][:-5]  # a record cut short
    (demo_copy / "train.jsonl").write_text("\n".join(lines) + "\n")
    path = edit(demo_copy, manifest={"data": {"train": "train.jsonl"}})
    with pytest.raises(DataError, match=r"train.jsonl: line 7, column \d+: not valid JSON \(Unterminated string starting\)"):
        load_splits(load_manifest(path))


def test_media_the_graph_cannot_decode_are_bad_rows(demo_copy):
    """Files whose headers look fine but that TF's decoders refuse: a WAV cut short by one byte,
    a WAV with streaming (0xFFFFFFFF) sizes, a truncated BMP (Pillow's verify() passes it)."""
    import io

    import soundfile as sf
    from PIL import Image

    buf = io.BytesIO()
    sf.write(buf, (np.sin(np.arange(8000) / 5) * 0.5).astype("float32"), 16000, format="WAV", subtype="PCM_16")
    wav = buf.getvalue()
    (demo_copy / "audio" / "cut.wav").write_bytes(wav[:-1])
    stream = bytearray(wav)
    stream[4:8] = b"\xff\xff\xff\xff"
    at = stream.index(b"data")
    stream[at + 4 : at + 8] = b"\xff\xff\xff\xff"
    (demo_copy / "audio" / "stream.wav").write_bytes(bytes(stream))
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="BMP")
    (demo_copy / "images" / "cut.bmp").write_bytes(buf.getvalue()[:-100])

    def fn(frame):
        frame.loc[3, "audio"] = "audio/cut.wav"
        frame.loc[7, "audio"] = "audio/stream.wav"
        frame.loc[9, "image"] = "images/cut.bmp"
        return frame

    path = edit(demo_copy, fn)
    with pytest.raises(DataError) as err:
        load_splits(load_manifest(path))
    msg = str(err.value)
    assert "train.csv: 1 row(s) with corrupt image (rows 10); e.g. row 10:" in msg and "cut.bmp: Input size should match" in msg, msg
    edit(demo_copy, manifest={"data": {"on_error": "skip"}})
    splits = load_splits(load_manifest(path))
    got = {p.reason: p.rows for p in splits.dropped}
    assert got == {"corrupt image": [10], "corrupt audio": [4, 8]}
    audio = next(p for p in splits.dropped if p.reason == "corrupt audio")
    assert "cut.wav: Data too short" in audio.details[0] and "stream.wav: WAV data chunk 'data' is too large" in audio.details[1]
    assert sum(s.rows for s in splits.splits.values()) == 117


def test_dropped_rows_are_counted_once_with_counts_per_reason(demo_copy):
    from mmauto.data.summary import summarize

    def fn(frame):
        frame = frame.astype({"price": object})
        frame.loc[3, "image"] = "images/none.png"  # row 4: two problems
        frame.loc[3, "price"] = "cheap"
        frame.loc[5, "audio"] = "audio/none.wav"  # row 6
        return frame

    path = edit(demo_copy, fn)
    with pytest.raises(DataError, match=r"not found; also unparsable number in 1 row\(s\); fix them"):
        load_splits(load_manifest(path))
    frame = pd.read_csv(demo_copy / "train.csv")
    # A validation table whose row 2 is dropped first: row 3's unseen class keeps its own number.
    val = frame.iloc[20:40].assign(label=["low", "low", "other"] + ["low"] * 17)
    val.loc[val.index[1], "image"] = "images/none.png"
    val.to_csv(demo_copy / "val.csv", index=False)
    edit(demo_copy, manifest={"data": {"on_error": "skip", "validation": "val.csv"}})
    splits = load_splits(load_manifest(path))
    summary = summarize(splits)
    assert summary["dropped_rows"] == 4  # rows 4 and 6 of train.csv, rows 2 and 3 of val.csv
    assert summary["dropped_by_reason"] == {"missing media file": 3, "a class never seen in training": 1, "unparsable number": 1}
    unseen = next(p for p in splits.dropped if p.reason == "a class never seen in training")
    assert unseen.rows == [3] and splits["validation"].rows == 18
    from mmauto_cli.model_cmds import dropped_line

    assert dropped_line(summary) == "4 bad row(s) (missing media file: 3, a class never seen in training: 1, unparsable number: 1)"


def test_predict_checks_key_and_out_before_predicting(demo_copy, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mmauto import api
    from mmauto.errors import MmautoError
    from mmauto.evaluation import predict as evaluation

    m = load_manifest(demo_copy / "manifest.yaml")
    monkeypatch.setattr(api, "_open", lambda run_dir, signature="serving_default": (m, SimpleNamespace(manifest=m), None))
    monkeypatch.setattr(evaluation, "predict_frame", lambda *a, **k: pytest.fail("predictions were computed"))
    with pytest.raises(DataError, match=r"--key: column 'ide' is not in .*train.csv; did you mean 'id'\? \(columns: id, image"):
        api.predict("run", demo_copy / "train.csv", tmp_path / "p.csv", key_columns=["ide"])
    with pytest.raises(DataError, match=r"--key: column 'ID' is not in .*; did you mean 'id'\?"):
        api.predict("run", demo_copy / "train.csv", tmp_path / "p.csv", key_columns=["ID"])
    with pytest.raises(MmautoError, match=r"--out: .* is a folder; give a file path such as"):
        api.predict("run", demo_copy / "train.csv", tmp_path, key_columns=["id"])
    with pytest.raises(MmautoError, match=r"--out: .*train.csv is a file"):
        api.predict("run", demo_copy / "train.csv", demo_copy / "train.csv" / "p.csv")


def test_numeric_overflow_is_a_bad_row_without_numpy_warnings(demo_copy):
    import warnings

    from mmauto.modalities.tabular import Tabular, TabularOptions

    def fn(frame):
        frame = frame.astype({"price": object})
        frame.loc[3, "price"] = "1e39"
        frame.loc[4:5, "weight"] = 3e38  # in range; their float32 sum is not
        return frame

    path = edit(demo_copy, fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(DataError, match=r"row 4: inputs.meta: column 'price' holds 1e\+39, beyond float32's range"):
            load_splits(load_manifest(path))
        frame = pd.read_csv(path.parent / "train.csv", keep_default_na=False).drop(index=3)
        opts = TabularOptions(numeric=["price", "weight"])
        state = Tabular().fit_state(opts, Tabular().raw_values("meta", opts, frame, path.parent))
    assert np.isfinite(state["mean"]).all() and np.isfinite(state["std"]).all()


def test_large_images_pass_quietly_and_huge_ones_are_bad_rows(demo_copy, monkeypatch):
    """Pillow's bounds, scaled down: 1,100 pixels warn (a 10000x10000 photo with the real
    bound), over 2,200 is a decompression-bomb error."""
    import warnings

    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1100)
    Image.new("RGB", (40, 40), (0, 90, 0)).save(demo_copy / "images" / "large.png")
    Image.new("RGB", (50, 50), (0, 90, 0)).save(demo_copy / "images" / "huge.png")

    def fn(frame):
        frame.loc[2, "image"] = "images/large.png"
        frame.loc[6, "image"] = "images/huge.png"
        return frame

    path = edit(demo_copy, fn, manifest={"data": {"on_error": "skip"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        splits = load_splits(load_manifest(path))
    assert [(p.reason, p.rows) for p in splits.dropped] == [("image too large", [7])]
    assert splits.dropped[0].details[0].endswith("huge.png has 2,500 pixels; the limit is 2,200")


def test_regression_target_nan_is_missing_and_overflow_is_unparsable():
    from mmauto.config.manifest import TargetSpec
    from mmauto.data.checks import target_values

    values, problems = target_values(TargetSpec(column="y", task="regression"), pd.DataFrame({"y": ["1.5", "", "NaN", "NA", "1e39"]}))
    assert values == [1.5, None, None, None, None]
    assert [(r, why) for r, why, _ in problems] == [(1, "missing target"), (2, "missing target"), (3, "unparsable target"), (4, "unparsable target")]
    assert problems[1][2] == "column 'y' holds NaN" and "beyond float32's range" in problems[3][2]


def test_embedding_and_series_overflow_without_numpy_warnings(tmp_path):
    """Found by tests/test_fuzz.py: values beyond float32's range printed numpy's RuntimeWarning."""
    import warnings

    from mmauto.modalities.embedding import parse_vector
    from mmauto.modalities.timeseries import SeriesError, parse_series

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert parse_vector([1e39, 1.0], tmp_path, 2)[1][0] == "non-finite embedding"
        with pytest.raises(SeriesError, match="beyond float32's range"):
            parse_series("[1e39, 2]", 1)
        np.save(tmp_path / "s.npy", np.array([1e39, 2.0]))
        with pytest.raises(SeriesError, match="beyond float32's range"):
            parse_series(str(tmp_path / "s.npy"), 1)


def test_a_row_with_two_bad_inputs_of_one_kind_is_listed_once(demo_copy):
    """Two missing media files in one row: the row is counted and listed once."""

    def fn(frame):
        frame.loc[1, "image"] = "images/none.png"
        frame.loc[1, "audio"] = "audio/none.wav"
        return frame

    path = edit(demo_copy, fn)
    with pytest.raises(DataError, match=r": 1 row\(s\) with missing media file \(rows 2\); e\.g\. row 2:"):
        load_splits(load_manifest(path))
