"""The editing stream: the five editors on tiny models, state carried, revert, checkpoint and resume."""

from __future__ import annotations

import json

import pytest
import torch

import rlsedit
from llm_experiments.edit.session import CheckpointError, EditingConfig, EditingSession, SessionError
from llm_experiments.edit.statistics import TextCorpus, compute_second_moments
from llm_experiments.edit.values import ValueConfig
from llm_experiments.model.sites import read_weight, site_for
from llm_experiments.model.tokens import encode_prompt, encode_target
from tests.llm_fixtures import TINY_CORPUS, sharp_tiny_model, tiny_requests, tiny_tokenizer

CONTEXTS = ("{}", "Therefore, {}")
# Random tiny models barely route the subject's state to the last token, so the efficacy checks edit at
# the "last" fact token; the keys are small (||k|| ~ 0.02), so the priors are weak enough to write.
OPTIONS = {
    "rlsedit": {"lam": 1e-6, "mu": 1.0},
    "memit": {"lam": 1e-6, "mu": 1.0},
    "alphaedit": {"threshold": 1e-6, "l2": 1e-6},
    "rome": {"lam": 1e-6, "mu": 1.0},
    "ft": {},
}


def _config(editor="rlsedit", **changes):
    base = dict(editor=editor, layers=(0, 1), batch_size=2, fact_token="last", context_templates=CONTEXTS,
                editor_options=OPTIONS[editor], n_w=1e-3, values=ValueConfig(steps=5, lr=0.5))
    base.update(changes)
    return EditingConfig(**base)


def _moments(model, layers=(0, 1)):
    return compute_second_moments(model, tiny_tokenizer(), layers, TextCorpus(texts=TINY_CORPUS), max_tokens=1000,
                                  progress=False)


def _target_nll(model, tok, request):
    """Mean token NLL of target_new after the bare prompt (computed directly, no library code)."""
    prompt = encode_prompt(tok, request.prompt, request.subject)
    target = encode_target(tok, request.target_new)
    with torch.no_grad():
        logp = model(torch.tensor([list(prompt.input_ids) + list(target[:-1])])).logits.log_softmax(-1)[0]
    n = len(prompt.input_ids)
    return -sum(float(logp[n - 1 + j, t]) for j, t in enumerate(target)) / len(target)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("arch", "editor"), [("llama", e) for e in OPTIONS] + [("qwen2", "rlsedit"),
                                                                              ("gpt2", "rlsedit")])
def test_a_short_stream_edits_only_the_sites_and_makes_targets_likelier(arch, editor):
    model, tok = sharp_tiny_model(arch), tiny_tokenizer()
    requests = tiny_requests(4)
    before_nll = sum(_target_nll(model, tok, r) for r in requests) / 4
    before = _params(model)
    session = EditingSession(model, tok, _config(editor), second_moments=_moments(model))
    reports = list(session.run(requests))

    assert [r.index for r in reports] == [0, 1] and reports[-1].position == 4 == session.position
    assert [r.case_ids for r in reports] == [(0, 1), (2, 3)]
    assert all(len(r.layers) == 2 and r.layers[0].layer == 0 for r in reports)
    site = site_for(model)
    edited = {site.module_path(layer) + ".weight" for layer in (0, 1)}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == edited
    for layer, editor_obj in session.editors.items():
        assert editor_obj.n_batches == 2 and editor_obj.n_rows == 4  # one editor carried over the stream
        assert torch.equal(read_weight(model, layer), editor_obj.W.float().double())  # cast only on write
    after_nll = sum(_target_nll(model, tok, r) for r in requests) / 4
    assert after_nll < before_nll - 1.0


def test_rlsedit_state_is_the_cumulative_problem_not_restarted():
    """C of each layer's editor equals (lam I + mu n_w E[kk^T] + sum K^T K)^{-1} over *all* batches."""
    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    moments = _moments(model)
    session = EditingSession(model, tok, _config(), second_moments=moments)
    keys = {0: [], 1: []}
    for layer, ed in session.editors.items():
        original = ed.update

        def spy(K, V, _original=original, _layer=layer):
            keys[_layer].append(K.clone())
            return _original(K, V)
        ed.update = spy
    list(session.run(tiny_requests(6)))
    for layer, ed in session.editors.items():
        K = torch.cat(keys[layer])
        A = 1e-6 * torch.eye(32, dtype=torch.float64) + 1e-3 * moments[layer].moment() + K.T @ K
        assert K.shape[0] == 6
        torch.testing.assert_close(ed.C @ A, torch.eye(32, dtype=torch.float64), rtol=0, atol=1e-6)


def test_revert_and_original_weights_restore_bit_for_bit():
    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    original = _params(model)
    session = EditingSession(model, tok, _config("memit"), second_moments=_moments(model))
    session.edit_batch(tiny_requests(2))
    edited = _params(model)
    with session.original_weights():
        assert all(torch.equal(p, original[n]) for n, p in model.named_parameters())
    assert all(torch.equal(p, edited[n]) for n, p in model.named_parameters())
    session.revert()
    assert all(torch.equal(p, original[n]) for n, p in model.named_parameters())
    with pytest.raises(SessionError, match="reverted"):
        session.edit_batch(tiny_requests(2))


