"""Edit sites (declared layout, read/write/revert) and hooks (the model is unchanged after a ``with``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llm_experiments.model.hooks import AddToHidden, Capture, frozen_parameters, hook_count
from llm_experiments.model.sites import (
    SITES,
    LayoutError,
    SiteError,
    UnsupportedArchitectureError,
    read_weight,
    restore_weights,
    site_for,
    snapshot_weights,
    write_weight,
)
from tests.llm_fixtures import tiny_model, tiny_tokenizer

ARCHS = ("llama", "qwen2", "gpt2")


def _ids(text="The mother tongue of Danielle Darrieux is"):
    return torch.tensor([tiny_tokenizer()(text)["input_ids"]])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("d_ff", [32, 16])  # 16 = hidden: a square weight, where shapes cannot tell the layout
def test_read_weight_is_the_map_x_to_module_output(arch, d_ff):
    """Oracle: the module itself. module(x) - bias == x @ W for W = read_weight (row convention)."""
    model = tiny_model(arch, d_ff=d_ff)
    site = site_for(model)
    for layer in range(3):
        mod = site.module(model, layer)
        W = read_weight(model, layer)
        assert W.shape == site.dims(model) == (d_ff, 16) and W.dtype == torch.float64
        x = torch.randn(5, d_ff, generator=torch.Generator().manual_seed(layer))
        with torch.no_grad():
            y = mod(x)
            if getattr(mod, "bias", None) is not None:
                y = y - mod.bias
        torch.testing.assert_close(x.double() @ W, y.double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_write_then_read_round_trips_and_snapshot_restores_bit_for_bit(arch):
    model = tiny_model(arch)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    snap = snapshot_weights(model, [0, 2])
    W = read_weight(model, 2) + 0.5
    write_weight(model, 2, W)
    torch.testing.assert_close(read_weight(model, 2), W, rtol=0, atol=1e-6)  # float32 parameter
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed == [site_for(model).module_path(2) + ".weight"]
    restore_weights(model, snap)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_write_casts_to_the_parameters_own_dtype_only_when_written():
    model = tiny_model("llama").to(torch.bfloat16)
    W = read_weight(model, 1)
    assert W.dtype == torch.float64  # read as float
    write_weight(model, 1, W * 2)
    p = site_for(model).parameter(model, 1)
    assert p.dtype == torch.bfloat16
    assert torch.equal(p, (W * 2).T.to(torch.bfloat16))


@pytest.mark.parametrize("bad", ["shape", "nan", "overflow"])
def test_bad_writes_are_refused_and_leave_the_weight_unchanged(bad):
    model = tiny_model("llama").to(torch.float16)
    before = site_for(model).parameter(model, 0).detach().clone()
    W = read_weight(model, 0)
    if bad == "shape":
        W, err = W.T.contiguous(), LayoutError
    elif bad == "nan":
        W[3, 4], err = float("nan"), SiteError
    else:
        W[0, 0], err = 1e6, SiteError  # beyond float16's range
    with pytest.raises(err):
        write_weight(model, 0, W)
    assert torch.equal(site_for(model).parameter(model, 0), before)


def test_layout_is_asserted_not_guessed():
    model = tiny_model("llama")
    model.model.layers[1].mlp.down_proj = nn.Linear(16, 32, bias=False)  # transposed shape
    with pytest.raises(LayoutError, match="layout 'out_in'"):
        read_weight(model, 1)
    gpt = tiny_model("gpt2")
    gpt.transformer.h[0].mlp.c_proj = nn.Linear(32, 16)  # right shape for out_in, wrong class for GPT-2
    with pytest.raises(LayoutError, match="Conv1D"):
        read_weight(gpt, 0)


def test_unknown_architecture_and_layer_are_refused():
    model = tiny_model("llama")
    with pytest.raises(SiteError, match="layer 3"):
        read_weight(model, 3)
    model.config.model_type = "mamba"
    with pytest.raises(UnsupportedArchitectureError, match="mamba"):
        site_for(model)
    assert {"llama", "qwen2", "gpt2"} <= set(SITES)


# -- hooks --------------------------------------------------------------------------------------
def _state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}, [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("raises", [False, True])
def test_hooks_leave_the_model_unchanged_after_the_with_block(arch, raises):
    model = tiny_model(arch)
    site = site_for(model)
    ids = _ids()
    with torch.no_grad():
        reference = model(ids).logits
    params, flags = _state(model)

    def body():
        with frozen_parameters(model), Capture(model, [site.module_path(0), site.layer_path(1)], outputs=True,
                                                positions=torch.tensor([5])) as cap, \
                AddToHidden(model, site.layer_path(1), torch.ones(16), torch.tensor([5])):
            assert hook_count(model) == 3
            model(ids)
            assert cap.inputs[site.module_path(0)].shape == (1, 32)
            if raises:
                raise RuntimeError("body failed")

    if raises:
        with pytest.raises(RuntimeError, match="body failed"):
            body()
    else:
        body()
    assert hook_count(model) == 0
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference)
    after_params, after_flags = _state(model)
    assert after_flags == flags and all(torch.equal(after_params[n], params[n]) for n in params)


def test_capture_with_stop_skips_the_rest_and_cleans_up():
    model = tiny_model("llama")
    calls = []
    handle = model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    with Capture(model, ["model.layers.0.mlp.down_proj"], stop=True) as cap:
        assert cap.run(_ids()) is None
        cap.run(_ids())  # a second batch is captured too
    handle.remove()
    assert calls == [] and hook_count(model) == 0
    assert cap.inputs["model.layers.0.mlp.down_proj"].shape == (1, 7, 32)


def test_capture_refuses_a_missing_module_before_hooking_anything():
    model = tiny_model("llama")
    with pytest.raises(AttributeError):
        Capture(model, ["model.layers.0.mlp.down_proj", "model.nope"])
    assert hook_count(model) == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_add_to_hidden_changes_only_the_position_and_what_follows(arch):
    model = tiny_model(arch)
    site = site_for(model)
    ids = _ids()
    with torch.no_grad():
        base = model(ids).logits
        with AddToHidden(model, site.layer_path(0), torch.full((16,), 3.0), torch.tensor([4])):
            moved = model(ids).logits
    assert torch.equal(moved[:, :4], base[:, :4])  # causal: earlier positions untouched
    assert not torch.allclose(moved[:, 4], base[:, 4])


def test_add_to_hidden_passes_gradients_to_delta():
    model = tiny_model("llama")
    delta = torch.zeros(16, requires_grad=True)
    with frozen_parameters(model), AddToHidden(model, "model.layers.0", delta, torch.tensor([6])):
        model(_ids()).logits[0, -1].logsumexp(-1).backward()
    assert delta.grad is not None and float(delta.grad.norm()) > 0
    assert all(p.grad is None for p in model.parameters())
