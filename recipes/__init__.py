"""Recipe templates: this folder ships in the wheel as mmauto.recipes; each YAML file is one recipe."""

from __future__ import annotations

from importlib import resources

import yaml


def _folder():
    return resources.files(__name__)


def names() -> list[str]:
    return sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".yaml"))


def text(name: str) -> str:
    return (_folder() / f"{name}.yaml").read_text(encoding="utf-8")


def load(name: str) -> dict:
    return yaml.safe_load(text(name)) or {}


def description(name: str) -> str:
    """The first comment line of the recipe."""
    for line in text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