def test_a_batch_failing_half_way_restores_the_weights_and_stops_the_session():
    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    session = EditingSession(model, tok, _config(), second_moments=_moments(model))
    session.edit_batch(tiny_requests(2))
    before = _params(model)

    def broken(K, V):
        raise rlsedit.FactorizationError("simulated")
    session.editors[1].update = broken
    with pytest.raises(rlsedit.FactorizationError):
        session.edit_batch(tiny_requests(4)[2:])
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert session.position == 2
    with pytest.raises(SessionError, match="resume from the last checkpoint"):
        session.edit_batch(tiny_requests(2))


def test_checkpoint_and_resume_give_the_same_weights_as_an_uninterrupted_run(tmp_path):
    tok, requests = tiny_tokenizer(), tiny_requests(6)
    config = _config()
    full = sharp_tiny_model("llama")
    straight = EditingSession(full, tok, config, second_moments=_moments(full))
    list(straight.run(requests))

    first = sharp_tiny_model("llama")
    interrupted = EditingSession(first, tok, config, second_moments=_moments(first))
    stream = interrupted.run(requests, checkpoint_dir=tmp_path / "ckpt")
    next(stream)  # one batch, then the process "dies"
    del stream, interrupted, first
    assert (tmp_path / "ckpt" / "LATEST").read_text() == "step-000001"
    saved = json.loads((tmp_path / "ckpt" / "step-000001" / "stream.json").read_text())
    assert saved["position"] == 2 and saved["edited_case_ids"] == [[0, 1]]

    fresh = sharp_tiny_model("llama")
    resumed = EditingSession.resume(fresh, tok, tmp_path / "ckpt", config=config)
    assert resumed.position == 2
    reports = list(resumed.run(requests, checkpoint_dir=tmp_path / "ckpt"))
    assert [r.index for r in reports] == [1, 2]
    assert all(torch.equal(p, dict(full.named_parameters())[n]) for n, p in fresh.named_parameters())
    for layer in config.layers:
        a, b = straight.editors[layer].state_dict(), resumed.editors[layer].state_dict()
        assert a.keys() == b.keys()
        for k in a:  # bit for bit, the solver's float64 state included
            assert torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k], k
        assert b["ledger_ids"].tolist() == [0, 1, 2]  # the ledger of applied batches survived the resume
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["LATEST", "step-000003"]


def test_resume_refuses_another_model_or_config(tmp_path):
    tok = tiny_tokenizer()
    model = sharp_tiny_model("llama")
    session = EditingSession(model, tok, _config(), second_moments=_moments(model))
    list(session.run(tiny_requests(2), checkpoint_dir=tmp_path))
    with pytest.raises(CheckpointError, match="fingerprint"):
        EditingSession.resume(model, tok, tmp_path)  # the edited model, not the original
    with pytest.raises(CheckpointError, match="batch_size"):
        EditingSession.resume(sharp_tiny_model("llama"), tok, tmp_path, config=_config(batch_size=3))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        EditingSession.resume(sharp_tiny_model("llama"), tok, tmp_path / "empty")
    resumed = EditingSession.resume(sharp_tiny_model("llama"), tok, tmp_path)
    with pytest.raises(SessionError, match="first requests"):
        list(resumed.run(tiny_requests(4, offset=0)[1:]))


def test_config_validates_and_round_trips(tmp_path):
    cfg = _config("alphaedit")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert EditingConfig.from_json(path) == cfg
    assert EditingConfig().batch_size == 100 and EditingConfig().values == ValueConfig()
    for bad, match in [({"editor": "grace"}, "editor"), ({"layers": (2, 1)}, "layers"), ({"layers": ()}, "layers"),
                       ({"batch_size": 0}, "batch_size"), ({"fact_token": "first"}, "fact_token"),
                       ({"editor_options": {"lam": 1.0, "l2": 3.0}}, "no option"), ({"n_w": 0}, "n_w"),
                       ({"solver_dtype": "float16"}, "solver_dtype"), ({"context_templates": ("x",)}, "{}")]:
        with pytest.raises(ValueError, match=match):
            EditingConfig(**{"editor": "rlsedit", **bad})
    with pytest.raises(ValueError, match="unknown"):
        EditingConfig.from_dict({"editr": "rlsedit"})


def test_missing_statistics_are_refused_and_ft_needs_none():
    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    with pytest.raises(SessionError, match=r"layers \[1\]"):
        EditingSession(model, tok, _config(), second_moments={0: _moments(model, (0,))[0]})
    session = EditingSession(model, tok, _config("ft"))
    assert session.edit_batch(tiny_requests(1)).position == 1


def test_bad_layers_and_training_mode_are_refused():
    model, tok = sharp_tiny_model("llama"), tiny_tokenizer()
    with pytest.raises(ValueError, match="layer 5"):
        EditingSession(model, tok, _config("ft", layers=(1, 5)))
    with pytest.raises(SessionError, match="eval"):
        EditingSession(model.train(), tok, _config("ft"))
    with pytest.raises(ValueError, match="eval"):
        _moments(model)


def test_a_bfloat16_model_is_edited_with_float64_editors_and_cast_only_on_write():
    model, tok = sharp_tiny_model("qwen2"), tiny_tokenizer()
    moments = {layer: m.moment() for layer, m in _moments(model).items()}  # plain tensors are accepted too
    model = model.to(torch.bfloat16)
    session = EditingSession(model, tok, _config("rlsedit"), second_moments=moments)
    report = session.edit_batch(tiny_requests(2))
    assert report.target_nll_after < report.target_nll_before
    for layer, ed in session.editors.items():
        assert ed.dtype == torch.float64
        param = site_for(model).parameter(model, layer)
        assert param.dtype == torch.bfloat16 and torch.equal(param, ed.W.T.to(torch.bfloat16))
