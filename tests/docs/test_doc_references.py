"""Every name and path the pages cite exists: a renamed module, function or file breaks a test.

Three kinds of reference are checked on README.md, docs/*.md and theory/README.md:

- a dotted name in backticks that starts with one of the project's packages
  (`llm_experiments.tiny.TrainConfig`, `rlsedit.RLSEditor.update`): the module imports and the
  attributes exist;
- a repository path in backticks (`llm_experiments/edit/presets.py`, `tests/docs/tables.py`,
  `edit_benchmark_data/demo.json`): the file or folder exists, from the repository's root or from
  the page's own folder;
- a relative markdown link `[text](path)`: its target exists.

Outputs a command writes (`results/...`, a cache) and paths with placeholders are not references.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.paths import ROOT

PACKAGES = ("rlsedit", "rlsedit_cli", "llm_experiments", "theory", "simulations", "tests")
PAGES = sorted([ROOT / "README.md", ROOT / "theory" / "README.md", *(ROOT / "docs").glob("*.md")])
SUFFIXES = (".py", ".md", ".json", ".jsonl", ".png", ".ipynb", ".toml", ".txt", ".csv")

_TICKED = re.compile(r"`([^`\n]+)`")
_DOTTED = re.compile(r"^(?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_]\w*)+")
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def resolve_name(dotted: str) -> bool:
    """True when ``dotted`` is a module of this repository, or an attribute path under one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def path_exists(path: str, page: Path) -> bool:
    """True when ``path`` names a file or folder from the root or from ``page``'s folder."""
    return (ROOT / path).exists() or (page.parent / path).exists()


def _is_repo_path(token: str) -> bool:
    if any(c in token for c in "<>*{}$ ~") or token.startswith(("results/", "/", "http")):
        return False
    head = token.split("/")[0]
    return "/" in token and token.endswith(SUFFIXES) and (
        head in PACKAGES or head in ("docs", "notebooks", "benchmarks", ".ci") or head.endswith("_data"))


def references(page: Path) -> tuple[list[str], list[str], list[str]]:
    text = page.read_text()
    names, paths = [], []
    for token in _TICKED.findall(text):
        token = token.strip()
        m = _DOTTED.match(token)
        if m and "/" not in token:
            names.append(m.group(0).rstrip("."))
        elif _is_repo_path(token):
            paths.append(token)
    links = [t for t in _LINK.findall(text) if not t.startswith(("http://", "https://", "mailto:"))]
    return names, paths, links


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_name_and_path_exists(page):
    names, paths, links = references(page)
    missing = ([f"name {n}" for n in names if not resolve_name(n)]
               + [f"path {p}" for p in paths if not path_exists(p, page)]
               + [f"link {t}" for t in links if not path_exists(t, page)])
    assert not missing, f"{page.relative_to(ROOT)} cites what does not exist: {missing}"


def test_the_pages_cite_enough_to_check():
    """The scan finds the references (a regex that matches nothing would pass every page)."""
    counts = [sum(map(len, references(p))) for p in PAGES]
    assert sum(counts) > 100 and all(c > 0 for c in counts), counts


# -- mutants: references a broken page would hold ------------------------------------------------
def test_a_renamed_module_attribute_or_file_is_caught(tmp_path):
    assert resolve_name("llm_experiments.tiny.training.TrainConfig")
    assert not resolve_name("llm_experiments.tiny_models.TrainConfig")  # the module before the moves
    assert not resolve_name("rlsedit.SyntheticStream")                  # renamed GaussianStream
    assert not resolve_name("rlsedit.RLSEditor.no_such_method")
    page = tmp_path / "page.md"
    page.write_text("See `llm_experiments/tiny_models.py` and [the probe](docs/probe.md).\n")
    _, paths, links = references(page)
    assert paths == ["llm_experiments/tiny_models.py"] and links == ["docs/probe.md"]
    assert not path_exists(paths[0], page) and not path_exists(links[0], page)
