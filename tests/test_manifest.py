"""Broken manifests: each exits with one ManifestError naming the key and what is valid."""


import pytest
import yaml

from mmauto.config.manifest import load_manifest, parse_duration
from mmauto.errors import ManifestError
from mmauto.modalities import MODALITIES

GOOD = {
    "task": "classification",
    "data": {"train": "train.csv"},
    "target": "label",
    "inputs": {
        "photo": {"modality": "image", "column": "image", "size": [32, 32]},
        "review": {"modality": "text", "column": "review"},
        "voice": {"modality": "audio", "column": "audio", "max_seconds": 0.5},
        "meta": {"modality": "tabular", "numeric": ["price"], "categorical": ["store"]},
    },
}


def write(tmp_path, data):
    (tmp_path / "train.csv").write_text("image,review,audio,price,store,label\n")
    p = tmp_path / "m.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def patched(path, value):
    import copy

    data = copy.deepcopy(GOOD)
    cur = data
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[k]
    if value is DELETE:
        del cur[keys[-1]]
    else:
        cur[keys[-1]] = value
    return data


DELETE = object()

CASES = [
    # (change, key in message, words in message)
    (("inputs.photo.modality", "imgae"), "inputs.photo.modality", ["did you mean 'image'", ", ".join(MODALITIES.names())]),  # every registered one
    (("inputs.photo.size", [224]), "inputs.photo.size", ["expected [height, width], got [224]"]),
    (("inputs.photo.size", [224, "x"]), "inputs.photo.size", ["whole numbers"]),
    (("inputs.photo.channels", 4), "inputs.photo.channels", ["expected 1 or 3"]),
    (("inputs.photo.colum", "image"), "inputs.photo", ["unknown key 'colum'", "did you mean 'column'"]),
    (("inputs.photo.column", DELETE), "inputs.photo.column", ["required key is missing"]),
    (("task", "clasification"), "task", ["did you mean 'classification'"]),
    (("task", DELETE), "task", ["required key is missing"]),
    (("target", DELETE), "target", ["required key is missing"]),
    (("data.train", "nope.csv"), "data.train", ["not found"]),
    (("data.on_error", "ignore"), "data.on_error", ["'fail' or 'skip'"]),
    (("data.split", {"validation": 0.5, "test": 0.5}), "data.split", ["at least 10%"]),
    (("inputs", {}), "inputs", ["at least one input"]),
    (("inputs.voice.max_seconds", -1), "inputs.voice.max_seconds", ["greater than 0"]),
    (("inputs.voice.features", "spectrum"), "inputs.voice.features", ["'log_mel' or 'mfcc'"]),
    (("inputs.meta", {"modality": "tabular"}), "inputs.meta", ["at least one column"]),
    (("inputs.meta.categorical", ["price"]), "inputs.meta", ["both numeric and categorical"]),
    (("inputs.review.encoder", {"type": "bert"}), "inputs.review.encoder.type", ["unknown text encoder 'bert'", "tfidf"]),
    (("inputs.review.encoder", {"type": "keras_hub"}), "inputs.review.encoder.preset", ["needs a preset"]),
    (("inputs.bad name", {"modality": "text", "column": "review"}), "inputs.bad name", ["starts with a letter"]),
    (("inputs.photo.column", "label"), "inputs.photo", ["is the target"]),
    (("search", {"tuner": "grid"}), "search.tuner", ["'random', 'bayesian' or 'hyperband'"]),
    (("search", {"time_budget": "soon"}), "search.time_budget", ["duration like 90s"]),
    (("search", {"replicas": -1}), "search.replicas", ["greater than or equal to 0"]),
    (("search", {"space": {"fusion": "concatenate"}}), "search.space.fusion", ["did you mean 'concat'"]),
    (("search", {"space": {"depth": "deep"}}), "search.space", ["depth: expected a whole number"]),
    (("train", {"epochs": 0}), "train.epochs", ["greater than or equal to 1"]),
    (("train", {"modality_dropout": 1.5}), "train.modality_dropout", ["less than or equal to 0.9"]),
    (("train", {"reconstruction": "foo"}), "train.reconstruction", ["unknown value 'foo'", "'plain' or 'variational'"]),
    (("search", {"space": {"reconstruction": ["plain", "variationl"]}}), "search.space.reconstruction",
     ["unknown reconstruction 'variationl'", "did you mean 'variational'", "plain, variational"]),
    (("train", {"kl_weight": -1}), "train.kl_weight", ["greater than or equal to 0"]),
    (("search", {"space": {"kl_weight": "x"}}), "search.space", ["kl_weight: expected a number"]),
    (("search", {"space": {"input_heads": [0.5, -1]}}), "search.space.input_heads", ["0 (off) or more", "-1"]),
    (("train", {"ema": 1.5}), "train.ema", ["a momentum between 0 and 1", "got 1.5"]),
    (("train", {"calibrate": "platt"}), "train.calibrate", ["expected true, false, 'temperature', 'vector', 'matrix' or 'beta', got 'platt'"]),
    (("colour", "red"), "", ["unknown key 'colour'", "valid keys:"]),
    (("extends", "quik"), "extends", ["did you mean 'quick'"]),
    (("version", 2), "version", ["expected 1"]),
]


