"""The package as users meet it: imports, the command line, the README's example."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.paths import ROOT


def test_importing_rlsedit_does_not_import_transformers():
    code = "import sys, rlsedit, rlsedit_cli; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_help_lists_the_subcommands():
    from rlsedit_cli import discover

    out = subprocess.run([sys.executable, "-m", "rlsedit_cli", "--help"], capture_output=True, text=True,
                         check=True)
    for name in discover():
        assert name in out.stdout


@pytest.mark.parametrize("editor", ["rlsedit", "memit", "alphaedit", "rome", "ft"])
def test_demo_runs_and_matches_batch_solve(editor, capsys):
    from rlsedit_cli import main

    assert main(["demo", "--editor", editor, "--d-k", "32", "--d-v", "4", "--batches", "3",
                 "--batch-size", "2", "--anchor-keys", "40"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^\s+\d+\s+2\s", out, flags=re.M)) == 3  # one line per batch
    if editor == "rlsedit":
        gap = float(re.search(r"max \|W_recursive - W_batch_solve\| = (\S+)", out).group(1))
        assert gap < 1e-10


def test_demo_refuses_bad_sizes():
    from rlsedit_cli import main

    with pytest.raises(SystemExit, match="--batches must be >= 1"):
        main(["demo", "--batches", "0"])


def test_readme_python_examples_run():
    """Every ```python block of the README runs as written (the README promises they do)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README should show a Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_solver_doc_python_examples_run(capsys):
    """Every ```python block of docs/solver.md runs as written (the page promises they do)."""
    doc = ROOT / "docs" / "solver.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/solver.md", "exec"), {})
    assert capsys.readouterr().out.splitlines()[0] == "True"


# -- the solver package names nothing outside itself ------------------------------------------------
OUTER = ("llm_experiments", "simulations", "theory", "benchmarks", "rlsedit_cli", "tests", "transformers",
         "tokenizers", "matplotlib")


def outer_references(source: str) -> list[str]:
    """What a module of rlsedit/ says about other packages: imports of them, dynamic imports, and
    strings that spell one of their module names (``"llm_experiments.edit"``, ``"rlsedit_cli"``)."""
    import ast

    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in OUTER]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in OUTER:
                found.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += re.findall(rf"\b(?:{'|'.join(OUTER)})(?:\.\w+)+\b|\b(?:{'|'.join(OUTER[:5])})\b(?=[:\"'])",
                                node.value)
    return found


def test_the_solver_package_imports_and_names_no_outer_package():
    files = sorted((ROOT / "rlsedit").glob("*.py"))
    assert len(files) >= 10
    offenders = {f.name: refs for f in files if (refs := outer_references(f.read_text()))}
    assert not offenders, offenders


@pytest.mark.parametrize("source", [
    "import llm_experiments.edit.session\n",
    "from simulations.streams import make_stream\n",
    "import importlib\nmodule = importlib.import_module(name)\n",
    'COMMANDS = {"edit": "rlsedit_cli.edit"}\n',
    "from transformers import AutoModel\n",
])
def test_the_outer_reference_check_catches_each_kind(source):
    """The mutants: each way the old rlsedit/cli.py named outer packages is caught."""
    assert outer_references(source)


def test_help_lists_the_commands_without_importing_transformers():
    code = ("import sys, contextlib, io\nfrom rlsedit_cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "print('transformers' in sys.modules, 'edit' in out.getvalue())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
