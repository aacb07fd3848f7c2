"""General capability of a fact-world model: checked against per-text loops that read token strings."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("transformers")

from llm_experiments.data.world import World, template_words
from llm_experiments.evaluate.world_capability import WorldCapability, world_capability
from llm_experiments.experiment import with_bos
from llm_experiments.model.tokenizer import build_word_tokenizer
from llm_experiments.tiny.training import QUICK_TRAIN, QUICK_WORLD, build_model


@pytest.fixture(scope="module")
def world_and_tokenizer():
    world = World(QUICK_WORLD)
    return world, with_bos(build_word_tokenizer(world.vocabulary()))


def _model(world_and_tokenizer, seed: int):
    _, tok = world_and_tokenizer
    return build_model(replace(QUICK_TRAIN, seed=seed), len(tok), tok).eval()


@torch.no_grad()
def _template_oracle(model, tok, world, texts):
    """One text at a time, no padding; a token counts when its string is a template word."""
    names = {w for p in world.people for w in p.split()}
    objects = {o for r in world.relations for o in r.pool}
    words = set(template_words()) - names - objects
    total, correct, count = 0.0, 0, 0
    for text in texts:
        ids = tok(text)["input_ids"]
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        for i in range(1, len(ids)):
            if tok.convert_ids_to_tokens(ids[i]) in words:
                total -= float(logp[i - 1, ids[i]])
                correct += int(int(logp[i - 1].argmax()) == ids[i])
                count += 1
    return total / count, correct / count, count


@pytest.mark.parametrize("seed", [0, 1])
def test_template_scores_match_a_per_text_oracle(world_and_tokenizer, seed):
    world, tok = world_and_tokenizer
    model = _model(world_and_tokenizer, seed)
    cap = WorldCapability(world, n_people=7, seed=seed, batch_size=3)  # batches with padding
    got = cap.template(model, tok)
    nll, acc, count = _template_oracle(model, tok, world, cap.texts)
    assert got["tokens"] == count > 0
    assert got["template_nll"] == pytest.approx(nll, rel=1e-5)
    assert got["template_accuracy"] == pytest.approx(acc)


@torch.no_grad()
def test_type_accuracy_matches_a_per_probe_oracle(world_and_tokenizer):
    world, tok = world_and_tokenizer
    model = _model(world_and_tokenizer, 3)
    # make the oracle's answer non-trivial: push the output layer toward relation 1's pool
    pool1 = [tok.convert_tokens_to_ids(o) for o in world.relations[1].pool]
    model.lm_head.weight[pool1] *= 25.0
    cap = WorldCapability(world, n_people=9, seed=5, batch_size=4)
    hits = 0
    for prompt, rel in cap.type_probes:
        ids = tok(prompt)["input_ids"]
        top = tok.convert_ids_to_tokens(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        hits += top in world.relations[rel].pool
    got = cap.types(model, tok)
    assert got == {"type_accuracy": hits / len(cap.type_probes), "n": 9 * QUICK_WORLD.n_relations}
    assert 0 < hits < len(cap.type_probes)  # both outcomes occur, so the comparison can fail


def test_the_sample_is_seeded_and_the_mapping_names_both_measures(world_and_tokenizer):
    world, tok = world_and_tokenizer
    a, b = WorldCapability(world, n_people=5, seed=2), WorldCapability(world, n_people=5, seed=2)
    assert a.texts == b.texts and a.type_probes == b.type_probes
    assert WorldCapability(world, n_people=5, seed=3).texts != a.texts
    measures = world_capability(world, n_people=4)
    assert set(measures) == {"template", "type"}
    out = measures["template"](_model(world_and_tokenizer, 0), tok)
    assert math.isfinite(out["template_nll"]) and 0.0 <= out["template_accuracy"] <= 1.0


@pytest.mark.parametrize("kwargs", [{"n_people": 0}, {"n_people": 2.5}, {"batch_size": 0}, {"n_people": True}])
def test_bad_sizes_are_refused_by_name(world_and_tokenizer, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        WorldCapability(world_and_tokenizer[0], **kwargs)
