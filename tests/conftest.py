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
