"""The package layout is the architecture: imports flow one way, modules stay small, and one
module opens ONNX Runtime sessions. Read from the source files, so a new module is checked the
moment it exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "archbench"
ARCHITECTURES = PACKAGE.parent / "architectures"

# Lowest first: a module may import its own subpackage and anything in a lower layer.
LAYERS = (
    ("__init__", "errors", "files"),  # the shared base
    ("locks", "paths"),  # directory locks and cache paths, used by several stages
    ("data",),
    ("measure",),
    ("evaluate", "train"),
    ("profile", "report", "serve"),
    ("suite",),
    ("cli",),
    ("__main__",),
)
LAYER_OF = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
MAX_LINES = 450

MODULES = sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    """The top-level part of the package a file belongs to: ``measure``, ``errors``..."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    """Top-level parts of ``archbench`` that ``path`` imports (absolute or relative)."""
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])  # the package holding it
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            targets = [module] if node.module else [module + [a.name] for a in node.names]
        else:
            continue
        for target in targets:
            if target[0] == "archbench":
                found.add(target[1] if len(target) > 1 and _is_part(target[1]) else "__init__")
    return found


def _is_part(name: str) -> bool:
    """A subpackage or module of ``archbench`` (else a name from its ``__init__``)."""
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    part = _part(path)
    assert part in LAYER_OF, f"{part} is in no layer: add it to LAYERS (and the README)"
    upward = sorted(
        target
        for target in _imported_parts(path)
        if target != part and LAYER_OF.get(target, -1) >= LAYER_OF[part]
    )
    assert not upward, f"{path.relative_to(PACKAGE)} reaches up or sideways into {upward}"


def test_architectures_do_not_import_archbench():
    for path in sorted(ARCHITECTURES.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith("archbench"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("archbench") for a in node.names), path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it where a name explains the part"


def test_one_module_opens_onnxruntime_sessions():
    opening = [p.relative_to(PACKAGE) for p in MODULES if "InferenceSession(" in p.read_text()]
    assert opening == [Path("measure/onnxrt.py")]


def test_the_layering_check_sees_relative_imports():
    """The checker itself: a relative import two levels up resolves to its top-level part."""
    assert _imported_parts(PACKAGE / "profile" / "model.py") >= {"measure", "evaluate", "train"}
    assert _imported_parts(PACKAGE / "cli" / "__init__.py") >= {"__init__", "errors"}
