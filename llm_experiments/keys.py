"""Keys: the edit site's inputs (down_proj's input, d_k wide) at the fact token of each request.

As in MEMIT's ``compute_ks``, the key of a request at a layer is the mean over fixed context
templates of the site's input at the fact token of ``context.format(prompt)`` with the subject
filled in. The fact token is

- ``"subject_last"``: the last token of the subject (MEMIT, AlphaEdit and RLSEdit's choice);
- ``"last"``: the prompt's last token.

Token positions come from the tokenizer's offset mappings: the subject's character span in the
filled prompt is known from where ``{}`` sits in the template, and the fact token is the last
token whose span overlaps it. No string is re-tokenised piecewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import Capture
from .models import input_device
from .requests import EditRequest
from .sites import EditSite

FACT_TOKENS = ("subject_last", "last")

# Fixed context prefixes (MEMIT samples these from the model at run time; here they are fixed, so two
# runs give the same keys). Each holds one "{}" where the request's prompt goes.
DEFAULT_CONTEXT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "The following is true. {}",
    "Therefore, {}",
    "Because of this, {}",
    "I read that {}",
    "You may know that {}",
)


class PromptError(ValueError):
    """A prompt whose fact token cannot be located (names the prompt)."""


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids of a filled prompt (with the tokenizer's special tokens) and its fact token."""

    text: str
    input_ids: tuple[int, ...]
    subject_last: int
    last: int

    def position(self, fact_token: str) -> int:
        if fact_token not in FACT_TOKENS:
            raise ValueError(f"fact_token must be one of {FACT_TOKENS}, got {fact_token!r}")
        return self.subject_last if fact_token == "subject_last" else self.last


def check_templates(templates: Sequence[str], name: str = "context_templates") -> tuple[str, ...]:
    templates = tuple(templates)
    if not templates:
        raise ValueError(f"{name} must not be empty")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"each of {name} must contain exactly one '{{}}', got {t!r}")
    return templates


def encode_prompt(tokenizer, template: str, subject: str) -> EncodedPrompt:
    """Tokenise ``template.format(subject)`` and locate the subject's last token by offsets."""
    if template.count("{}") != 1:
        raise PromptError(f"template must contain exactly one '{{}}': {template!r}")
    start = template.index("{}")
    end = start + len(subject)
    text = template.format(subject)
    enc = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if not ids:
        raise PromptError(f"prompt {text!r} tokenises to nothing")
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    if not inside:
        raise PromptError(f"no token of prompt {text!r} covers the subject {subject!r} "
                          f"(characters {start}..{end})")
    return EncodedPrompt(text, tuple(ids), inside[-1], len(ids) - 1)


def encode_target(tokenizer, target: str) -> tuple[int, ...]:
    """Token ids of a target continuation, without special tokens."""
    ids = tuple(tokenizer(target, add_special_tokens=False)["input_ids"])
    if not ids:
        raise PromptError(f"target {target!r} tokenises to nothing")
    return ids


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id sequences: (input_ids, attention_mask), both (batch, max_len)."""
    n = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), n), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def pad_id(tokenizer) -> int:
    """The id to pad with: the pad token, else eos, else unk, else 0 (masked out either way)."""
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def site_inputs_at(model: nn.Module, tokenizer, site: EditSite, layer: int, prompts: Sequence[EncodedPrompt],
                   fact_token: str, *, chunk: int = 32) -> torch.Tensor:
    """The edit site's input at each prompt's fact token: (len(prompts), d_k), float32."""
    path = site.module_path(layer)
    site.module(model, layer)  # asserts the layout
    out = []
    device = input_device(model)
    with torch.no_grad():
        for i in range(0, len(prompts), chunk):
            part = prompts[i: i + chunk]
            ids, mask = pad_batch([p.input_ids for p in part], pad_id(tokenizer), device)
            positions = torch.tensor([p.position(fact_token) for p in part])
            with Capture(model, [path], inputs=True, positions=positions, stop=True) as cap:
                cap.run(input_ids=ids, attention_mask=mask)
            out.append(cap.inputs[path].float())
    return torch.cat(out)


def compute_keys(model: nn.Module, tokenizer, site: EditSite, layer: int, requests: Sequence[EditRequest], *,
                 fact_token: str = "subject_last",
                 context_templates: Sequence[str] = DEFAULT_CONTEXT_TEMPLATES) -> torch.Tensor:
    """Keys K (len(requests), d_k): the site's input at the fact token, averaged over the contexts."""
    templates = check_templates(context_templates)
    prompts = [encode_prompt(tokenizer, c.format(r.prompt), r.subject) for r in requests for c in templates]
    acts = site_inputs_at(model, tokenizer, site, layer, prompts, fact_token)  # (n * c, d_k)
    return acts.view(len(requests), len(templates), -1).mean(dim=1)


MEMIT_STARTS = ("The", "Therefore", "Because", "I", "You")


def generate_context_templates(model: nn.Module, tokenizer, *, starts: Sequence[str] = MEMIT_STARTS,
                               per_start: int = 2, length: int = 10, top_k: int = 5, seed: int = 0) -> tuple[str, ...]:
    """MEMIT-style context templates sampled from the model, reproducibly (a seeded generator).

    ``"{}"`` followed by, for each start word, ``per_start`` continuations of ``length`` tokens
    sampled with top-k sampling (MEMIT: 5 starts, top-k 5, 10 tokens), each as ``"<text>. {}"``
    with braces in the text replaced by spaces. Put the result in ``EditingConfig.context_templates``:
    the strings are then recorded with the run, so keys do not depend on sampling again.
    """
    if per_start < 1 or length < 1 or top_k < 1:
        raise ValueError("per_start, length and top_k must be >= 1")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    device = input_device(model)
    out = ["{}"]
    with torch.no_grad():
        for start in starts:
            for _ in range(per_start):
                ids = list(tokenizer(start)["input_ids"])
                first = len(ids)
                for _ in range(length):
                    logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float().cpu()
                    top = torch.topk(logits, min(top_k, logits.numel()))
                    pick = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=gen)
                    ids.append(int(top.indices[pick]))
                text = start + " " + tokenizer.decode(ids[first:], skip_special_tokens=True).strip()
                out.append(text.replace("{", " ").replace("}", " ").strip() + ". {}")
    return tuple(out)
