"""The package's layers: each imports only the layers below it, so there is no import cycle; the engine
knows the methods' base class only, never a concrete method."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segrecipes"
# lowest first; a layer may import its own package and any lower layer, nothing else
LAYERS = [
    {"errors", "disk"}, {"cache"}, {"duration", "fetch"}, {"fields", "transfer"}, {"data", "models", "optim"},
    {"methods", "evaluation"}, {"engine"},
    {"config"}, {"run"}, {"deploy", "bench"}, {"tune"}, {"cli", "functional", "__init__"},
]
LAYER_OF = {name: index for index, layer in enumerate(LAYERS) for name in layer}


def _part(path: Path) -> str:
    """The layer a file belongs to: its sub-package, or its own name for a top-level module."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[str]:
    """Every ``segrecipes...`` module that ``path`` imports, relative imports resolved."""
    here = ["segrecipes", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.append(".".join([*base, *([node.module] if node.module else [])]))
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.startswith("segrecipes")]


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(path.relative_to(PACKAGE)) for path in FILES])
def test_a_module_imports_only_lower_layers(path: Path) -> None:
    part = _part(path)
    for name in _imports(path):
        target = name.split(".")[1] if "." in name else "__init__"
        if target != part:
            assert LAYER_OF[target] < LAYER_OF[part], f"{path.relative_to(PACKAGE)} imports {name}"


@pytest.mark.parametrize("path", FILES, ids=[str(path.relative_to(PACKAGE)) for path in FILES])
def test_only_the_composition_root_and_above_read_the_config(path: Path) -> None:
    """Below ``run.py`` everything takes plain values or its own component's settings, never the config."""
    if LAYER_OF[_part(path)] < LAYER_OF["run"] and _part(path) != "config":
        assert "segrecipes.config" not in _imports(path), f"{path.relative_to(PACKAGE)} reads the run config"


def test_the_config_sits_directly_under_the_composition_root() -> None:
    assert LAYER_OF["config"] + 1 == LAYER_OF["run"]
    assert "segrecipes.config" in _imports(PACKAGE / "run.py")


def test_the_engine_knows_only_the_methods_base_class() -> None:
    imported = {name for path in (PACKAGE / "engine").rglob("*.py") for name in _imports(path)}
    assert {name for name in imported if name.startswith("segrecipes.methods")} == {"segrecipes.methods.base"}


def test_every_part_of_the_package_has_a_layer() -> None:
    assert {_part(path) for path in FILES} <= set(LAYER_OF)
