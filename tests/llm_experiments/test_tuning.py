"""The tuning protocol as code (llm_experiments/tuning.py): the split, the rules, the selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm_experiments import tuning
from llm_experiments.data.loaders import load_zsre
from llm_experiments.data.world import World, WorldConfig
from llm_experiments.tuning import (
    EDITOR_GRIDS,
    REGIMES,
    VALUE_CANDIDATES,
    ModelFacts,
    TuningError,
    check_split,
    edit_argv,
    select_knobs,
    select_values,
    selection,
    write_zsre,
)
from rlsedit_cli import build_parser
from rlsedit_cli.edit import config_from_args
from tests.paths import ROOT

FACTS = ModelFacts(eigenvalues=tuple(float(x) for x in np.linspace(0.0, 3.0, 301)), w0_mean_abs=0.02)


def parse(argv):
    args = build_parser("edit").parse_args(["edit", *argv])
    return config_from_args(args, args.editor[0])


def test_the_split_is_disjoint_and_a_shared_seed_is_refused(monkeypatch):
    check_split()
    monkeypatch.setattr(tuning, "TUNING_EDIT_SEEDS", (100, 2))
    with pytest.raises(TuningError, match=r"share edit seeds \[2\]"):
        check_split()
    monkeypatch.setattr(tuning, "TUNING_EDIT_SEEDS", (100,))
    monkeypatch.setattr(tuning, "TUNING_WORLD_SEED", tuning.REPORT_WORLD_SEED)
    with pytest.raises(TuningError, match="world seed"):
        check_split()


def test_every_editor_has_the_same_budget_and_a_reference_point():
    sizes = {e: len(g) for e, g in EDITOR_GRIDS.items()}
    assert set(sizes) == set(tuning.EDITORS) and len(set(sizes.values())) == 1
    assert all(tuning.REFERENCE[e] == (tuning.SUPERSEDED_GRIDS.get(e) or EDITOR_GRIDS[e])[1] for e in tuning.EDITORS)


def test_regimes_have_the_ratios_their_names_promise():
    assert REGIMES["matched"].ratio == pytest.approx(0.68, abs=0.01)
    assert REGIMES["crowded"].ratio == pytest.approx(4.9, abs=0.1)
    assert REGIMES["matched"].n_edits == REGIMES["crowded"].n_edits  # same stream, another key dimension


@pytest.mark.parametrize("editor", ["rlsedit", "memit", "rome"])
def test_the_anchor_rule_scales_n_w_with_the_stream(editor):
    regime = REGIMES["matched"]
    values = VALUE_CANDIDATES[2]
    config = parse(edit_argv(regime, editor, values, {"r": 1.5, "lam": 0.25}, world_seed=1, edit_seed=100,
                             out="x", n_edits=100))
    # the first batch of a 700-edit stream gets the 700-edit stream's anchor: n_w = 1.5 * 700
    options = config.editing.editor_options
    assert config.editing.n_w == pytest.approx(1050.0) and options["lam"] == 0.25 and options["mu"] == 1.0
    assert config.data.n_edits == 100 and config.editing.editor == editor
    m = config.model
    assert (m.people, m.hidden, m.d_ff, m.world_seed, config.data.edit_seed) == (300, 64, 1024, 1, 100)
    v = config.editing.values
    assert (v.steps, v.lr, v.clamp_factor, v.kl_factor, v.weight_decay) == (60, 0.3, 1.5, 0.0625, 0.0)
    assert not config.evaluation.generation and not config.evaluation.along_stream and config.save_every == 0


def test_alphaedit_and_ft_rules_read_the_model():
    regime = REGIMES["crowded"]
    config = parse(edit_argv(regime, "alphaedit", VALUE_CANDIDATES[0], {"q": 0.25, "l2": 3.0}, world_seed=0,
                             edit_seed=0, out="x", facts=FACTS, along=True, generation_every=10))
    options = config.editing.editor_options
    assert options["threshold"] == pytest.approx(0.75) and options["l2"] == 3.0  # the quarter-quantile of 0..3
    e = config.evaluation
    assert e.along_stream and e.cohort_batches == regime.cohorts and e.generation_every == 10 and e.generation
    ft = parse(edit_argv(regime, "ft", VALUE_CANDIDATES[0], {"steps": 10, "lr": 0.5, "c": 2.0}, world_seed=0,
                         edit_seed=0, out="x", facts=FACTS)).editing.editor_options
    assert (ft["steps"], ft["lr"], ft["norm_bound"]) == (10, 0.5, pytest.approx(0.04))
    with pytest.raises(TuningError, match="ModelFacts"):
        edit_argv(regime, "alphaedit", VALUE_CANDIDATES[0], {"q": 0.5, "l2": 1.0}, world_seed=0, edit_seed=0, out="x")
    unbounded = parse(edit_argv(regime, "ft", VALUE_CANDIDATES[0], {"steps": 25, "lr": 1.0, "c": 0.0},
                                world_seed=0, edit_seed=0, out="x"))
    assert unbounded.editing.editor_options["norm_bound"] is None


def _two_models_cache(tmp_path):
    """A cache holding this model's statistic and another model's (ten times the scale), the other's
    file renamed to sort first (the cache finds a file by the key inside it, not by its name)."""
    import torch

    from llm_experiments.edit.statistics import SecondMoment, TextCorpus, save_moment, stats_key
    from tests.llm_fixtures import tiny_model

    g = torch.Generator().manual_seed(0)
    corpus = TextCorpus(texts=["a b c"], corpus_id="test")
    mine, other = tiny_model(seed=0), tiny_model(seed=1)
    mine.save_pretrained(tmp_path / "model")
    d_k = mine.config.intermediate_size
    for model, scale in ((other, 10.0), (mine, 1.0)):
        keys = scale * torch.randn(500, d_k, generator=g, dtype=torch.float64) * torch.linspace(
            0.1, 3.0, d_k, dtype=torch.float64)
        key = stats_key(model, 0, corpus, max_tokens=500, seq_len=8, dtype=torch.float32)
        path = save_moment(tmp_path / "stats", key, SecondMoment(keys.T @ keys, 500))
        if model is other:
            path.rename(path.with_name("0-another-model.safetensors"))
    oracle = np.linalg.eigvalsh((keys.T @ keys).numpy() / 500)
    return mine, oracle


def test_model_facts_reads_this_models_statistic_among_others(tmp_path):
    """The eigenvalues of E[kk^T] and mean |W0| of the model at hand, against numpy."""
    mine, oracle = _two_models_cache(tmp_path)
    facts = tuning.model_facts(tmp_path / "model", tmp_path / "stats")
    w = mine.model.layers[0].mlp.down_proj.weight.detach()
    assert np.allclose(facts.eigenvalues, oracle) and facts.w0_mean_abs == pytest.approx(float(w.abs().mean()))
    with pytest.raises(TuningError, match="no cached E"):
        tuning.model_facts(tmp_path / "model", tmp_path / "empty")
    with pytest.raises(TuningError, match="does not exist"):
        tuning.model_facts(tmp_path / "nowhere", tmp_path / "stats")


def test_model_facts_mutant_reading_the_caches_first_file_is_caught(tmp_path, monkeypatch):
    """Mutant: the cache's first statistics file, whoever's it is (what a per-model folder allowed)."""
    import llm_experiments.edit.statistics as st

    _, oracle = _two_models_cache(tmp_path)
    monkeypatch.setattr(st, "load_second_moments",
                        lambda model, layers, cache_dir: {layers[0]: st._read_cached(st._cache_files(cache_dir)[0])})
    facts = tuning.model_facts(tmp_path / "model", tmp_path / "stats")
    assert not np.allclose(facts.eigenvalues, oracle)


def value_rows(scores):
    return [{"candidate": c, "editor": e, "edit_seed": 100, "score": s} for (c, e), s in scores.items()]


def test_values_are_chosen_by_the_mean_over_editors_and_ties_go_to_fewer_steps():
    names = [c["name"] for c in VALUE_CANDIDATES]
    base = {(n, e): 40.0 for n in names for e in ("rlsedit", "alphaedit")}
    base[("long", "rlsedit")] = 60.0  # mean 50
    assert select_values(value_rows(base))["chosen"] == "long"
    base[("short", "rlsedit")], base[("short", "alphaedit")] = 55.0, 44.8  # mean 49.9: a tie, 30 steps < 60
    assert select_values(value_rows(base))["chosen"] == "short"
    del base[("authors", "alphaedit")]
    with pytest.raises(TuningError, match="'authors' has no run"):
        select_values(value_rows(base))


def test_knobs_are_chosen_by_the_mean_over_seeds_and_ties_go_to_the_earlier_point():
    rows = [{"point": i, "edit_seed": s, "score": sc, "knobs": EDITOR_GRIDS["memit"][i]} for (i, s), sc in
            {(0, 1): 10.0, (0, 2): 20.0, (1, 1): 30.0, (1, 2): 31.0, (2, 1): 29.0, (2, 2): 32.5,
             (3, 1): 0.0, (3, 2): 0.0}.items()]
    sel = select_knobs("memit", rows)
    assert sel["chosen"] == 1 and sel["knobs"] == EDITOR_GRIDS["memit"][1]  # 30.5 vs 30.75: tied, earlier
    assert sel["extension"] is None and not sel["needs_extension"]  # point 1 is inside the grid
    rows.append({"point": 2, "edit_seed": 3, "score": 90.0, "knobs": EDITOR_GRIDS["memit"][2]})
    with pytest.raises(TuningError, match="grid point 0"):
        select_knobs("memit", rows)


def test_a_choice_on_the_grids_edge_asks_for_one_point_beyond_it():
    grid = EDITOR_GRIDS["alphaedit"]
    rows = [{"point": i, "edit_seed": 100, "score": sc, "knobs": grid[i]}
            for i, sc in enumerate((10.0, 20.0, 30.0, 5.0))]
    sel = select_knobs("alphaedit", rows)
    assert sel["chosen"] == 2 and sel["needs_extension"] and sel["extension"] == {"q": 0.99, "l2": 10.0}
    ext = {"point": 4, "edit_seed": 100, "knobs": {"q": 0.99, "l2": 10.0}}
    better = select_knobs("alphaedit", [*rows, {**ext, "score": 40.0}])
    assert better["chosen"] == 4 and better["knobs"] == {"q": 0.99, "l2": 10.0} and not better["needs_extension"]
    worse = select_knobs("alphaedit", [*rows, {**ext, "score": 29.8}])
    assert worse["chosen"] == 2 and worse["knobs"] == {"q": 0.97, "l2": 10.0}  # tie: the grid's point
    # runs of a replaced grid (same point index, other knobs) are set aside, never chosen
    old = [{"point": i, "edit_seed": 100, "score": 99.0, "knobs": k}
           for i, k in enumerate(tuning.SUPERSEDED_GRIDS["alphaedit"])]
    assert select_knobs("alphaedit", [*old, *rows, {**ext, "score": 40.0}]) == better
    assert tuning.current_rows("alphaedit", old) == ([], old)
    for editor in tuning.EDITORS:  # every grid point on an edge has a step beyond it, inside no grid
        for knobs in EDITOR_GRIDS[editor]:
            ext = tuning.extension(editor, knobs)
            assert ext is None or ext not in EDITOR_GRIDS[editor]
    assert tuning.extension("memit", {"r": 0.1, "lam": 1e-3}) is None


def test_the_zsre_form_edits_toward_the_counterfactual(tmp_path):
    regime = REGIMES["demo"]
    path = write_zsre(regime, 0, 5, tmp_path / "zsre.json")
    requests = load_zsre(path)
    world = World(WorldConfig(n_people=regime.people, seed=0))
    cf = world.edit_requests(regime.n_edits, seed=5)
    assert len(requests) == regime.n_edits
    for z, c in zip(requests, cf, strict=True):
        assert z.subject == c.subject and z.target_new == c.target_new  # the counterfactual, not the fact
        assert z.full_prompt == c.extra["question"] and z.paraphrase_prompts == (c.paraphrase_prompts[0],)
        assert json.loads(path.read_text())[z.case_id]["alt"] == c.target_true.strip()


def test_tuned_settings_are_what_the_committed_tuning_runs_select():
    """tuning.TUNED must be exactly the selection from docs/edit_benchmark_data/tuning_<regime>.json."""
    for regime, chosen in tuning.TUNED.items():
        record = json.loads((ROOT / "docs" / "edit_benchmark_data" / f"tuning_{regime}.json").read_text())
        assert selection(record) == chosen, regime
    # mutant: another knob than the selection's is caught
    if tuning.TUNED:
        regime, chosen = next(iter(tuning.TUNED.items()))
        record = json.loads((ROOT / "docs" / "edit_benchmark_data" / f"tuning_{regime}.json").read_text())
        editor = next(e for e in tuning.EDITORS if e in chosen)
        wrong = {**chosen, editor: next(k for k in EDITOR_GRIDS[editor] if k != chosen[editor])}
        assert selection(record) != wrong
