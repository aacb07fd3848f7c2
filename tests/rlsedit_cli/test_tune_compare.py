"""rlsedit tune and rlsedit compare end to end on a tiny regime (a model trained in seconds)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from llm_experiments import tuning
from llm_experiments.table import read_run, t_interval
from llm_experiments.tuning import Regime
from rlsedit_cli import main

TINY = Regime("tiny", "a machinery check", people=40, hidden=16, d_ff=32, n_edits=6, batch_size=3, cohorts=(1,),
              generation_every=0)
VALUES = ({"name": "a", "steps": 4, "lr": 0.5, "clamp": 1.5, "kl": 0.0625, "weight_decay": 0.0},
          {"name": "b", "steps": 2, "lr": 0.5, "clamp": 1.5, "kl": 0.0625, "weight_decay": 0.0})
GRIDS = {e: g[:2] for e, g in tuning.EDITOR_GRIDS.items()}


@pytest.fixture(scope="module")
def tiny_protocol(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    mp = pytest.MonkeyPatch()
    mp.setitem(tuning.REGIMES, "tiny", TINY)
    mp.setattr(tuning, "EDITORS", ("alphaedit", "rlsedit"))  # the protocol over two editors, to be quick
    mp.setattr(tuning, "VALUE_CANDIDATES", VALUES)
    mp.setattr(tuning, "EDITOR_GRIDS", GRIDS)
    mp.setattr(tuning, "REFERENCE", {e: g[1] for e, g in GRIDS.items()})
    cache = str(root / "cache")
    assert main(["tune", "--regime", "tiny", "--editors", "alphaedit,rlsedit", "--out", str(root / "tune"),
                 "--cache", cache]) == 0
    yield root, cache, mp
    mp.undo()


def test_tune_runs_both_stages_on_the_tuning_split_and_records_the_selection(tiny_protocol):
    root, _, _ = tiny_protocol
    record = json.loads((root / "tune" / "tuning.json").read_text())
    rows = record["values"]["rows"]
    assert {(r["candidate"], r["editor"]) for r in rows} == {(c, e) for c in "ab" for e in ("alphaedit", "rlsedit")}
    for r in rows:  # stage 1: the first batch only, on the tuning world and seed
        s = read_run(root / "tune" / "values" / r["candidate"] / r["editor"] / "seed-100")
        assert s["n_edits"] == TINY.batch_size
        assert s["config"]["model"]["world_seed"] == tuning.TUNING_WORLD_SEED
        assert s["config"]["data"]["edit_seed"] == 100
        assert r["score"] == pytest.approx(tuning.criterion(s))
    chosen = record["values"]["selection"]["chosen"]
    for editor in ("alphaedit", "rlsedit"):
        part = record["editors"][editor]
        points = [r["point"] for r in part["rows"]]
        assert points[:2] == [0, 1] and all(r["values"] == chosen for r in part["rows"])
        sel = tuning.select_knobs(editor, part["rows"])
        assert part["selection"] == sel and not sel["needs_extension"]
        # a choice on the grid's edge ran the point beyond it (and only then)
        assert (points == [0, 1, 2]) == (sel["extension"] is not None)
        s = read_run(root / "tune" / "editors" / "point-0" / editor / "seed-100")
        assert s["n_edits"] == TINY.n_edits
        assert s["config"]["editing"]["values"]["steps"] == next(c["steps"] for c in VALUES if c["name"] == chosen)
    # AlphaEdit's threshold is the rule applied to the model's measured spectrum (grid point 0: q = 0.75)
    assert GRIDS["alphaedit"][0]["q"] == 0.75
    s = read_run(root / "tune" / "editors" / "point-0" / "alphaedit" / "seed-100")
    quartiles = record["model_facts"]["quartiles"]
    assert quartiles == sorted(quartiles) and record["model_facts"]["d_k"] == TINY.d_ff
    assert s["config"]["editing"]["editor_options"]["threshold"] == pytest.approx(quartiles[2], rel=1e-5)
    # rlsedit's anchor: r * the stream's length, also in stage 1's one-batch runs
    s = read_run(root / "tune" / "values" / "a" / "rlsedit" / "seed-100")
    assert s["config"]["editing"]["n_w"] == pytest.approx(GRIDS["rlsedit"][1]["r"] * TINY.n_edits)
    # every run's own output is in the log beside its folder
    runs = [p.parent for p in (root / "tune").rglob("summary.json") if p.parent.name.startswith("seed-")]
    assert runs and all("General capability, before" in (r.parent / f"{r.name}.log").read_text() for r in runs)


def test_a_second_tune_reuses_every_finished_run(tiny_protocol, capsys):
    root, cache, _ = tiny_protocol
    before = sorted(p.stat().st_mtime_ns for p in (root / "tune").rglob("summary.json"))
    assert main(["tune", "--regime", "tiny", "--editors", "alphaedit,rlsedit", "--out", str(root / "tune"),
                 "--cache", cache]) == 0
    assert sorted(p.stat().st_mtime_ns for p in (root / "tune").rglob("summary.json")) == before
    assert "rlsedit: point" in capsys.readouterr().out


def test_compare_reports_held_out_seeds_with_intervals(tiny_protocol, capsys):
    root, cache, mp = tiny_protocol
    record = json.loads((root / "tune" / "tuning.json").read_text())
    chosen = tuning.selection(record)
    chosen["memit"] = GRIDS["memit"][0]
    mp.setitem(tuning.TUNED, "tiny", chosen)
    out = root / "compare"
    assert main(["compare", "--regime", "tiny", "--editors", "alphaedit,rlsedit,memit", "--seeds", "0,1",
                 "--out", str(out), "--cache", cache]) == 0
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["edit_seeds"] == [0, 1] and len(agg["runs"]) == 6
    table = (out / "table.md").read_text()
    rls = [read_run(out / f"seed-{s}" / "rlsedit") for s in (0, 1)]
    assert all(r["config"]["model"]["world_seed"] == tuning.REPORT_WORLD_SEED for r in rls)
    assert {r["config"]["data"]["edit_seed"] for r in rls} == {0, 1}
    mean, half = t_interval([r["efficacy"] for r in rls])
    assert f"| rlsedit | 2 | 6 | {mean:.1f} ± {half:.1f} |" in table
    assert "first 3: after stream" in table and "In words:" in table
    # the tuned settings, not the defaults: the chosen values' steps and the n_w rule
    assert rls[0]["config"]["editing"]["values"]["steps"] == chosen["values"]["steps"]
    assert rls[0]["config"]["editing"]["n_w"] == pytest.approx(chosen["rlsedit"]["r"] * TINY.n_edits)
    # the terminal gets one line per run and the aggregate; each run's own tables go to its log
    # (mutant caught: running `rlsedit edit` unredirected prints fifteen single-run tables in the demo)
    printed = capsys.readouterr().out
    assert "seed 1, memit: " in printed and "| rlsedit | 2 | 6 |" in printed
    assert "General capability, before -> after" not in printed
    assert "General capability, before -> after" in (out / "seed-1" / "memit.log").read_text()


def test_compare_shows_the_end_of_a_failed_runs_log(tiny_protocol, tmp_path, capsys):
    root, cache, mp = tiny_protocol
    mp.setitem(tuning.TUNED, "tiny", tuning.selection(json.loads((root / "tune" / "tuning.json").read_text())))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tuning, "edit_argv", lambda *a, **k: ["--no-such-option"])
        code = main(["compare", "--regime", "tiny", "--editors", "rlsedit", "--seeds", "0",
                     "--out", str(tmp_path / "c"), "--cache", cache])
    printed = capsys.readouterr().out
    assert code == 2 and "seed 0, rlsedit: failed (status 2)" in printed and "rlsedit edit: error" in printed


def test_compare_refuses_tuning_seeds_and_untuned_regimes(tiny_protocol, tmp_path):
    with pytest.raises(SystemExit, match="tuning split"):
        main(["compare", "--regime", "matched", "--seeds", "100", "--out", str(tmp_path)])
    _, _, mp = tiny_protocol
    mp.delitem(tuning.TUNED, "matched", raising=False)
    with pytest.raises(SystemExit, match="no tuned settings"):
        main(["compare", "--regime", "matched", "--out", str(tmp_path)])


def test_compare_in_zsre_form_scores_token_accuracy(tiny_protocol):
    root, cache, mp = tiny_protocol
    chosen = tuning.selection(json.loads((root / "tune" / "tuning.json").read_text()))
    mp.setitem(tuning.TUNED, "tiny", chosen)
    out = root / "zsre"
    assert main(["compare", "--regime", "tiny", "--editors", "rlsedit", "--seeds", "0,1", "--zsre",
                 "--out", str(out), "--cache", cache]) == 0
    s = read_run(out / "seed-0" / "rlsedit")
    assert s["config"]["data"]["dataset"] == "zsre" and "fluency" not in s
    records = [json.loads(x) for x in (out / "seed-0" / "rlsedit" / "after_stream" / "records.jsonl")
               .read_text().splitlines()]
    assert len(records) == TINY.n_edits and s["efficacy"] == pytest.approx(
        100 * sum(r["efficacy"] for r in records) / len(records))


def test_compare_can_apply_another_regimes_settings_unchanged(tiny_protocol):
    root, cache, mp = tiny_protocol
    chosen = tuning.selection(json.loads((root / "tune" / "tuning.json").read_text()))
    other = {**chosen, "rlsedit": {"r": 0.5, "lam": 0.25}}
    mp.setitem(tuning.REGIMES, "tiny2", TINY)
    mp.setitem(tuning.TUNED, "tiny2", other)
    mp.setitem(tuning.TUNED, "tiny", chosen)
    out = root / "rules"
    assert main(["compare", "--regime", "tiny", "--settings-from", "tiny2", "--editors", "rlsedit", "--seeds", "0,1",
                 "--out", str(out), "--cache", cache]) == 0
    s = read_run(out / "seed-1" / "rlsedit")
    assert s["config"]["editing"]["n_w"] == pytest.approx(0.5 * TINY.n_edits)  # tiny2's r, tiny's stream
    assert s["config"]["editing"]["editor_options"]["lam"] == 0.25
    assert json.loads((out / "aggregate.json").read_text())["settings_from"] == "tiny2"
    assert "settings chosen on the tuning split for regime tiny2" in (out / "table.md").read_text()
