"""docs/llm-editing.md promises that its Python examples run: they do, as written."""

from __future__ import annotations

import re

from tests.paths import ROOT

DOC = ROOT / "docs" / "llm-editing.md"


def test_llm_editing_doc_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, str(DOC.name), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1"]  # one report per batch
