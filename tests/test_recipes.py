"""Recipes: listed from any folder, safe to inherit, and `recipes init` gives a manifest that only
needs real columns and files."""

import json

import pytest
import yaml
from conftest import run_cli

from mmauto import recipes
from mmauto.config.manifest import load_manifest

REQUIRED = {"quick", "thorough", "image_text_classification", "audio_visual_classification",
            "tabular_text_regression", "vision_text_audio_cross_attention", "missing_modality_robust",
            "video_audio_text"}
# What a manifest fills in for itself; a recipe holding one of them would pass it on by mistake.
USER_KEYS = {"data", "target", "inputs", "name", "extends"}


def test_list_from_another_folder(tmp_path):
    r = run_cli("recipes", "list", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)
    assert len(items) >= 7 and REQUIRED <= {x["name"] for x in items}
    for item in items:
        assert item["description"].strip(), item


@pytest.mark.parametrize("name", recipes.names())
def test_recipe_holds_only_inheritable_keys(name):
    data = recipes.load(name)
    assert not USER_KEYS & set(data), f"{name}: {sorted(USER_KEYS & set(data))} belong in the manifest"
    assert set(data) <= {"version", "task", "search", "train", "export"}
    text = recipes.text(name)
    assert text.startswith("# ") and "\n# --- manifest starts here ---\n" in text and "\n# --- manifest ends here ---\n" in text


def _demo_inputs(written: dict, regression: bool) -> dict:
    """The written manifest's inputs (names, encoders kept) pointed at the demo columns."""
    numeric = ["weight"] if regression else ["price", "weight"]
    columns = {
        "image": {"column": "image", "size": [32, 32], "channels": 3},
        "text": {"column": "review", "max_length": 16},
        "audio": {"column": "audio", "sample_rate": 16000, "max_seconds": 0.5},
        "tabular": {"numeric": numeric, "categorical": ["colour", "store"]},
        "video": {"column": "video", "frames": 4, "size": [16, 16]},
        "timeseries": {"column": "series", "length": 32, "channels": 2},
        "embedding": {"column": "embedding", "dim": 8},
    }
    out = {}
    for name, body in written.items():
        body = {"modality": body["modality"], **columns[body["modality"]], **({"encoder": body["encoder"]} if "encoder" in body else {})}
        out[name] = body
    return out


def _same(actual, expected):
    if isinstance(expected, list):
        return list(actual) == expected
    return actual == expected


@pytest.fixture(scope="module")
def demo_all_dir(tmp_path_factory):
    """The demo with every modality (made only when a recipe's inputs need more than the four)."""
    from mmauto.data.demo import ALL_MODALITIES, write_demo

    out = tmp_path_factory.mktemp("demo_all")
    write_demo(out, rows=40, seed=0, modalities=ALL_MODALITIES)
    return out


@pytest.mark.parametrize("name", recipes.names())
def test_init_then_point_at_demo_data(name, tmp_path, demo_dir, request):
    r = run_cli("recipes", "init", name, "--out", "m.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "m.yaml").read_text()
    written = yaml.safe_load(text)
    assert written["extends"] == name
    assert written["data"]["train"] == "data/train.csv"  # a placeholder to point at real data
    assert written["target"] and written["inputs"]
    recipe = recipes.load(name)

    # The user's part: real files and columns.
    task = written.get("task", recipe.get("task"))
    assert task in ("classification", "regression"), f"{name}: the manifest or its recipe must give a task"
    regression = task == "regression"
    data = {k: v for k, v in written["data"].items() if k not in ("validation", "test", "root")}
    from mmauto.data.demo import DEFAULT_MODALITIES

    if {b["modality"] for b in written["inputs"].values()} <= set(DEFAULT_MODALITIES):
        data["train"] = str(demo_dir / "train.csv")
    else:
        data["train"] = str(request.getfixturevalue("demo_all_dir") / "train.jsonl")
    written["data"] = data
    written["target"] = "price" if regression else "label"
    written["inputs"] = _demo_inputs(written["inputs"], regression)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(written, sort_keys=False))

    m = load_manifest(tmp_path / "m.yaml")
    assert m.task == task and m.raw["extends"] == name
    for key, value in recipe.get("search", {}).items():
        if key == "space":
            for skey, svalue in value.items():
                assert _same(getattr(m.search.space, skey), svalue), (name, skey)
        else:
            assert getattr(m.search, key) == value, (name, key)
    for key, value in recipe.get("train", {}).items():
        assert getattr(m.train, key) == value, (name, key)
    if "task" in recipe:
        assert m.task == recipe["task"]

    # The same manifest passes the full data check a user runs next.
    r = run_cli("validate", tmp_path / "m.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"]


def test_recipe_specifics(tmp_path):
    assert recipes.load("missing_modality_robust")["train"]["modality_dropout"] == 0.3
    space = recipes.load("missing_modality_robust")["search"]["space"]
    assert isinstance(space["contrastive_weight"], list) and isinstance(space["reconstruction_weight"], list)
    assert recipes.load("vision_text_audio_cross_attention")["search"]["space"]["fusion"] == "cross_attention"
    for combo in ("VT", "VA", "TA", "VTA"):
        assert combo in recipes.text("vision_text_audio_cross_attention")
    assert recipes.load("tabular_text_regression")["task"] == "regression"
    thorough = recipes.text("thorough")
    assert "KAGGLEHUB_CACHE" in thorough and "preset" in thorough
    # thorough leaves fusion unset: every registered fusion is searched, new ones included
    from mmauto.config.manifest import SpaceSpec
    from mmauto.model.hypermodel import fusion_choices
    from mmauto.registry import FUSIONS

    space = recipes.load("thorough")["search"]["space"]
    assert "fusion" not in space and fusion_choices(SpaceSpec(**space), 3) == FUSIONS.names()


@pytest.mark.parametrize("name", ["quick", "thorough", "missing_modality_robust"])
def test_show_prints_the_file(name, tmp_path):
    r = run_cli("recipes", "show", name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == recipes.text(name)


def test_init_keeps_an_existing_file_unless_forced(tmp_path):
    (tmp_path / "m.yaml").write_text("mine\n")
    r = run_cli("recipes", "init", "thorough", "--out", "m.yaml", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--force" in r.stderr
    assert (tmp_path / "m.yaml").read_text() == "mine\n"
    r = run_cli("recipes", "init", "thorough", "--out", "m.yaml", "--force", cwd=tmp_path)
    assert r.returncode == 0 and "extends: thorough" in (tmp_path / "m.yaml").read_text()


def test_init_unknown_recipe_is_one_line(tmp_path):
    r = run_cli("recipes", "init", "thorogh", "--out", "m.yaml", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "did you mean 'thorough'" in r.stderr
    assert not (tmp_path / "m.yaml").exists()