@pytest.mark.parametrize("change,key,words", CASES, ids=[c[1] + ":" + c[2][0][:20] for c in CASES])
def test_broken_manifest(tmp_path, change, key, words):
    path = write(tmp_path, patched(*change))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert msg.startswith(str(path) + ": ")
    assert err.value.key == key, msg
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "task: classification\ninputs:\n  a: [1, 2\n")
    with pytest.raises(ManifestError, match="line 4"):
        load_manifest(path)


def test_not_a_mapping(tmp_path):
    with pytest.raises(ManifestError, match="expected a mapping"):
        load_manifest(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "none.yaml")


def test_good_manifest_resolves(tmp_path):
    m = load_manifest(write(tmp_path, GOOD))
    assert m.name == "m" and list(m.inputs) == ["photo", "review", "voice", "meta"]
    assert m.inputs["photo"].options.size == [32, 32]
    assert m.table_path("train") == tmp_path / "train.csv"
    assert m.search.tuner == "bayesian"


def test_extends_merges_recipe(tmp_path):
    data = dict(GOOD, extends="quick", train={"epochs": 3})
    m = load_manifest(write(tmp_path, data))
    assert m.train.epochs == 3 and m.train.early_stopping == 2  # override + recipe value
    assert m.search.max_trials == 3


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_preset_implies_keras_hub(tmp_path):
    data = patched("inputs.review.encoder", {"preset": "some_preset"})
    m = load_manifest(write(tmp_path, data))
    assert m.inputs["review"].encoder.type == "keras_hub"


# === YAML the loader refuses (issue 18) ===


def test_duplicated_key_names_key_and_line(tmp_path):
    text = yaml.safe_dump(GOOD, sort_keys=False) + "target: store\n"
    line = text.count("\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(write(tmp_path, text))
    assert f"line {line}: key 'target' appears twice in one mapping (first on line 4); keep one" in str(err.value)
    nested = "task: classification\ndata: {train: train.csv, train: other.csv}\ntarget: label\ninputs: {}\n"
    with pytest.raises(ManifestError, match=r"line 2: key 'train' appears twice"):
        load_manifest(write(tmp_path, nested))


def test_alias_bomb_is_refused_without_expanding(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    bomb = "\n".join(lines) + "\n"  # 9**9 strings (~390 million) once expanded
    text = yaml.safe_dump(GOOD, sort_keys=False).replace("task: classification", "name: *i\ntask: classification")
    with pytest.raises(ManifestError) as err:
        load_manifest(write(tmp_path, bomb + text))
    msg = str(err.value)
    assert "anchors and aliases expand the file to more than 10000 values" in msg and len(msg) < 300
    small = "base: &b {modality: text, column: review}\n"  # a small alias stays allowed
    data = yaml.safe_dump({k: v for k, v in GOOD.items() if k != "inputs"}, sort_keys=False)
    with pytest.raises(ManifestError, match="unknown key 'base'"):
        load_manifest(write(tmp_path, small + data + "inputs: {review: *b}\n"))


def test_misspelled_required_key_says_did_you_mean(tmp_path):
    data = {("taget" if k == "target" else k): v for k, v in GOOD.items()}
    with pytest.raises(ManifestError) as err:
        load_manifest(write(tmp_path, data))
    assert "unknown key 'taget'; did you mean 'target' (required, missing)?" in str(err.value)
    data = patched("inputs.review", {"modality": "text", "colum": "review"})
    with pytest.raises(ManifestError, match=r"inputs.review: unknown key 'colum'; did you mean 'column' \(required, missing\)\?"):
        load_manifest(write(tmp_path, data))


@pytest.mark.parametrize("text,words", [
    # Found by tests/test_fuzz.py: each raised TypeError, IndexError or printed several lines.
    ("inputs:\n  a: {modality: [], column: x}\n", "inputs.a.modality: unknown modality '[]'"),
    ("n[ame: x\n", "unknown key 'n[ame'"),
    ("']': 1\n", "unknown key ']'"),
    ('"a\\nb": 1\n', "unknown key 'a\\nb'"),
    ('inputs:\n  "x\\ny": {modality: text, column: review}\n', "inputs.x\\ny: an input name starts with a letter"),
])
def test_odd_keys_and_values_are_one_line_errors(tmp_path, text, words):
    base = yaml.safe_dump({k: v for k, v in GOOD.items() if not (k == "inputs" and text.startswith("inputs"))}, sort_keys=False)
    with pytest.raises(ManifestError) as err:
        load_manifest(write(tmp_path, base + text))
    assert words in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("setting,steps,momentum", [(True, None, 0.99), (True, 1000, 0.99), (True, 20, 0.95), (True, 1, None),
                                                     (0.9, 3, 0.9), (False, 1000, None)])
def test_the_weights_average_spans_at_most_an_epoch(setting, steps, momentum):
    """`train.ema: true` averages over 100 steps, or one epoch when shorter (a small data set's
    average would otherwise lag epochs behind); a number pins the momentum; false: none."""
    from mmauto.config.manifest import TrainSpec

    got = TrainSpec(ema=setting).ema_momentum(steps)
    assert got == (None if momentum is None else pytest.approx(momentum))
