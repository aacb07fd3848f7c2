"""Keys: the edit site's inputs (down_proj's input, d_k wide) at the fact token of each request.

As in MEMIT's ``compute_ks``, the key of a request at a layer is the mean over fixed context
templates of the site's input at the fact token of ``context.format(prompt)`` with the subject
filled in. The fact token (the subject's last token, or the prompt's last) is located by
:mod:`llm_experiments.model.tokens` from the tokenizer's offset mappings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llm_experiments.data.requests import EditRequest
from llm_experiments.model.hooks import Capture
from llm_experiments.model.loading import input_device
from llm_experiments.model.sites import EditSite
from llm_experiments.model.tokens import EncodedPrompt, encode_prompt, pad_batch, pad_id

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


def check_templates(templates: Sequence[str], name: str = "context_templates") -> tuple[str, ...]:
    templates = tuple(templates)
    if not templates:
        raise ValueError(f"{name} must not be empty")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"each of {name} must contain exactly one '{{}}', got {t!r}")
    return templates


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
