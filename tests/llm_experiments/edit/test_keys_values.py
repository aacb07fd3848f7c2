"""Model loading, fact-token positions, keys (against a manual MLP computation) and target values."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm_experiments.edit.keys import compute_keys
from llm_experiments.edit.values import ValueConfig, hidden_at_fact, optimize_target, optimize_targets, spread_residual
from llm_experiments.model.loading import ModelPathError, load_model, weights_fingerprint
from llm_experiments.model.sites import site_for
from llm_experiments.model.tokens import EncodedPrompt, PromptError, encode_prompt
from tests.llm_fixtures import WORDS, sharp_tiny_model, tiny_model, tiny_requests, tiny_tokenizer

ARCHS = ("llama", "qwen2", "gpt2")


# -- models ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_load_model_reads_a_local_checkpoint(tmp_path, arch):
    model, tok = tiny_model(arch), tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(tmp_path, dtype="float32")
    ids = torch.tensor([tok("The mother tongue of Anna Smith is")["input_ids"]])
    assert not loaded.training
    assert loaded_tok("Anna Smith")["input_ids"] == tok("Anna Smith")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert weights_fingerprint(loaded) == weights_fingerprint(model)
    half, _ = load_model(tmp_path, dtype="bfloat16", load_tokenizer=False)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_load_model_refuses_missing_or_non_model_paths(tmp_path):
    with pytest.raises(ModelPathError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelPathError, match=r"config\.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        tiny_model().save_pretrained(tmp_path)
        load_model(tmp_path, dtype="int8")


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is not None, reason="accelerate is installed")
def test_device_map_without_accelerate_is_refused_not_ignored(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(ImportError, match="accelerate"):
        load_model(tmp_path, device_map="auto", load_tokenizer=False)


def test_fingerprint_changes_with_any_weight():
    model = tiny_model()
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.model.layers[2].mlp.up_proj.weight[3, 1] += 1e-3
    assert weights_fingerprint(model) != before


# -- fact-token positions -------------------------------------------------------------------------
names = st.lists(st.sampled_from([w for w in WORDS if w.isalpha()]), min_size=1, max_size=3).map(" ".join)


@given(prefix=st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join), subject=names,
       suffix=st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join))
def test_subject_last_is_the_subjects_last_word(prefix, subject, suffix):
    tok = tiny_tokenizer()
    template = " ".join(x for x in (prefix, "{}", suffix) if x)
    enc = encode_prompt(tok, template, subject)
    tokens = tok.convert_ids_to_tokens(list(enc.input_ids))
    assert tokens[enc.subject_last] == subject.split()[-1]
    assert enc.subject_last == len(prefix.split()) + len(subject.split()) - 1  # word-level oracle
    assert enc.last == len(enc.input_ids) - 1 and enc.position("last") == enc.last


def test_positions_account_for_a_bos_token():
    from tokenizers import processors

    tok = tiny_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    enc = encode_prompt(tok, "The mother tongue of {} is", "Toko Yasuda")
    assert enc.input_ids[0] == 2 and enc.subject_last == 6
    with pytest.raises(ValueError, match="fact_token"):
        enc.position("first")
    with pytest.raises(PromptError):
        encode_prompt(tok, "no slot", "Toko")


# -- keys -----------------------------------------------------------------------------------------
def _manual_keys(model, tok, layer, prompts: list[EncodedPrompt], fact_token):
    """The MLP's intermediate activation computed by hand from the MLP's input (a raw hook)."""
    from transformers.activations import ACT2FN

    site = site_for(model)
    mlp = model.get_submodule(site.module_path(layer).rsplit(".", 1)[0])
    rows = []
    seen = {}
    for p in prompts:
        handle = mlp.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
        with torch.no_grad():
            model(torch.tensor([p.input_ids]))
        handle.remove()
        x = seen["x"][0, p.position(fact_token)]
        with torch.no_grad():
            if site.model_type == "gpt2":
                k = ACT2FN[model.config.activation_function](mlp.c_fc(x))
            else:
                k = ACT2FN[model.config.hidden_act](mlp.gate_proj(x)) * mlp.up_proj(x)
        rows.append(k)
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fact_token", ["subject_last", "last"])
def test_keys_equal_a_manual_mlp_computation(arch, fact_token):
    model, tok = tiny_model(arch), tiny_tokenizer()
    requests = tiny_requests(3)
    contexts = ("{}", "Anna Smith was born in Paris . {}")
    K = compute_keys(model, tok, site_for(model), 1, requests, fact_token=fact_token, context_templates=contexts)
    assert K.shape == (3, 32)
    expected = torch.stack([
        _manual_keys(model, tok, 1, [encode_prompt(tok, c.format(r.prompt), r.subject) for c in contexts],
                     fact_token).mean(0)
        for r in requests
    ])
    torch.testing.assert_close(K, expected, rtol=1e-5, atol=1e-6)


def test_keys_are_deterministic_and_batch_independent():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    requests = tiny_requests(4)
    site = site_for(model)
    K = compute_keys(model, tok, site, 0, requests)
    assert torch.equal(K, compute_keys(model, tok, site, 0, requests))
    torch.testing.assert_close(K[2:], compute_keys(model, tok, site, 0, requests[2:]), rtol=1e-5, atol=1e-6)


# -- values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_optimised_delta_makes_the_new_target_more_likely(arch):
    model, tok = sharp_tiny_model(arch), tiny_tokenizer()
    site = site_for(model)
    request = tiny_requests(1)[0]
    tv = optimize_target(model, tok, site, 1, request, fact_token="last")
    assert tv.nll_after < tv.nll_before - 1.0
    assert float(tv.delta.norm()) <= 0.75 * float(tv.h.norm()) * (1 + 1e-5)  # the clamp
    torch.testing.assert_close(tv.z, tv.h + tv.delta)
    h = hidden_at_fact(model, tok, site, 1, [request], fact_token="last")[0]
    torch.testing.assert_close(tv.h, h, rtol=1e-5, atol=1e-6)  # h is the bare prompt's hidden state


def test_subject_last_delta_lowers_the_nll_too():
    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    tv = optimize_target(model, tok, site_for(model), 0, tiny_requests(1)[0],
                         ValueConfig(kl_factor=0.0, weight_decay=0.0, clamp_factor=4.0))
    assert tv.nll_after < tv.nll_before


def test_value_optimisation_is_deterministic_and_zero_steps_means_no_delta():
    model, tok = sharp_tiny_model("qwen2"), tiny_tokenizer()
    site, request = site_for(model), tiny_requests(2)[1]
    a = optimize_target(model, tok, site, 1, request, ValueConfig(steps=5), fact_token="last")
    b = optimize_target(model, tok, site, 1, request, ValueConfig(steps=5), fact_token="last")
    assert torch.equal(a.z, b.z) and a.steps_run == 5
    zero = optimize_target(model, tok, site, 1, request, ValueConfig(steps=0))
    assert float(zero.delta.abs().max()) == 0.0 and zero.nll_after == zero.nll_before


def test_value_config_validates():
    assert ValueConfig() == ValueConfig(steps=25, lr=0.1, clamp_factor=0.75)
    for bad in ({"steps": -1}, {"lr": 0}, {"clamp_factor": -1.0}, {"kl_factor": -0.1}, {"kl_prompt": "no slot"}):
        with pytest.raises(ValueError):
            ValueConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        ValueConfig.from_dict({"stepz": 3})
    assert ValueConfig.from_dict(ValueConfig(lr=0.5).to_dict()) == ValueConfig(lr=0.5)


@given(L=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_spread_gives_each_layer_an_equal_share_when_writes_land_exactly(L, seed):
    """Layer i takes 1/(L - i) of what remains; if each write moves h by its share, every layer
    takes (z - h0) / L and h reaches z after the last layer."""
    g = torch.Generator().manual_seed(seed)
    z, h = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    h0 = h.clone()
    for i in range(L):
        share = spread_residual(z, h, i, L)
        torch.testing.assert_close(share, (z - h0) / L)
        h = h + share
    torch.testing.assert_close(h, z)
    with pytest.raises(ValueError):
        spread_residual(z, h, L, L)


def test_a_subject_no_token_covers_is_refused_with_the_prompt_named():
    with pytest.raises(PromptError, match="no token of prompt"):
        encode_prompt(tiny_tokenizer(), "{} is", " ")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_requests_optimised_together_follow_their_solo_paths(arch):
    """Batched optimisation = one optimisation per request (block-diagonal gradient, elementwise Adam);
    a request that meets ``stop_loss`` early is frozen as its solo loop would stop."""
    model, tok = sharp_tiny_model(arch), tiny_tokenizer()
    site = site_for(model)
    requests = tiny_requests(3)
    requests[1] = dataclasses.replace(requests[1], target_new=" French English")  # longer target, other padding
    config = ValueConfig(steps=8, lr=0.5, stop_loss=2.0)
    together = optimize_targets(model, tok, site, 1, requests, config, fact_token="last",
                                context_templates=("{}", "Therefore, {}"))
    for r, t in zip(requests, together, strict=True):
        alone = optimize_target(model, tok, site, 1, r, config, fact_token="last",
                                context_templates=("{}", "Therefore, {}"))
        assert alone.steps_run == t.steps_run
        torch.testing.assert_close(t.z, alone.z, rtol=1e-4, atol=1e-4)
        assert t.nll_after == pytest.approx(alone.nll_after, rel=1e-4, abs=1e-4)
    if arch == "gpt2":  # on this model the three requests meet stop_loss at different steps
        assert len({t.steps_run for t in together}) > 1
    chunked = optimize_targets(model, tok, site, 1, requests, dataclasses.replace(config, requests_per_pass=2),
                               fact_token="last", context_templates=("{}", "Therefore, {}"))
    for a, b in zip(together, chunked, strict=True):
        torch.testing.assert_close(a.z, b.z, rtol=1e-4, atol=1e-4)


def test_generated_context_templates_are_seeded_and_well_formed():
    from llm_experiments.edit.keys import check_templates, generate_context_templates

    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    a = generate_context_templates(model, tok, starts=("The", "Anna"), per_start=2, length=4, seed=1)
    assert a == generate_context_templates(model, tok, starts=("The", "Anna"), per_start=2, length=4, seed=1)
    assert a != generate_context_templates(model, tok, starts=("The", "Anna"), per_start=2, length=4, seed=2)
    assert len(a) == 5 and a[0] == "{}" and check_templates(a) == a
    assert all(t.startswith(("The ", "Anna ")) and t.endswith(". {}") for t in a[1:])
    K = compute_keys(model, tok, site_for(model), 0, tiny_requests(2), context_templates=a)
    assert K.shape == (2, 32)
