"""The synthetic fact world: reproducible, consistent facts, valid CounterFact and ZsRE files."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_experiments.data.requests import EditRequest
from llm_experiments.data.world import (
    RELATION_SPECS,
    World,
    WorldConfig,
    WorldConfigError,
    load_world,
    write_world,
)


@st.composite
def world_configs(draw) -> WorldConfig:
    return WorldConfig(
        n_people=draw(st.integers(4, 40)),
        n_relations=draw(st.integers(1, len(RELATION_SPECS))),
        pool_size=draw(st.integers(2, 8)),
        renderings=draw(st.integers(1, 3)),
        heldout_wordings=draw(st.integers(1, 5)),
        question_fraction=draw(st.floats(0.05, 0.95)),
        seed=draw(st.integers(0, 2**31)),
    )


def person_of(world: World, prompt: str) -> int:
    """The person a full prompt is about (names are two words; exactly one must match)."""
    found = [p for p, name in enumerate(world.people) if re.search(rf"(^| ){re.escape(name)}( |$)", prompt)]
    assert len(found) == 1, (prompt, found)
    return found[0]


@given(world_configs(), st.integers(0, 1000))
def test_edit_requests_are_consistent_with_the_world(cfg, edit_seed):
    world = World(cfg)
    reqs = world.edit_requests(seed=edit_seed)
    assert len(reqs) == cfg.n_facts
    assert len({(r.extra["person"], r.extra["relation"]) for r in reqs}) == cfg.n_facts  # distinct facts
    for req in reqs:
        assert isinstance(req, EditRequest)
        p, r = req.extra["person"], req.extra["relation"]
        rel = world.relations[r]
        assert req.subject == world.people[p]
        assert req.relation_id == rel.relation_id
        assert req.target_true == " " + world.objects[p][r]  # the world's fact
        assert req.target_new != req.target_true
        assert req.target_new.strip() in rel.pool  # the same relation's pool
        assert req.prompt.replace("{}", "").strip() in {w.replace("{}", "").strip() for w in rel.trained_wordings}
        for text in (req.full_prompt, *req.paraphrase_prompts, *req.generation_prompts, req.extra["question"]):
            assert person_of(world, text) == p
        assert set(req.paraphrase_prompts) == {w.format(req.subject) for w in rel.heldout_wordings}
        for prompt in req.neighborhood_prompts:  # other people holding the same true object
            q = person_of(world, prompt)
            assert q != p and world.objects[q][r] == req.target_true.strip()
        assert len(req.neighborhood_prompts) == min(10, len(world.holders(r, req.target_true.strip())) - 1)
        for prompt in req.extra["attribute_prompts"]:
            assert world.objects[person_of(world, prompt)][r] == req.target_new.strip()
        for text in req.reference_texts:
            assert text.endswith(f" {req.target_new.strip()} .")


@given(world_configs())
def test_training_texts_follow_the_design(cfg):
    world = World(cfg)
    texts = world.training_texts()
    vocab = set(world.vocabulary())
    n_bios = cfg.n_people * cfg.renderings
    questions = [t for t in texts if t.startswith("the ")]
    assert len(texts) == n_bios + len(questions)
    assert len(questions) == len(world.question_people) * cfg.n_relations
    heldout = [w.replace("{}", "").strip() for rel in world.relations for w in rel.heldout_wordings]
    for text in texts:
        assert set(text.split()) <= vocab
        assert not any(f" {h} " in text for h in heldout)  # paraphrase wordings are never trained
        if text.startswith("the "):
            continue
        sentences = [s.strip() for s in text.split(" .") if s.strip()]
        assert len(sentences) == cfg.n_relations
        p = person_of(world, sentences[0])
        objs = []
        for s in sentences:
            assert s.startswith(world.people[p] + " ")  # every sentence opens with the full name
            objs.append(s.split()[-1])
        assert sorted(objs) == sorted(world.objects[p])  # one sentence per attribute, true objects


@given(world_configs())
def test_the_same_config_gives_the_same_world(cfg):
    a, b = World(cfg), World(cfg)
    assert a.people == b.people and a.objects == b.objects
    assert a.training_texts() == b.training_texts()
    assert a.edit_requests(seed=3) == b.edit_requests(seed=3)
    other = World(WorldConfig(**{**cfg.to_dict(), "seed": cfg.seed + 1}))
    assert (other.people, other.objects) != (a.people, a.objects)


def test_probes_cover_every_fact_and_hold_out_questions():
    world = World(WorldConfig(n_people=30, n_relations=4))
    assert len(world.probes("trained")) == len(world.probes("heldout")) == 120
    questions = world.probes("question")
    assert len(questions) == (30 - len(world.question_people)) * 4
    for prompt, obj in questions:
        p = person_of(world, prompt)
        assert p not in world.question_people and obj in world.objects[p]
    with pytest.raises(ValueError, match="unknown probe kind"):
        world.probes("nonsense")


def test_the_world_scales_to_ten_thousand_distinct_facts():
    world = World(WorldConfig(n_people=2000, n_relations=5))
    assert len(set(world.people)) == 2000
    reqs = world.edit_requests()
    assert len({(r.subject, r.relation_id) for r in reqs}) == 10_000
    assert len({(r.subject, r.relation_id, r.target_new) for r in reqs}) == 10_000


@pytest.mark.parametrize(("field", "value"), [
    ("n_people", 3), ("n_relations", 0), ("n_relations", 7), ("pool_size", 1), ("renderings", 0),
    ("heldout_wordings", 0), ("heldout_wordings", 6), ("question_fraction", 0.0), ("question_fraction", 1.0),
    ("seed", -1), ("n_people", 10.5),
])
def test_bad_world_configs_are_refused_by_name(field, value):
    with pytest.raises(WorldConfigError, match=field):
        WorldConfig(**{field: value})


def test_edit_request_count_is_checked():
    world = World(WorldConfig(n_people=4, n_relations=1))
    with pytest.raises(WorldConfigError, match="n_edits"):
        world.edit_requests(5)
    assert len(world.edit_requests(3)) == 3


def test_written_files_have_the_counterfact_and_zsre_formats(tmp_path):
    world = World(WorldConfig(n_people=20, n_relations=3, pool_size=5))
    paths = write_world(world, tmp_path, n_edits=25, edit_seed=1)
    reqs = world.edit_requests(25, seed=1)
    cf = json.loads(paths["counterfact.json"].read_text())
    refs = json.loads(paths["counterfact_reference_texts.json"].read_text())
    zsre = json.loads(paths["zsre.json"].read_text())
    assert len(cf) == len(refs) == len(zsre) == 25
    for rec, ref, z, req in zip(cf, refs, zsre, reqs, strict=True):
        rw = rec["requested_rewrite"]
        assert set(rec) == {"case_id", "requested_rewrite", "paraphrase_prompts", "neighborhood_prompts",
                            "attribute_prompts", "generation_prompts"}
        assert set(rw) == {"prompt", "subject", "relation_id", "target_new", "target_true"}
        assert rw["prompt"].count("{}") == 1 and rw["target_new"]["str"] != rw["target_true"]["str"]
        assert rec["case_id"] == ref["case_id"] == z["case_id"] == req.case_id
        assert (rw["subject"], " " + rw["target_new"]["str"], " " + rw["target_true"]["str"]) == (
            req.subject, req.target_new, req.target_true)
        assert rec["paraphrase_prompts"] == list(req.paraphrase_prompts)
        assert ref["texts"] == list(req.reference_texts) and ref["target_new"] == rw["target_new"]["str"]
        assert set(z) == {"case_id", "subject", "src", "answers", "alt", "rephrase", "loc", "loc_ans"}
        assert z["subject"] in z["src"] and z["subject"] in z["rephrase"]
        assert z["answers"] == [rw["target_true"]["str"]] and z["alt"] == rw["target_new"]["str"]
        loc_person = person_of(world, z["loc"])
        assert z["loc_ans"] in world.objects[loc_person]
    lines = paths["train.txt"].read_text().splitlines()
    assert lines == world.training_texts()
    # the project's own CounterFact loader reads the file back into the same requests
    from llm_experiments.data.loaders import load_counterfact

    loaded = load_counterfact(paths["counterfact.json"])
    for got, req in zip(loaded, reqs, strict=True):
        assert (got.case_id, got.prompt, got.subject, got.target_new, got.target_true, got.relation_id) == (
            req.case_id, req.prompt, req.subject, req.target_new, req.target_true, req.relation_id)
        assert (got.paraphrase_prompts, got.neighborhood_prompts, got.generation_prompts) == (
            req.paraphrase_prompts, req.neighborhood_prompts, req.generation_prompts)
    again = load_world(tmp_path)
    assert again.people == world.people and again.objects == world.objects


def test_load_world_refuses_a_world_file_its_config_does_not_generate(tmp_path):
    paths = write_world(World(WorldConfig(n_people=6, n_relations=2)), tmp_path)
    doc = json.loads(paths["world.json"].read_text())
    doc["facts"][0][0] = doc["facts"][1][0] + "x"
    paths["world.json"].write_text(json.dumps(doc))
    with pytest.raises(WorldConfigError, match="differ"):
        load_world(tmp_path)
    doc["world_version"] = 1
    paths["world.json"].write_text(json.dumps(doc))
    with pytest.raises(WorldConfigError, match="world_version"):
        load_world(tmp_path)



def test_load_world_refuses_a_config_that_asks_for_more_people_than_the_file_lists(tmp_path, monkeypatch):
    import llm_experiments.data.world as world_module

    paths = write_world(World(WorldConfig(n_people=6, n_relations=2)), tmp_path)
    doc = json.loads(paths["world.json"].read_text())
    doc["config"]["n_people"] = 10**9
    paths["world.json"].write_text(json.dumps(doc))
    built = []
    monkeypatch.setattr(world_module, "World", lambda config: built.append(config))  # must not be reached
    with pytest.raises(WorldConfigError, match="asks for 1000000000 people, the file lists 6 people"):
        load_world(tmp_path)
    assert built == []


def test_cli_world_writes_the_files(tmp_path, capsys):
    from rlsedit_cli import main

    assert main(["world", "--out", str(tmp_path), "--people", "12", "--relations", "2", "--n-edits", "5"]) == 0
    assert "24 facts" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "counterfact.json").read_text())) == 5
    with pytest.raises(SystemExit, match="n_people"):
        main(["world", "--out", str(tmp_path / "bad"), "--people", "2"])


def test_default_paraphrases_use_only_words_of_their_relations_trained_text():
    world = World(WorldConfig(n_people=4, n_relations=len(RELATION_SPECS)))
    for rel in world.relations:
        known = {w for text in (*rel.trained_wordings, rel.question) for w in text.split()}
        for wording in rel.heldout_wordings:
            assert set(wording.split()) <= known, (rel.relation_id, wording)
