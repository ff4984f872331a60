"""Fuzzing the edge: random mutations of valid manifests and tables either load or raise one
MmautoError (one line); any other exception is a bug. Bounded: a few hundred examples, derandomized
(the same ones every run), well under 30 s once TensorFlow is imported."""

import json
import os
import warnings

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmauto.config.manifest import load_manifest
from mmauto.data.checks import load_table_checked
from mmauto.data.tables import read_table
from mmauto.errors import MmautoError

# MMAUTO_FUZZ_EXAMPLES=5000 fuzzes longer, with fresh random examples each run.
_MORE = int(os.environ.get("MMAUTO_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_MORE or 150, deadline=None, derandomize=not _MORE, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

MANIFEST = {
    "name": "fuzz",
    "task": "classification",
    "data": {"train": "train.csv", "split": {"validation": 0.2, "test": 0.2, "seed": 1}, "on_error": "skip"},
    "target": "label",
    "inputs": {
        "review": {"modality": "text", "column": "review", "max_length": 16},
        "meta": {"modality": "tabular", "numeric": ["price"], "categorical": ["colour"]},
        "vec": {"modality": "embedding", "column": "vec", "dim": 2},
    },
    "search": {"tuner": "random", "max_trials": 2, "time_budget": "1m", "space": {"fusion": ["concat", "gated"], "width": {"min": 8, "max": 32}}},
    "train": {"epochs": 2, "batch_size": 8},
}
TABLE = (
    "id,review,price,colour,vec,label\n"
    '1,great value,1.5,red,"[0.1, 0.2]",high\n'
    '2,"poor, broken",,blue,"[1, 2]",low\n'
    "3,NA,NaN,NA,,high\n"
    '4,"said ""ok""",3e2,green,"[0, 0]",low\n'
)
# Characters that YAML and CSV give meaning to, and a few that break decoders.
ALPHABET = st.sampled_from(list(":-[]{},&*!|>'\"#%@`?= \n\t\\") + list("abcz019.eE+") + ["\x00", "\ufeff", "é", "\u2028", "\r"])


@st.composite
def mutated(draw, base: str):
    text = base
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "dup_line", "swap_lines", "truncate"]))
        i = draw(st.integers(0, len(text)))
        lines = text.split("\n")
        a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 20)):]
        elif op == "insert":
            text = text[:i] + "".join(draw(st.lists(ALPHABET, min_size=1, max_size=8))) + text[i:]
        elif op == "replace" and text:
            text = text[:i] + draw(ALPHABET) + text[i + 1:]
        elif op == "dup_line":
            text = "\n".join(lines[: a + 1] + [lines[a]] + lines[a + 1:])
        elif op == "swap_lines":
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        elif op == "truncate":
            text = text[:i]
    return text


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) | st.text(ALPHABET, max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(ALPHABET, max_size=6) | st.integers(), inner, max_size=3),
    max_leaves=6,
)


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))


@st.composite
def mutated_manifest(draw):
    data = json.loads(json.dumps(MANIFEST))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(data))[1:]))
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()):
            parent[path[-1]] = draw(VALUES)
        else:
            del parent[path[-1]]
            if draw(st.booleans()):  # the same value under a misspelt or random key
                parent[draw(st.text(ALPHABET, min_size=1, max_size=8))] = draw(VALUES)
    return data


def _one_line(exc: MmautoError):
    text = str(exc)
    assert text and "\n" not in text and len(text) < 2000, repr(text)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "train.csv").write_text(TABLE)
    (d / "m.yaml").write_text(yaml.safe_dump(MANIFEST, sort_keys=False))
    load_manifest(d / "m.yaml")  # valid as written; imports the registries (and TF) once
    return d


def _load(folder, text: str):
    path = folder / "case.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_manifest(path)
    except MmautoError as exc:
        _one_line(exc)


@SETTINGS
@given(text=mutated(yaml.safe_dump(MANIFEST, sort_keys=False)))
def test_fuzz_manifest_text(folder, text):
    _load(folder, text)


@SETTINGS
@given(data=mutated_manifest())
def test_fuzz_manifest_values(folder, data):
    _load(folder, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


JSONL = (
    '{"id": 1, "review": "great value", "price": 1.5, "colour": "red", "vec": [0.1, 0.2], "label": "high"}\n'
    '{"id": 2, "review": "poor", "price": null, "colour": "blue", "vec": [1, 2], "label": "low"}\n'
    '{"id": 3, "review": "None", "price": "NaN", "colour": "NA", "vec": null, "label": "high"}\n'
    '{"id": 4, "review": "ok", "price": 300, "colour": "green", "vec": "[0, 0]", "label": "low"}\n'
)


def _check_table(folder, text, suffix):
    m = load_manifest(folder / "m.yaml")
    path = folder / f"case{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow lines must not reach the user
        try:
            read_table(path)
            load_table_checked(m, path)
        except MmautoError as exc:
            _one_line(exc)


@SETTINGS
@given(text=mutated(TABLE), tsv=st.booleans())
def test_fuzz_csv(folder, text, tsv):
    _check_table(folder, text.replace(",", "\t") if tsv else text, ".tsv" if tsv else ".csv")


@SETTINGS
@given(text=mutated(JSONL))
def test_fuzz_jsonl(folder, text):
    _check_table(folder, text, ".jsonl")


@st.composite
def mutated_records(draw):
    records = [json.loads(line) for line in JSONL.splitlines()]
    for _ in range(draw(st.integers(1, 4))):
        record = draw(st.sampled_from(records))
        key = draw(st.sampled_from(sorted(record)))
        if draw(st.integers(0, 5)):
            record[key] = draw(VALUES)
        else:
            del record[key]
    return "".join(json.dumps(r) + "\n" for r in records)


@SETTINGS
@given(text=mutated_records())
def test_fuzz_table_values(folder, text):
    _check_table(folder, text, ".jsonl")
