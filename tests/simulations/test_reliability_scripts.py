"""The reliability scripts run at toy sizes, and docs/reliability.md's examples run as written."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

from tests.paths import ROOT

EPS32 = float(np.finfo(np.float32).eps)


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "simulations" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_drift_script_at_toy_size(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "drift.json"
    try:
        assert script("drift_float32").main(["--d-k", "24", "--d-v", "3", "--edits", "200", "--batch", "20",
                                              "--refactor-rows", "100", "--checkpoints", "2", "--float64",
                                              "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 8  # (rank1, batch) x (float32, float64) x (off, on)
    for run in runs:
        assert [p["edits"] for p in run["curve"]] == [100, 200]
        assert all(p["positive_definite"] for p in run["curve"])
        worst = max(p["W_rel_err"] for p in run["curve"])
        if run["dtype"] == "torch.float64":
            assert worst < 1e-10
        elif run["refactor_every"] is not None:  # every checkpoint follows a rebuild: rounding only
            assert worst <= 2 * EPS32
        else:
            assert worst < 1e-3


def test_long_stream_script_at_toy_size(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "long.jsonl"
    try:
        assert script("long_stream").main(["--d-k", "32", "--d-v", "4", "--edits", "400", "--batch", "20",
                                            "--checkpoints", "2", "--threads", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert [r["edits"] for r in rows] == [200, 400]
    assert all(r["positive_definite"] and r["W_rel_err"] < 1e-3 for r in rows)


def test_reliability_doc_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/reliability.md runs as written (in a scratch directory)."""
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "reliability.md").read_text(), flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/reliability.md", "exec"), namespace)


def test_checkpoint_cost_script_at_toy_size(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert script("checkpoint_cost").main(["--d-k", "16", "--d-v", "2", "--repeats", "1",
                                                "--dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["refactor_every"] for r in rows] == [None, 10] and rows[1]["file_bytes"] > rows[0]["file_bytes"]


def test_drift_table_reads_the_drift_scripts_json_and_names_a_missing_file(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "drift.json"
    try:
        script("drift_float32").main(["--d-k", "16", "--d-v", "2", "--edits", "40", "--batch", "20",
                                      "--checkpoints", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    script("drift_table").main([str(out)])
    table = capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert table.count("\n| rank-1 |") + table.count("\n| batches of 20 |") == len(runs)
    with pytest.raises(SystemExit):
        script("drift_table").main([str(tmp_path / "missing.json")])
    assert "missing.json: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["drift_float32", "long_stream", "checkpoint_cost"])
@pytest.mark.parametrize("threads", ["0", "100000", "two"])
def test_scripts_refuse_a_thread_count_out_of_range(name, threads, capsys):
    with pytest.raises(SystemExit):
        script(name).main(["--threads", threads])
    assert "--threads" in capsys.readouterr().err
