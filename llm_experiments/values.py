"""Target values: the hidden state each edit should produce, and its spread over the edited layers.

As in MEMIT's ``compute_z`` (PAPER.md section 6), for one request a vector delta (d_v) is added to
the output of the *last* edited decoder block at the fact token of every prompt, and optimised
with Adam (``steps`` steps, learning rate ``lr``) to minimise

    loss = NLL(target_new | context_c + prompt, c = 1..C)              mean over contexts and tokens
         + kl_factor * KL(p_0 || p_delta) at the fact token of ``kl_prompt`` (the subject's "essence")
         + weight_decay * ||delta|| / ||h||^2                          (the authors' form, not squared)

with ||delta|| clamped to ``clamp_factor * ||h||`` after every step, h the unedited hidden state
at the fact token of the bare prompt. The optimisation stops early when the loss falls below
``stop_loss``. The target is z = h + delta.

The residual z - h_now is spread over the L edited layers (MEMIT): before writing layer i
(0-based), the hidden state h_now at the last edited layer is measured again on the current model,
and layer i is asked for (z - h_now) / (L - i): a share of what remains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import AddToHidden, Capture, frozen_parameters
from .keys import DEFAULT_CONTEXT_TEMPLATES, check_templates, encode_prompt, encode_target, pad_batch, pad_id
from .models import input_device
from .requests import EditRequest
from .sites import EditSite


@dataclass(frozen=True)
class ValueConfig:
    """Hyperparameters of the target-value optimisation (defaults: the authors' Llama-3-8B settings).

    Attributes:
        steps: Adam steps (``v_num_grad_steps`` = 25).
        lr: Adam learning rate (``v_lr`` = 0.1).
        clamp_factor: ||delta|| <= clamp_factor * ||h|| (``clamp_norm_factor`` = 0.75).
        kl_factor: weight of the KL term on the essence prompt (``kl_factor`` = 0.0625).
        weight_decay: weight of ||delta|| / ||h||^2 (``v_weight_decay`` = 0.5).
        kl_prompt: the essence prompt, with one ``{}`` for the subject (MEMIT's "{} is a").
        stop_loss: stop early once the total loss is below this (MEMIT's 5e-2).
    """

    steps: int = 25
    lr: float = 0.1
    clamp_factor: float = 0.75
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    kl_prompt: str = "{} is a"
    stop_loss: float = 5e-2

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {self.steps!r}")
        for name in ("lr", "clamp_factor"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        for name in ("kl_factor", "weight_decay", "stop_loss"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        check_templates([self.kl_prompt], "kl_prompt")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ValueConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ValueConfig fields {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class TargetValue:
    """The result of :func:`optimize_target` for one request (tensors (d_v,), float32)."""

    z: torch.Tensor
    h: torch.Tensor
    delta: torch.Tensor
    nll_before: float
    nll_after: float
    steps_run: int


def optimize_target(model: nn.Module, tokenizer, site: EditSite, layer: int, request: EditRequest,
                    config: ValueConfig = ValueConfig(), *, fact_token: str = "subject_last",
                    context_templates: Sequence[str] = DEFAULT_CONTEXT_TEMPLATES) -> TargetValue:
    """Optimise the hidden-state delta at ``layer``'s output for ``request`` (see the module doc)."""
    templates = check_templates(context_templates)
    site.check_layer(model, layer)
    path = site.layer_path(layer)
    device = input_device(model)
    target_ids = encode_target(tokenizer, request.target_new)
    rewrite = [encode_prompt(tokenizer, c.format(request.prompt), request.subject) for c in templates]
    essence = encode_prompt(tokenizer, config.kl_prompt, request.subject)
    ids, mask = pad_batch([p.input_ids + target_ids[:-1] for p in rewrite] + [essence.input_ids],
                          pad_id(tokenizer), device)
    fact = torch.tensor([p.position(fact_token) for p in (*rewrite, essence)], device=device)
    # row r predicts target token j at position len(prompt_r) - 1 + j
    n_t = len(target_ids)
    rows = torch.arange(len(rewrite), device=device).repeat_interleave(n_t)  # (C * n_t,)
    cols = torch.tensor([len(p.input_ids) - 1 + j for p in rewrite for j in range(n_t)], device=device)
    tok = torch.tensor(target_ids, device=device).repeat(len(rewrite))  # (C * n_t,)
    kl_row, kl_col = len(rewrite), essence.position(fact_token)

    def losses(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp[rows, cols, tok].mean()  # every prompt has n_t target tokens: mean of means
        return nll, logp[kl_row, kl_col]

    with torch.no_grad(), Capture(model, [path], inputs=False, outputs=True, positions=fact) as cap:
        logits0 = model(input_ids=ids, attention_mask=mask).logits
    h = cap.outputs[path][0].float()  # (d_v,): the bare prompt's row when templates[0] is "{}"
    nll0, kl_init = losses(logits0)
    kl_init = kl_init.detach()
    max_norm = config.clamp_factor * float(h.norm())

    delta = torch.zeros_like(h, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=config.lr)
    steps_run = 0
    with frozen_parameters(model):
        for _ in range(config.steps):
            with AddToHidden(model, path, delta, fact):
                logits = model(input_ids=ids, attention_mask=mask).logits
            nll, kl_logp = losses(logits)
            kl = config.kl_factor * torch.sum(kl_init.exp() * (kl_init - kl_logp))  # KL(p_0 || p_delta)
            decay = config.weight_decay * delta.norm() / h.norm().clamp_min(1e-12) ** 2
            loss = nll + kl + decay
            if float(loss.detach()) < config.stop_loss:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps_run += 1
            with torch.no_grad():  # ||delta|| <= clamp_factor * ||h||
                norm = float(delta.norm())
                if norm > max_norm:
                    delta.mul_(max_norm / norm)
    delta = delta.detach()
    with torch.no_grad(), AddToHidden(model, path, delta, fact):
        nll_after, _ = losses(model(input_ids=ids, attention_mask=mask).logits)
    return TargetValue(h + delta, h, delta, float(nll0), float(nll_after), steps_run)


def hidden_at_fact(model: nn.Module, tokenizer, site: EditSite, layer: int, requests: Sequence[EditRequest], *,
                   fact_token: str = "subject_last") -> torch.Tensor:
    """The output of decoder block ``layer`` at the fact token of each bare prompt: (n, d_v), float32."""
    site.check_layer(model, layer)
    path = site.layer_path(layer)
    prompts = [encode_prompt(tokenizer, r.prompt, r.subject) for r in requests]
    ids, mask = pad_batch([p.input_ids for p in prompts], pad_id(tokenizer), input_device(model))
    positions = torch.tensor([p.position(fact_token) for p in prompts])
    with torch.no_grad(), Capture(model, [path], inputs=False, outputs=True, positions=positions, stop=True) as cap:
        cap.run(input_ids=ids, attention_mask=mask)
    return cap.outputs[path].float()


def spread_residual(z: torch.Tensor, h_now: torch.Tensor, index: int, num_layers: int) -> torch.Tensor:
    """MEMIT's spread: layer ``index`` (0-based) of ``num_layers`` takes (z - h_now) / (L - index)."""
    if not 0 <= index < num_layers:
        raise ValueError(f"index must be in 0..{num_layers - 1}, got {index}")
    return (z - h_now) / (num_layers - index)
