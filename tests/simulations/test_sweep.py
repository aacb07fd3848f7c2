"""simulations.sweep: results files, resuming, refusing a changed config; simulations.config overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from rlsedit.config import Config
from simulations.config import build_config, parse_sets
from simulations.sweep import SweepConfigError, read_metrics, run_sweep


def _cells():
    return [{"a": i} for i in range(4)]


def test_sweep_writes_files_and_resumes_without_rerunning(tmp_path):
    calls = []

    def run(cell):
        calls.append(cell["a"])
        return [{"a": cell["a"], "x": cell["a"] ** 2}]

    recs = run_sweep(tmp_path, {"k": 1}, _cells(), run, progress=False)
    assert sorted(r["x"] for r in recs) == [0, 1, 4, 9]
    assert json.loads((tmp_path / "config.json").read_text()) == {"k": 1}
    recs2 = run_sweep(tmp_path, {"k": 1}, _cells(), run, progress=False)
    assert calls == [0, 1, 2, 3]  # nothing ran twice
    assert sorted(r["x"] for r in recs2) == [0, 1, 4, 9]


def test_sweep_drops_an_unfinished_cell_and_a_truncated_line(tmp_path):
    def boom(cell):
        if cell["a"] == 2:
            raise KeyboardInterrupt
        return [{"x": cell["a"]}]

    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, {"k": 1}, _cells(), boom, progress=False)
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"cell": "a=2", "x": 99}\n{"cell": "a=2", "x":')  # half-written cell, cut-off line
    done = []
    recs = run_sweep(tmp_path, {"k": 1}, _cells(), lambda c: done.append(c["a"]) or [{"x": c["a"]}], progress=False)
    assert done == [2, 3]
    assert sorted(r["x"] for r in recs) == [0, 1, 2, 3]
    assert sorted(r["x"] for r in read_metrics(tmp_path / "metrics.jsonl") if "x" in r) == [0, 1, 2, 3]


def test_sweep_refuses_another_config_unless_fresh(tmp_path):
    run_sweep(tmp_path, {"k": 1}, _cells(), lambda c: [{"x": 1}], progress=False)
    with pytest.raises(SweepConfigError, match=r"differs in \['k'\]"):
        run_sweep(tmp_path, {"k": 2}, _cells(), lambda c: [{"x": 1}], progress=False)
    recs = run_sweep(tmp_path, {"k": 2}, _cells(), lambda c: [{"x": 2}], fresh=True, progress=False)
    assert [r["x"] for r in recs] == [2, 2, 2, 2]


def test_duplicate_cells_are_refused(tmp_path):
    with pytest.raises(ValueError, match="same parameters"):
        run_sweep(tmp_path, {}, [{"a": 1}, {"a": 1}], lambda c: [], progress=False)


@dataclass(frozen=True)
class _Cfg(Config):  # an experiment's config: a rlsedit.config.Config with a quick() preset
    n: int = 1
    xs: tuple[float, ...] = (1.0,)
    flag: bool = False
    name: str = "a"

    def validate(self):
        if self.n < 0:
            raise ValueError("n must be >= 0")

    @classmethod
    def quick(cls):
        return cls(n=0)


def test_config_overrides_are_typed_and_validated(tmp_path):
    assert parse_sets(_Cfg, ["n=3", "xs=1,2.5", "flag=true", "name=b"]) == {
        "n": 3, "xs": (1.0, 2.5), "flag": True, "name": "b"}
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"experiment": "x", "n": 5, "xs": [2.0]}))
    assert build_config(_Cfg, quick=True, file=f, sets=["flag=1"]) == _Cfg(n=5, xs=(2.0,), flag=True)
    with pytest.raises(ValueError, match="no option 'm'"):
        parse_sets(_Cfg, ["m=1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_sets(_Cfg, ["n"])
    with pytest.raises(ValueError, match="n must be >= 0"):
        build_config(_Cfg, quick=False, sets=["n=-1"])
    f.write_text(json.dumps({"n": 5, "zzz": 1}))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['zzz'\]"):
        build_config(_Cfg, quick=True, file=f)
