"""Several seeds in one table: intervals against scipy, grouping, refusals, rankings only where
intervals separate (llm_experiments/table.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from llm_experiments.table import (
    TableError,
    aggregate,
    aggregate_report,
    aggregate_table,
    compact,
    paired_difference,
    ranking,
    retention_table,
    run_values,
    score,
    seeds_of,
    separated,
    setting_of,
    t_interval,
)


def run(editor, seed, eff, gen=50.0, spec=80.0, *, world=0, n_w=10.0, first=None, type_acc=0.9):
    """A summary.json as `rlsedit edit` writes it (only the parts the aggregation reads)."""
    s = {"editor": editor, "n_edits": 100, "_path": f"runs/seed-{seed}/{editor}",
         "efficacy": eff, "generalization": gen, "specificity": spec, "efficacy_sem": 1.0,
         "config": {"model": {"name": "tiny-llama", "world_seed": world, "train_seed": 0},
                    "data": {"source": "world", "edit_seed": seed}, "editing": {"editor": editor, "n_w": n_w},
                    "threads": 1, "cache_dir": "/somewhere", "save_every": 0,
                    "resolved": {"model_path": f"/cache/model-{world}"}},
         "capability": {"before": {"type": {"type_accuracy": 1.0}},
                        "after": {"type": {"type_accuracy": type_acc}, "template": {"template_nll": 1.5}}}}
    if first is not None:
        s["retention"] = {"first_1_batches": {"size": 20, "efficacy": {"before": 0.0, "at_write": 0.9,
                                                                       "final": first}}}
    return s


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=12))
def test_t_interval_matches_scipy(values):
    mean, half = t_interval(values)
    assert mean == pytest.approx(float(np.mean(values)), abs=1e-9)
    sem = stats.sem(values)
    if sem == 0 or not math.isfinite(sem):
        assert half == pytest.approx(0.0, abs=1e-9)
        return
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sem)
    assert half == pytest.approx((hi - lo) / 2, rel=1e-9, abs=1e-9)


def test_t_interval_of_three_known_values():
    # 1, 2, 3: mean 2, sd 1, sem 1/sqrt(3), t_0.975(2) = 4.30265272975 (tables)
    mean, half = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.30265272975 / math.sqrt(3), rel=1e-10)
    assert t_interval([5.0]) == (5.0, None)
    with pytest.raises(ValueError):
        t_interval([])


def test_score_is_the_harmonic_mean():
    assert score({"efficacy": 50.0, "generalization": 50.0, "specificity": 50.0}) == pytest.approx(50.0)
    assert score({"efficacy": 100.0, "generalization": 50.0, "specificity": 100.0}) == pytest.approx(75.0)
    assert score({"efficacy": 0.0, "generalization": 50.0, "specificity": 100.0}) == 0.0


def test_setting_and_seeds_ignore_seeds_machine_and_resolved_paths():
    a, b = run("rlsedit", 0, 50.0), run("rlsedit", 1, 60.0, world=3)
    assert setting_of(a) == setting_of(b)
    assert seeds_of(a) == {"edit_seed": 0, "world_seed": 0, "train_seed": 0}
    assert "threads" not in setting_of(a) and "editing.n_w" in setting_of(a)
    # per-seed input files of the same name are one setting
    a["config"]["data"]["source"], b["config"]["data"]["source"] = "x/seed-0/zsre.json", "x/seed-1/zsre.json"
    assert setting_of(a) == setting_of(b)
    c = compact(a)
    assert "config" not in c and setting_of(c) == setting_of(a) and seeds_of(c) == seeds_of(a)
    assert run_values(c) == run_values(a)


def test_aggregate_groups_by_editor_with_mean_and_interval():
    runs = [run("rlsedit", s, e, first=f) for s, e, f in ((0, 70.0, 0.8), (1, 72.0, 0.7), (2, 74.0, 0.75))]
    runs += [run("memit", s, e, first=f) for s, e, f in ((0, 50.0, 0.4), (1, 55.0, 0.45), (2, 60.0, 0.5))]
    aggs = aggregate(runs)
    assert [a.label for a in aggs] == ["rlsedit", "memit"] and [a.n for a in aggs] == [3, 3]
    r = aggs[0]
    assert r.mean["efficacy"] == pytest.approx(72.0)
    assert r.half["efficacy"] == pytest.approx(t_interval([70.0, 72.0, 74.0])[1])
    assert r.values["first_1_batches.final"] == pytest.approx([80.0, 70.0, 75.0])
    assert r.mean["type_accuracy"] == pytest.approx(90.0)
    table = aggregate_table(aggs)
    assert "| rlsedit | 3 | 100 | 72.0 ± 5.0 |" in table  # t(2) * 2 / sqrt(3) = 4.97
    assert "| first 20: at write | first 20: after stream |" in retention_table(aggs)


def test_mixed_settings_and_repeated_seeds_are_refused():
    with pytest.raises(TableError, match=r"differ in .*n_w"):
        aggregate([run("rlsedit", 0, 50.0, n_w=10.0), run("rlsedit", 1, 50.0, n_w=300.0)])
    # a value computed twice that differs in its last bits is the same setting; 1e-6 apart is not
    assert len(aggregate([run("rlsedit", 0, 50.0, n_w=0.1 + 0.2), run("rlsedit", 1, 50.0, n_w=0.3)])) == 1
    with pytest.raises(TableError, match="differ in"):
        aggregate([run("rlsedit", 0, 50.0, n_w=0.3), run("rlsedit", 1, 50.0, n_w=0.3 + 1e-6)])
    with pytest.raises(TableError, match="same seeds"):
        aggregate([run("rlsedit", 0, 50.0), run("rlsedit", 0, 51.0)])
    with pytest.raises(TableError, match="labels for"):
        aggregate([run("rlsedit", 0, 50.0)], ["a", "b"])
    # explicit labels put two settings of one editor on two rows
    aggs = aggregate([run("rlsedit", 0, 50.0, n_w=10.0), run("rlsedit", 0, 50.0, n_w=300.0)], ["nw10", "nw300"])
    assert [a.label for a in aggs] == ["nw10", "nw300"]


def test_a_ranking_is_stated_only_where_intervals_separate():
    far = aggregate([run("a", s, e) for s, e in ((0, 80.0), (1, 81.0), (2, 82.0))]
                    + [run("b", s, e) for s, e in ((0, 50.0), (1, 51.0), (2, 52.0))])
    assert separated(far[0], far[1], "efficacy") and not separated(far[1], far[0], "efficacy")
    assert ranking(far, "efficacy") == "a > b"
    # mutant: the same means with wide spread overlap, so no ranking may be stated
    near = aggregate([run("a", s, e) for s, e in ((0, 60.0), (1, 81.0), (2, 102.0))]
                     + [run("b", s, e) for s, e in ((0, 30.0), (1, 51.0), (2, 72.0))])
    assert near[0].mean["efficacy"] > near[1].mean["efficacy"]
    assert ranking(near, "efficacy") == "no separation"
    # one seed has no interval: never ranked
    single = aggregate([run("a", 0, 90.0), run("b", 0, 10.0)])
    assert ranking(single, "efficacy") == "no separation"


def test_paired_difference_matches_runs_by_seed():
    aggs = aggregate([run("a", s, e) for s, e in ((0, 60.0), (1, 81.0), (2, 102.0))]
                     + [run("b", s, e) for s, e in ((2, 100.0), (0, 57.0), (1, 79.0))])
    mean, half, n = paired_difference(aggs[0], aggs[1], "efficacy")
    assert n == 3 and mean == pytest.approx(7.0 / 3) and half == pytest.approx(t_interval([3.0, 2.0, 2.0])[1])
    # the paired interval excludes 0 where the unpaired intervals overlap
    assert mean - half > 0 and not separated(aggs[0], aggs[1], "efficacy")
    with pytest.raises(TableError, match="share no seeds"):
        paired_difference(aggs[0], aggregate([run("c", 9, 1.0)])[0], "efficacy")


def test_report_names_the_interval_and_the_rankings():
    text = aggregate_report(aggregate([run("a", s, 80.0 + s, first=0.8) for s in range(3)]
                                      + [run("b", s, 50.0 + s, first=0.3) for s in range(3)]))
    assert "95% interval" in text and "3 seed(s) per row" in text
    assert "- efficacy: a > b" in text and "- first 20 kept: a > b" in text
    assert "- generalization: no separation" in text


def test_paired_table_marks_differences_whose_interval_excludes_zero():
    from llm_experiments.table import paired_table

    aggs = aggregate([run("rlsedit", s, e) for s, e in ((0, 60.0), (1, 81.0), (2, 102.0))]
                     + [run("memit", s, e) for s, e in ((0, 57.0), (1, 79.0), (2, 100.0))]
                     + [run("alphaedit", s, e) for s, e in ((0, 70.0), (1, 61.0), (2, 100.0))])
    table = paired_table(aggs, "rlsedit").splitlines()
    assert table[0].startswith("| difference | efficacy |")
    assert table[2].startswith("| rlsedit - memit | 2.3 ± 1.4 *")  # 3, 2, 2: the interval excludes 0
    assert table[3].startswith("| rlsedit - alphaedit | 4.0 ± ") and "*" not in table[3].split("|")[2]
    assert paired_table(aggs, "rome") is None
