"""General capability of a tiny fact-world model: what it can do apart from the facts themselves.

The paper tracks general capability (GLUE, MMLU) along the edit stream: does editing facts damage
skills that are not facts? A tiny word-level model trained on the fact world has no GLUE; its skills
are the world's language. Two measures, both independent of *which* object a fact holds, so an
edit that swaps one object for another of the same relation should leave them unchanged:

``template_nll`` / ``template_accuracy``
    Mean negative log-likelihood (nats per token) and top-1 accuracy of the *template* tokens
    (the wordings' words, ".", "?") in held-out biographies: fresh renderings of a fixed sample of
    people (trained wordings, new orders). Names and objects are excluded from the average, so the
    measure is the model's grammar of the world, not its memory of facts.

``type_accuracy``
    For a fixed sample of (person, relation) prompts in a trained wording, the share whose top-1
    next token is an object of the right relation (any of the relation's pool, not necessarily the
    fact): the model still knows what kind of word completes "X works for".

:func:`world_capability` returns ``{name: fn(model, tokenizer) -> dict}``, the mapping that
:func:`llm_experiments.evaluate.protocols.evaluate_after_stream` and ``StreamRecorder`` take as
``capability``. The tokenizer must put ``<bos>`` first, as the models were trained
(:func:`llm_experiments.experiment.with_bos`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from llm_experiments.data.world import World, template_words
from llm_experiments.model.loading import input_device
from llm_experiments.model.tokens import pad_batch, pad_id


def _token_ids(tokenizer, words) -> set[int]:
    ids = set()
    for w in words:
        enc = tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(enc) == 1 and enc[0] != tokenizer.unk_token_id:
            ids.add(enc[0])
    return ids


class WorldCapability:
    """Held-out texts and type probes of one world, scored on any model with the world's tokenizer.

    Args:
        world: the fact world the model was trained on.
        n_people: people sampled (seeded) for the biographies and the type probes.
        seed: seed of the sample and of the biographies' renderings.
        batch_size: sequences per forward pass.
    """

    def __init__(self, world: World, *, n_people: int = 200, seed: int = 1234, batch_size: int = 64) -> None:
        if isinstance(n_people, bool) or not isinstance(n_people, int) or n_people < 1:
            raise ValueError(f"n_people must be a positive integer, got {n_people!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        rng = random.Random(seed)
        people = rng.sample(range(world.config.n_people), min(n_people, world.config.n_people))
        self.world = world
        self.batch_size = batch_size
        self.texts = [world.biography(p, rng) for p in people]
        self.type_probes = [(rng.choice(world.relations[r].trained_wordings).format(world.people[p]), r)
                            for p in people for r in range(world.config.n_relations)]

    # -- the two measures ------------------------------------------------------------------------
    @torch.no_grad()
    def template(self, model, tokenizer) -> dict:
        """``{"template_nll", "template_accuracy", "tokens"}`` over the held-out biographies."""
        names = {w for person in self.world.people for w in person.split()}
        objects = {o for rel in self.world.relations for o in rel.pool}
        template = _token_ids(tokenizer, template_words()) - _token_ids(tokenizer, names | objects)
        keep = torch.zeros(len(tokenizer), dtype=torch.bool)
        keep[sorted(template)] = True
        device = input_device(model)
        keep = keep.to(device)
        total, correct, count = 0.0, 0, 0
        seqs = [tokenizer(t)["input_ids"] for t in self.texts]
        for start in range(0, len(seqs), self.batch_size):
            chunk = seqs[start:start + self.batch_size]
            ids, mask = pad_batch(chunk, pad_id(tokenizer), device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # predicts 1..n-1
            target = ids[:, 1:]
            scored = mask[:, 1:].bool() & keep[target]
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            total += float(nll[scored].sum())
            correct += int((logits.argmax(-1) == target)[scored].sum())
            count += int(scored.sum())
        if count == 0:
            raise ValueError("no template token in the held-out biographies: is this the world's tokenizer?")
        return {"template_nll": total / count, "template_accuracy": correct / count, "tokens": count}

    @torch.no_grad()
    def types(self, model, tokenizer) -> dict:
        """``{"type_accuracy", "n"}``: top-1 next token in the probed relation's object pool."""
        pools = [_token_ids(tokenizer, rel.pool) for rel in self.world.relations]
        device = input_device(model)
        hits = 0
        seqs = [tokenizer(p)["input_ids"] for p, _ in self.type_probes]
        for start in range(0, len(seqs), self.batch_size):
            chunk = seqs[start:start + self.batch_size]
            ids, mask = pad_batch(chunk, pad_id(tokenizer), device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            pred = logits[torch.arange(len(chunk), device=device), mask.sum(1) - 1].argmax(-1).tolist()
            rels = [r for _, r in self.type_probes[start:start + self.batch_size]]
            hits += sum(tok in pools[r] for tok, r in zip(pred, rels, strict=True))
        return {"type_accuracy": hits / len(seqs), "n": len(seqs)}

    def measures(self) -> dict[str, Callable]:
        """The ``capability`` mapping of the evaluation protocols."""
        return {"template": self.template, "type": self.types}


def world_capability(world: World, **kwargs) -> dict[str, Callable]:
    """``WorldCapability(world, **kwargs).measures()``: the mapping the evaluation protocols take."""
    return WorldCapability(world, **kwargs).measures()


__all__ = ["WorldCapability", "world_capability"]
