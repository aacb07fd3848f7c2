"""llm_experiments' layers import one way (docs/architecture.md): model and data at the bottom."""

from __future__ import annotations

import ast

import pytest

from tests.paths import ROOT

# layer -> the layers of llm_experiments it may import
ALLOWED = {
    "model": {"model"},
    "data": {"data"},
    "edit": {"model", "data", "edit"},
    "evaluate": {"model", "data", "evaluate"},
    "tiny": {"model", "data", "tiny"},
}


def imported_layers(source: str) -> set[str]:
    """The llm_experiments layers a module imports (``llm_experiments.<layer>...``), or the whole-package
    modules (``experiment``, ``table``) it reaches into; also any import of the command package."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "llm_experiments" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] == "rlsedit_cli":
                found.add("rlsedit_cli")
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    files = sorted((ROOT / "llm_experiments" / layer).glob("*.py"))
    assert files
    wrong = {f.name: sorted(imported_layers(f.read_text()) - ALLOWED[layer]) for f in files}
    assert not any(wrong.values()), wrong


def test_no_library_module_imports_the_command_package():
    for f in sorted((ROOT / "llm_experiments").rglob("*.py")):
        assert "rlsedit_cli" not in imported_layers(f.read_text()), f


@pytest.mark.parametrize(("layer", "source"), [
    ("model", "from llm_experiments.data.requests import EditRequest\n"),
    ("data", "from llm_experiments.edit.keys import compute_keys\n"),
    ("edit", "from llm_experiments.experiment import run_edit\n"),
    ("evaluate", "import llm_experiments.tiny.training\n"),
])
def test_the_check_catches_an_upward_import(layer, source):
    """The mutants: an import that goes up or sideways is flagged."""
    assert imported_layers(source) - ALLOWED[layer]
