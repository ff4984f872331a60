"""Every sub-package ships: pyproject lists packages explicitly (cli/ and recipes/ are mapped)."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the package itself supports 3.10

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mmauto").rglob("__init__.py")}
    assert found <= listed, found - listed
    assert {"mmauto_cli", "mmauto.recipes"} <= listed
