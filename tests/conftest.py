import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A demo data set written once per session; tests copy it before changing it."""
    from mmauto.data.demo import write_demo

    out = tmp_path_factory.mktemp("demo")
    write_demo(out, rows=120, seed=0)
    return out


@pytest.fixture(scope="session")
def demo_extra_dir(tmp_path_factory) -> Path:
    """A small demo data set of the modalities beyond the default four (videos, series,
    embeddings in a JSONL table), for tests that cover every registered component."""
    from mmauto.data.demo import ALL_MODALITIES, DEFAULT_MODALITIES, write_demo

    out = tmp_path_factory.mktemp("demo_extra")
    write_demo(out, rows=40, seed=0, modalities=[m for m in ALL_MODALITIES if m not in DEFAULT_MODALITIES])
    return out


@pytest.fixture(scope="session")
def fitted(demo_dir, tmp_path_factory):
    """The demo data fitted once per session through the CLI (one small trial): (run folder,
    the fit's JSON summary, the demo folder). Tests read the run; they do not change it."""
    import json

    import yaml

    run = tmp_path_factory.mktemp("run") / "r"
    data = yaml.safe_load((demo_dir / "manifest.yaml").read_text())
    data["search"] = {"tuner": "random", "max_trials": 1, "space": {"fusion": "concat", "width": 16}}
    data["train"] = {"epochs": 2, "batch_size": 32, "modality_dropout": 0.3, "augment": True}
    m2 = demo_dir / "m_e2e.yaml"
    m2.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("fit", m2, "--out", run, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return run, json.loads(r.stdout), demo_dir


@pytest.fixture
def demo_copy(demo_dir, tmp_path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(demo_dir, dst)
    return dst


def run_cli(*args, cwd=None, env=None, timeout=900):
    """Run the installed `mmauto` as a user would; returns CompletedProcess."""
    exe = Path(sys.executable).with_name("mmauto")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)
