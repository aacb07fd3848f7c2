"""Tables in docs/ that are rebuilt from committed data files, and checked to match.

A measured table in a page of docs/ (or the README) is wrapped in two HTML comments::

    <!-- table: edit_matched_main -->
    | editor | Efficacy | ... |
    |---|---|---|
    ...
    <!-- end table -->

The name after ``table:`` is a *builder*: a function, registered with :func:`builder` in one of
the modules ``tests/docs/tables_*.py``, that reads the data file(s) under ``docs/*_data/`` and
returns the table's markdown, using the project's own formatting code wherever there is one. The
test ``tests/docs/test_tables.py`` rebuilds every wrapped table and fails when the page differs
from its data (a number edited by hand, data regenerated without the page, or the reverse).

``python -m tests.docs.tables`` rewrites every wrapped table from its data (``--check`` only
reports). Numbers in prose beside a table name the data file they come from.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
from collections.abc import Callable
from pathlib import Path

from tests.paths import ROOT

DOCS = ROOT / "docs"
BUILDERS: dict[str, Callable[[], str]] = {}
BLOCK = re.compile(r"^<!-- table: (?P<name>[\w.-]+) -->\n(?P<body>.*?)^<!-- end table -->$", re.M | re.S)


def builder(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register ``fn() -> markdown`` as the builder of the tables wrapped as ``<!-- table: name -->``."""

    def register(fn: Callable[[], str]) -> Callable[[], str]:
        if name in BUILDERS:
            raise RuntimeError(f"two builders for table {name!r}")
        BUILDERS[name] = fn
        return fn

    return register


def read_json(relative: str):
    """A data file under docs/, parsed (``.jsonl``: a list of its lines)."""
    path = DOCS / relative
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table: a header row, the separator, one line per row (cells already formatted)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load_builders() -> dict[str, Callable[[], str]]:
    """Import every ``tests/docs/tables_*.py`` (each registers its builders) and return them all."""
    package = Path(__file__).parent
    for info in pkgutil.iter_modules([str(package)]):
        if info.name.startswith("tables_"):
            importlib.import_module(f"tests.docs.{info.name}")
    # the modules register with tests.docs.tables, which is not this module under `python -m`
    return importlib.import_module("tests.docs.tables").BUILDERS


def pages() -> list[Path]:
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


def wrapped_tables(text: str) -> list[tuple[str, str]]:
    """``(name, body)`` of every wrapped table of a page, in order."""
    return [(m.group("name"), m.group("body").strip("\n")) for m in BLOCK.finditer(text)]


def rebuild(text: str, builders: dict[str, Callable[[], str]]) -> str:
    """The page with every wrapped table replaced by its builder's output."""

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in builders:
            raise KeyError(f"no builder for table {name!r} (add one to a tests/docs/tables_*.py module)")
        return f"<!-- table: {name} -->\n{builders[name]().strip()}\n<!-- end table -->"

    return BLOCK.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.docs.tables", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only report the pages whose tables differ from their data")
    args = p.parse_args(argv)
    builders = load_builders()
    stale = []
    for page in pages():
        text = page.read_text()
        new = rebuild(text, builders)
        if new != text:
            stale.append(page)
            if not args.check:
                page.write_text(new)
    verb = "differ from their data" if args.check else "rewritten"
    print(f"{len(stale)} page(s) {verb}: {', '.join(p.name for p in stale) or 'none'}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
