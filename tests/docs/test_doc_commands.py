"""Every `rlsedit ...` command shown in README.md and docs/ parses with today's command line.

A command in a code block (continued over lines ending in a backslash) is split with shlex and
handed to the command's own parser: a renamed command, a removed or misspelt option, or a bad
value type fails here. Lines with an ellipsis ("rlsedit edit ...") are abbreviations and are
skipped; output lines ("rlsedit evaluate: 3 requests ...") are not commands. Placeholders take a
value of their kind (EDITOR an editor, N a number; OPTIONS, "more options here", is dropped).
"""

from __future__ import annotations

import re
import shlex

import pytest

from rlsedit_cli import build_parser, discover
from tests.paths import ROOT

PAGES = [ROOT / "README.md", ROOT / "theory" / "README.md", ROOT / "benchmarks" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]


def doc_commands(text: str) -> list[str]:
    """The `rlsedit COMMAND ...` lines of a page's code blocks, continuation lines joined."""
    out = []
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    blocks += re.findall(r"(?:^|\n)((?:    [^\n]*\n)+)", text)  # indented blocks
    for block in blocks:
        lines = block.replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            line = re.sub(r"^(?:\.venv/bin/rlsedit|python3? -m rlsedit_cli) ", "rlsedit ", line)
            m = re.match(r"rlsedit ([a-z-]+)(\s.*)?$", line)
            if not m or "..." in line or "[" in line or line.split()[1].endswith(":"):
                continue
            out.append(line.split("  #")[0].split(" # ")[0].strip())
    return out


COMMANDS = sorted({(page.relative_to(ROOT).as_posix(), cmd)
                   for page in PAGES for cmd in doc_commands(page.read_text())})


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 20
    names = {cmd.split()[1] for _, cmd in COMMANDS}
    assert {"edit", "edit-table", "bench-solver", "simulate", "train-tiny"} <= names


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_a_documented_command_parses(page, command):
    placeholders = {"EDITOR": "rlsedit", "N": "1"}
    argv = [placeholders.get(a, a) for a in shlex.split(command)[1:] if a != "OPTIONS"]
    assert argv[0] in discover(), f"{page}: no command {argv[0]!r}"
    parser = build_parser(argv[0])
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{page}: `{command}` does not parse (exit {exc.code})")


def test_a_renamed_option_would_be_caught():
    """The mutant: a page still showing an option the command no longer has fails to parse."""
    with pytest.raises(SystemExit):
        build_parser("edit").parse_args(["edit", "--out", "x", "--requests", "r.json"])
    assert doc_commands("text\n\n    rlsedit llm-edit --model M\n") == ["rlsedit llm-edit --model M"]
