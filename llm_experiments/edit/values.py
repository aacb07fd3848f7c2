"""Target values: the hidden state each edit should produce, and its spread over the edited layers.

As in MEMIT's ``compute_z`` (docs/method.md section 6), for one request a vector delta (d_v) is added to
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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from llm_experiments.data.requests import EditRequest
from llm_experiments.edit.keys import DEFAULT_CONTEXT_TEMPLATES, check_templates
from llm_experiments.model.hooks import AddToHidden, Capture, frozen_parameters
from llm_experiments.model.loading import input_device
from llm_experiments.model.sites import EditSite
from llm_experiments.model.tokens import encode_prompt, encode_target, pad_batch, pad_id
from rlsedit.config import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Config


@dataclass(frozen=True)
class ValueConfig(Config):
    """Hyperparameters of the target-value optimisation (defaults: the authors' Llama-3-8B settings).

    Attributes:
        steps: Adam steps (``v_num_grad_steps`` = 25).
        lr: Adam learning rate (``v_lr`` = 0.1).
        clamp_factor: ||delta|| <= clamp_factor * ||h|| (``clamp_norm_factor`` = 0.75).
        kl_factor: weight of the KL term on the essence prompt (``kl_factor`` = 0.0625).
        weight_decay: weight of ||delta|| / ||h||^2 (``v_weight_decay`` = 0.5).
        kl_prompt: the essence prompt, with one ``{}`` for the subject (MEMIT's "{} is a").
        stop_loss: stop early once the total loss is below this (MEMIT's 5e-2).
        requests_per_pass: requests optimised together in one forward pass (MEMIT: 1). Each
            keeps its own delta and loss, so this changes speed and memory, not the result
            (beyond rounding).
    """

    steps: int = 25
    lr: float = 0.1
    clamp_factor: float = 0.75
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    kl_prompt: str = "{} is a"
    stop_loss: float = 5e-2
    requests_per_pass: int = 16

    def validate(self) -> None:
        self.require(NON_NEGATIVE_INT, "steps")
        self.require(POSITIVE_INT, "requests_per_pass")
        self.require(POSITIVE, "lr", "clamp_factor")
        self.require(NON_NEGATIVE, "kl_factor", "weight_decay", "stop_loss")
        check_templates([self.kl_prompt], "kl_prompt")


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
                    config: ValueConfig | None = None, *, fact_token: str = "subject_last",
                    context_templates: Sequence[str] = DEFAULT_CONTEXT_TEMPLATES) -> TargetValue:
    """Optimise the hidden-state delta at ``layer``'s output for one request (see the module doc)."""
    return optimize_targets(model, tokenizer, site, layer, [request], config, fact_token=fact_token,
                            context_templates=context_templates)[0]


def optimize_targets(model: nn.Module, tokenizer, site: EditSite, layer: int, requests: Sequence[EditRequest],
                     config: ValueConfig | None = None, *, fact_token: str = "subject_last",
                     context_templates: Sequence[str] = DEFAULT_CONTEXT_TEMPLATES) -> list[TargetValue]:
    """:func:`optimize_target` for many requests, ``config.requests_per_pass`` of them per forward pass.

    Each request has its own row of delta and its own loss; the summed loss has a block-diagonal
    gradient and Adam is elementwise, so every row follows the path it would follow alone (up to
    rounding from the shared, padded forward pass). A request whose loss falls below ``stop_loss``
    is frozen from that step on, as if its own loop had stopped.
    """
    config = config or ValueConfig()
    templates = check_templates(context_templates)
    site.check_layer(model, layer)
    requests = list(requests)
    step = config.requests_per_pass
    out: list[TargetValue] = []
    for i in range(0, len(requests), step):
        out.extend(_optimize_chunk(model, tokenizer, site, layer, requests[i: i + step], config, fact_token,
                                   templates))
    return out


def _optimize_chunk(model, tokenizer, site, layer, requests, config, fact_token, templates) -> list[TargetValue]:
    path = site.layer_path(layer)
    device = input_device(model)
    u, C = len(requests), len(templates)
    seqs, fact, owner = [], [], []  # rows: C rewrite prompts of request 0, ..., then u essence rows
    rows, cols, toks, entry_owner = [], [], [], []
    for q, r in enumerate(requests):
        target_ids = encode_target(tokenizer, r.target_new)
        for c in templates:
            p = encode_prompt(tokenizer, c.format(r.prompt), r.subject)
            row = len(seqs)
            seqs.append(p.input_ids + target_ids[:-1])
            fact.append(p.position(fact_token))
            owner.append(q)
            for j, t in enumerate(target_ids):  # token j of the target is predicted at len(prompt) - 1 + j
                rows.append(row)
                cols.append(len(p.input_ids) - 1 + j)
                toks.append(t)
                entry_owner.append(q)
    kl_rows, kl_cols = [], []
    for q, r in enumerate(requests):
        e = encode_prompt(tokenizer, config.kl_prompt, r.subject)
        kl_rows.append(len(seqs))
        kl_cols.append(e.position(fact_token))
        seqs.append(e.input_ids)
        fact.append(e.position(fact_token))
        owner.append(q)
    ids, mask = pad_batch(seqs, pad_id(tokenizer), device)
    fact_t = torch.tensor(fact, device=device)
    owner_t = torch.tensor(owner, device=device)
    rows_t, cols_t, toks_t = (torch.tensor(x, device=device) for x in (rows, cols, toks))
    entry_owner_t = torch.tensor(entry_owner, device=device)
    counts = torch.bincount(entry_owner_t, minlength=u).float()  # C * n_t tokens per request
    kl_rows_t, kl_cols_t = torch.tensor(kl_rows, device=device), torch.tensor(kl_cols, device=device)

    def losses(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-request NLL (mean over its prompts and target tokens) and the essence rows' log-probs."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        entry_nll = -logp[rows_t, cols_t, toks_t]
        nll = torch.zeros(u, device=device).index_add(0, entry_owner_t, entry_nll) / counts  # (u,)
        return nll, logp[kl_rows_t, kl_cols_t]  # (u,), (u, vocab)

    with torch.no_grad(), Capture(model, [path], inputs=False, outputs=True, positions=fact_t) as cap:
        logits0 = model(input_ids=ids, attention_mask=mask).logits
    h = cap.outputs[path][torch.arange(u, device=device) * C].float()  # (u, d_v): each request's first prompt
    nll0, kl_init = losses(logits0)
    p_init = kl_init.exp()
    h_norm = h.norm(dim=1).clamp_min(1e-12)  # (u,)
    max_norm = config.clamp_factor * h_norm

    delta = torch.zeros_like(h, requires_grad=True)  # (u, d_v)
    opt = torch.optim.Adam([delta], lr=config.lr)
    active = torch.ones(u, dtype=torch.bool, device=device)
    steps_run = torch.zeros(u, dtype=torch.long)
    with frozen_parameters(model):
        for _ in range(config.steps):
            with AddToHidden(model, path, delta[owner_t], fact_t):
                logits = model(input_ids=ids, attention_mask=mask).logits
            nll, kl_logp = losses(logits)
            kl = config.kl_factor * torch.sum(p_init * (kl_init - kl_logp), dim=1)  # KL(p_0 || p_delta), (u,)
            decay = config.weight_decay * delta.norm(dim=1) / h_norm**2  # the authors' ||delta|| / ||h||^2
            loss = nll + kl + decay  # (u,)
            active &= loss.detach() >= config.stop_loss
            if not bool(active.any()):
                break
            frozen = delta.detach()[~active].clone()
            opt.zero_grad()
            loss[active].sum().backward()
            opt.step()
            with torch.no_grad():
                delta[~active] = frozen
                norms = delta.norm(dim=1)  # ||delta_r|| <= clamp_factor * ||h_r||
                scale = torch.where(norms > max_norm, max_norm / norms.clamp_min(1e-30), torch.ones_like(norms))
                delta.mul_(scale[:, None])
            steps_run += active.cpu().long()
    delta = delta.detach()
    with torch.no_grad(), AddToHidden(model, path, delta[owner_t], fact_t):
        nll_after, _ = losses(model(input_ids=ids, attention_mask=mask).logits)
    return [TargetValue(h[q] + delta[q], h[q], delta[q], float(nll0[q]), float(nll_after[q]), int(steps_run[q]))
            for q in range(u)]


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
