"""Prompts as token ids, with the fact token located by the tokenizer's offset mappings.

The fact token of a filled prompt is

- ``"subject_last"``: the last token of the subject (MEMIT, AlphaEdit and RLSEdit's choice);
- ``"last"``: the prompt's last token.

The subject's character span in the filled prompt is known from where ``{}`` sits in the template,
and the fact token is the last token whose span overlaps it. No string is re-tokenised piecewise.
Also the padding every batched forward pass uses (:func:`pad_batch`, :func:`pad_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

FACT_TOKENS = ("subject_last", "last")

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
