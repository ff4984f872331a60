"""The tree shows the architecture: imports point one way, and what is registered once is
registered once. These read the source (no TensorFlow), so they are fast."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Layer of each module prefix; a module may import its own layer or a lower one.
# cli -> api -> run stages -> {search, export, evaluation, report} -> model -> data
#   -> {modalities, encoders, fusion, heads} -> {layers, registry, errors, config, events, hp}
LAYERS = [
    ("mmauto_cli", 8),
    ("mmauto.api", 7),
    ("mmauto.run", 6),
    ("mmauto.search", 5), ("mmauto.export", 5), ("mmauto.evaluation", 5), ("mmauto.report", 5),
    ("mmauto.model", 4),
    ("mmauto.data", 3),
    ("mmauto.modalities", 2), ("mmauto.encoders", 2), ("mmauto.fusion", 2), ("mmauto.heads", 2),
    ("mmauto.layers", 1),
    ("mmauto.registry", 0), ("mmauto.errors", 0), ("mmauto.config", 0), ("mmauto.events", 0), ("mmauto.hp", 0),
    ("mmauto.recipes", 0), ("mmauto", 0),
]


def layer(module: str) -> int:
    for prefix, level in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return level
    raise AssertionError(f"{module}: no layer; add its package to LAYERS")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "cli":
        parts[0] = "mmauto_cli"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path):
    """Every mmauto import in the file, at any depth (the lazy ones inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mmauto":
                yield from (f"mmauto.{a.name}" for a in node.names)
            elif node.module.startswith(("mmauto.", "mmauto_cli")):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith(("mmauto.", "mmauto_cli")))


def sources():
    return [p for d in ("mmauto", "cli") for p in sorted((ROOT / d).rglob("*.py"))]


def test_imports_point_one_way():
    wrong = []
    for path in sources():
        me = module_name(path)
        for target in imports(path):
            if layer(target) > layer(me):
                wrong.append(f"{me} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_each_keras_name_is_registered_once():
    """Two classes serialised under the same `mmauto>Name` silently replace each other on load."""
    seen = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("register_keras_serializable" in ast.unparse(d) for d in node.decorator_list):
                assert node.name not in seen, f"{node.name}: registered in {seen[node.name]} and {path.relative_to(ROOT)}"
                seen[node.name] = path.relative_to(ROOT)
    assert "MaskedMean" in seen


def test_every_package_has_a_docstring():
    """A newcomer finds any component in one step: each sub-package says what it holds."""
    for init in (ROOT / "mmauto").rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(ROOT)}: no docstring"
