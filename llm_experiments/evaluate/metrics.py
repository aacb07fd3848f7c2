"""The field's editing metrics (MEMIT's definitions), for any Hugging Face causal LM and tokenizer.

Scoring a target after a prompt
    ``text = prompt + target`` (targets carry their leading space, " Paris") is tokenized once, as
    the model would read it, and the target's tokens are found from the tokenizer's offset mapping
    (the tokens whose characters lie in the target), so no tokenizer-specific rule for leading
    spaces is needed (byte-level BPE's "Ġ", SentencePiece's "▁", word-level tokenizers alike). For
    target token j at position p, teacher-forced:

        nll_j     = -log softmax(logits[p - 1])[t_j]
        correct_j = argmax(logits[p - 1]) == t_j

    ``mean_nll`` is the mean of ``nll_j`` over the target's tokens (MEMIT's ``test_batch_prediction``).

CounterFact, per record (each a fraction in [0, 1]; the papers print 100 x the mean):
    efficacy        [mean_nll(prompt, new) < mean_nll(prompt, true)] on the edit prompt
                    (MEMIT "Efficacy Score", ES; the RLSEdit table's "Efficacy")
    generalization  the same, averaged over the paraphrase prompts (PS; "Generalization")
    specificity     [mean_nll(p, true) < mean_nll(p, new)] averaged over the neighbourhood prompts
                    (NS; "Specificity"); "true" is the answer each prompt must keep, CounterFact's
                    target_true unless the request gives neighborhood_targets
    efficacy_magnitude, generalization_magnitude, specificity_magnitude
                    the same comparisons as probability differences, p(new) - p(true) (p(true) -
                    p(new) for specificity) with p = exp(-mean_nll) (MEMIT's EM, PM, NM)
    fluency         weighted n-gram entropy of the generated texts, in bits: for each text,
                    mean(2/3 H_2, 4/3 H_3) with H_n the entropy of its n-gram frequencies, then the
                    mean over the record's texts (MEMIT "GE"/"Fluency"; papers print 100 x)
    consistency     TF-IDF cosine similarity between all the record's generated texts joined and
                    all its reference texts joined (MEMIT "RS"/"Consistency"; papers print 100 x)

ZsRE, per record (token-level accuracy, MEMIT/AlphaEdit's ``eval_utils_zsre``):
    efficacy        mean of ``correct_j`` over the new target's tokens after the edit prompt
    generalization  the same after the paraphrase prompts
    specificity     the same for ``loc_ans``'s tokens after the neighbourhood prompts

Generation (Fluency, Consistency) follows MEMIT's ``generate_fast``: top-k sampling (k = 5) up to a
total length of 100 tokens including the prompt, the text returned with its prompt; it is seeded
(``torch.Generator``) so two runs give the same texts. Words for the n-gram entropy come from a
regular expression (words, numbers, single punctuation marks) where MEMIT used NLTK's
``word_tokenize``; the two differ only on contractions and abbreviations.

Aggregation over records: :func:`summarize` gives the mean and the standard error of the mean
(sample standard deviation / sqrt(n)). MEMIT's ``summarize.py`` printed the standard deviation.
"""

from __future__ import annotations

import inspect
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from llm_experiments.data.requests import EditRequest
from llm_experiments.data.tfidf import TfidfStats
from llm_experiments.model.loading import input_device as _input_device
from llm_experiments.model.tokens import pad_batch as _pad_batch
from llm_experiments.model.tokens import pad_id as _pad_id


class MetricError(ValueError):
    """Input that a metric cannot score (a missing target, a prompt with no token before the target)."""


# ----------------------------------------------------------------------------------------------
# Teacher-forced scoring of targets after prompts


@dataclass(frozen=True)
class ContinuationScore:
    """Scores of one target's tokens after one prompt (teacher forced)."""

    token_ids: tuple[int, ...]
    token_nll: tuple[float, ...]
    token_correct: tuple[bool, ...]

    @property
    def mean_nll(self) -> float:
        return sum(self.token_nll) / len(self.token_nll)

    @property
    def sum_nll(self) -> float:
        return sum(self.token_nll)

    @property
    def accuracy(self) -> float:
        return sum(self.token_correct) / len(self.token_correct)


def encode_continuation(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """Token ids of ``prompt + target`` and the number of them that belong to the prompt.

    Target tokens are the non-special tokens whose character span ends after the prompt; trailing
    special tokens (an EOS some tokenizers append) are dropped. A token that straddles the boundary
    (part prompt, part target) cannot be split and raises :class:`MetricError`.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise MetricError("scoring needs a fast tokenizer (offset mappings); got a slow one")
    if not target:
        raise MetricError(f"empty target after prompt {prompt!r}")
    text = prompt + target
    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
    while ids and special[-1]:
        ids, offsets, special = ids[:-1], offsets[:-1], special[:-1]
    boundary = len(prompt)
    n_prompt = len(ids)
    while n_prompt > 0 and not special[n_prompt - 1] and offsets[n_prompt - 1][1] > boundary:
        n_prompt -= 1
    if n_prompt < len(ids) and offsets[n_prompt][0] < boundary:
        raise MetricError(
            f"token {tokenizer.convert_ids_to_tokens(ids[n_prompt])!r} straddles the end of prompt "
            f"{prompt!r} and the start of target {target!r}"
        )
    if n_prompt == len(ids):
        raise MetricError(f"target {target!r} has no token after prompt {prompt!r}")
    if n_prompt == 0:
        raise MetricError(f"prompt {prompt!r} gives no token before the target (and the tokenizer adds no BOS)")
    return list(ids), n_prompt


@torch.no_grad()
def score_continuations(
    model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16, progress: bool = False
) -> list[ContinuationScore]:
    """Teacher-forced NLL and argmax match of each target token after its prompt, in batches.

    ``pairs`` are ``(prompt, target)`` with the target's leading space included. Right padding with
    an attention mask: the real tokens' positions and logits do not depend on the padding.
    ``progress``: a progress bar over the pairs (long evaluations).
    """
    if batch_size < 1:
        raise MetricError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [encode_continuation(tokenizer, p, t) for p, t in pairs]
    device, pad = _input_device(model), _pad_id(tokenizer)
    # sorted by length so that batches hold sequences of similar length (little padding); the
    # scores go back to the order of ``pairs``
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    scores: list[ContinuationScore | None] = [None] * len(encoded)
    bar = tqdm(total=len(order), desc="score", unit="prompt", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        members = order[start : start + batch_size]
        chunk = [encoded[i] for i in members]
        ids, mask = _pad_batch([e[0] for e in chunk], pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, vocab)
        for row, (i, (seq, n_prompt)) in enumerate(zip(members, chunk, strict=True)):
            targets = torch.tensor(seq[n_prompt:], device=logits.device)  # (m,)
            # the logits at position p - 1 predict token p
            step_logits = logits[row, n_prompt - 1 : len(seq) - 1].float()  # (m, vocab)
            log_probs = torch.log_softmax(step_logits, dim=-1)
            nll = -log_probs.gather(1, targets[:, None])[:, 0]
            correct = step_logits.argmax(dim=-1) == targets
            scores[i] = ContinuationScore(tuple(seq[n_prompt:]), tuple(nll.tolist()), tuple(correct.tolist()))
        bar.update(len(members))
    bar.close()
    return scores


# ----------------------------------------------------------------------------------------------
# Generation, n-gram entropy (Fluency), TF-IDF similarity (Consistency)


@torch.no_grad()
def generate_ids(
    model, tokenizer, prompts: Sequence[str], *, max_length: int = 100, top_k: int = 5, seed: int = 0
) -> list[list[int]]:
    """Token ids of top-k sampled continuations, prompt included (see :func:`generate_texts`)."""
    if top_k < 1 or max_length < 1:
        raise MetricError(f"top_k and max_length must be >= 1, got {top_k} and {max_length}")
    device = _input_device(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    # transformers 5 names the key/value cache ``cache``; earlier versions ``past_key_values``
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        if not ids:
            raise MetricError(f"generation prompt {prompts[i]!r} has no tokens")
        groups.setdefault(len(ids), []).append(i)
    for length in sorted(groups):
        members = groups[length]
        seq = torch.tensor([encoded[i] for i in members], dtype=torch.long, device=device)  # (B, L)
        if length < max_length:
            result = model(input_ids=seq, use_cache=True)
            for step in range(max_length - length):
                logits = result.logits[:, -1, :].float()  # (B, vocab)
                top = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
                probs = torch.softmax(top.values, dim=-1)  # renormalised over the top k
                choice = torch.multinomial(probs, 1, generator=gen)  # (B, 1)
                new = top.indices.gather(1, choice.to(top.indices.device)).to(device)
                seq = torch.cat([seq, new], dim=1)
                if step + 1 < max_length - length:
                    result = model(input_ids=new, use_cache=True, **{cache_arg: _cache_of(result)})
        for row, i in enumerate(members):
            out[i] = seq[row].tolist()
    return out


def generate_texts(
    model, tokenizer, prompts: Sequence[str], *, max_length: int = 100, top_k: int = 5, seed: int = 0
) -> list[str]:
    """Top-k sampled continuations, returned with their prompts (MEMIT's ``generate_fast``), seeded.

    Each text grows to ``max_length`` tokens in all (prompt included; no stop at EOS, as MEMIT).
    Prompts of equal token length are sampled together (no padding is ever needed); the random
    stream comes from one ``torch.Generator`` seeded with ``seed``, so the same model, prompts and
    seed give the same texts. Text is decoded without special tokens, NFKD-normalised, with blank
    lines replaced by a space (as MEMIT).
    """
    ids = generate_ids(model, tokenizer, prompts, max_length=max_length, top_k=top_k, seed=seed)
    texts = [tokenizer.decode(x, skip_special_tokens=True) for x in ids]
    return [unicodedata.normalize("NFKD", t).replace("\n\n", " ") for t in texts]


def _cache_of(result):
    return result["cache"] if "cache" in result else result["past_key_values"]


_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def word_tokenize(text: str) -> list[str]:
    """Words (letters/digits/underscore, inner apostrophes kept) and single punctuation marks."""
    return _WORD.findall(text)


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """MEMIT's weighted n-gram entropy of one text, in bits.

        H_n = -sum_g f_g log2 f_g   (f_g: relative frequency of n-gram g among the text's n-grams)
        entropy = mean_n (w_n H_n)  (defaults: n = 2, 3 with w = 2/3, 4/3)

    A text with no n-gram of some order contributes 0 for it.
    """
    if len(ns) != len(weights) or not ns:
        raise MetricError("ns and weights must be non-empty and of equal length")
    tokens = word_tokenize(text)
    terms = []
    for n, w in zip(ns, weights, strict=True):
        counts = np.array(list(Counter(zip(*(tokens[k:] for k in range(n)), strict=False)).values()),
                          dtype=np.float64)
        h = 0.0
        if counts.size:
            f = counts / counts.sum()
            h = float(-(f * np.log2(f)).sum())
        terms.append(w * h)
    return float(np.mean(terms))


def fluency(texts: Iterable[str]) -> float:
    """Mean of :func:`ngram_entropy` over texts (MEMIT's ``n_gram_entropy``, arithmetic mean)."""
    values = [ngram_entropy(t) for t in texts]
    if not values:
        raise MetricError("fluency needs at least one text")
    return float(np.mean(values))


# ----------------------------------------------------------------------------------------------
# Per-record metrics and their aggregation


def _require_target_true(request: EditRequest) -> None:
    if not request.target_true.strip():
        raise MetricError(f"record {request.case_id!r}: CounterFact metrics need target_true")


def counterfact_metrics(
    model,
    tokenizer,
    requests: Sequence[EditRequest],
    *,
    batch_size: int = 16,
    generation: bool = False,
    tfidf: TfidfStats | None = None,
    max_length: int = 100,
    top_k: int = 5,
    seed: int = 0,
    generation_every: int = 1,
    progress: bool = False,
) -> list[dict]:
    """One dict per request with MEMIT's CounterFact metrics (see the module docstring).

    Neighbourhood prompts compare ``target_new`` with the answer each must keep
    (``EditRequest.neighborhood_pairs``: ``target_true`` for CounterFact records). Probability
    metrics always; with ``generation=True`` also ``fluency`` (records with generation
    prompts) and ``consistency`` (records with generation prompts and reference texts, and
    ``tfidf`` given), on every ``generation_every``-th request (0, k, 2k, ...: an even spread
    over a long stream, where generation would dominate the time). Each dict carries ``case_id``.
    ``progress``: progress bars over the scored prompts and the generations.
    """
    if isinstance(generation_every, bool) or not isinstance(generation_every, int) or generation_every < 1:
        raise MetricError(f"generation_every must be a positive integer, got {generation_every!r}")
    for r in requests:
        _require_target_true(r)
    if generation and tfidf is None and any(r.reference_texts for r in _generated(requests, generation_every)):
        raise MetricError("generation=True needs tfidf statistics for consistency (TfidfStats): "
                          "some requests have reference texts")
    pairs: list[tuple[str, str]] = []
    layout = []  # per request: numbers of edit, paraphrase and neighbourhood prompts
    for r in requests:
        # (prompt, the new target, the target that should lose (edit, paraphrases) or win (neighbours))
        triples = [(p, r.target_new, r.target_true) for p in (r.full_prompt, *r.paraphrase_prompts)]
        triples += [(p, r.target_new, keep) for p, keep in r.neighborhood_pairs()]
        for p, new, other in triples:
            pairs += [(p, new), (p, other)]
        layout.append((1, len(r.paraphrase_prompts), len(r.neighborhood_prompts)))
    scores = score_continuations(model, tokenizer, pairs, batch_size=batch_size, progress=progress)
    generated = {i for i, r in enumerate(requests)
                 if generation and r.generation_prompts and i % generation_every == 0}  # as _generated
    bar = tqdm(total=len(generated), desc="generate", unit="edit", disable=not (progress and generated), leave=False)
    results = []
    pos = 0
    for index, (r, counts) in enumerate(zip(requests, layout, strict=True)):
        row: dict = {"case_id": r.case_id}
        for name, count, keep_true in zip(("efficacy", "generalization", "specificity"), counts,
                                          (False, False, True), strict=True):
            pairs_nll = [(scores[pos + 2 * k].mean_nll, scores[pos + 2 * k + 1].mean_nll) for k in range(count)]
            pos += 2 * count
            if not pairs_nll:
                continue
            if keep_true:  # the true target must stay more likely than the new one
                wins = [t < n for n, t in pairs_nll]
                gaps = [math.exp(-t) - math.exp(-n) for n, t in pairs_nll]
            else:
                wins = [n < t for n, t in pairs_nll]
                gaps = [math.exp(-n) - math.exp(-t) for n, t in pairs_nll]
            row[name] = float(np.mean(wins))
            row[f"{name}_magnitude"] = float(np.mean(gaps))
        if index in generated:
            texts = generate_texts(model, tokenizer, r.generation_prompts, max_length=max_length,
                                   top_k=top_k, seed=seed)
            row["fluency"] = fluency(texts)
            if r.reference_texts:
                row["consistency"] = tfidf.similarity(" ".join(texts), " ".join(r.reference_texts))
            bar.update(1)
        results.append(row)
    bar.close()
    return results


def _generated(requests: Sequence[EditRequest], generation_every: int) -> list[EditRequest]:
    """The requests that Fluency and Consistency are measured on: every k-th, with generation prompts."""
    return [r for i, r in enumerate(requests) if r.generation_prompts and i % generation_every == 0]


SUITE_METRICS = {"counterfact": ("efficacy", "generalization", "specificity", "fluency", "consistency"),
                 "zsre": ("efficacy", "generalization", "specificity")}


def absent_metrics(requests: Sequence[EditRequest], *, suite: str, generation: bool = False,
                   generation_every: int = 1) -> dict[str, str]:
    """``{metric: why}`` for each metric of the papers' table (efficacy, generalization,
    specificity, fluency, consistency) that the suite will not report on these requests: the
    reason a reader sees in place of the number (``summary.json``'s ``absent``, the table's
    footnotes). A metric measured on only some requests is not absent (its ``n`` says on how many).
    """
    if suite not in SUITE_METRICS:
        raise MetricError(f"suite must be one of {sorted(SUITE_METRICS)}, got {suite!r}")
    absent: dict[str, str] = {}
    if not any(r.paraphrase_prompts for r in requests):
        absent["generalization"] = "no request has paraphrase prompts"
    if not any(r.neighborhood_prompts for r in requests):
        absent["specificity"] = "no request has neighbourhood prompts"
    if suite == "zsre":
        for name in ("fluency", "consistency"):
            absent[name] = "not part of the ZsRE suite (generation is scored on CounterFact only)"
        return absent
    if not generation:
        for name in ("fluency", "consistency"):
            absent[name] = "generation was not asked for"
        return absent
    generated = _generated(requests, generation_every)
    if not generated:
        every = "" if generation_every == 1 else f" (of every {generation_every}-th request)"
        for name in ("fluency", "consistency"):
            absent[name] = f"no request{every} has generation prompts"
    elif not any(r.reference_texts for r in generated):
        absent["consistency"] = ("no request has reference texts to compare its generations with "
                                 "(a CounterFact file gets them from attribute_snippets.json)")
    return absent


def zsre_metrics(
    model, tokenizer, requests: Sequence[EditRequest], *, batch_size: int = 16, progress: bool = False
) -> list[dict]:
    """One dict per request with ZsRE's token-level accuracies (see the module docstring).

    ``progress``: a progress bar over the scored prompts.
    """
    pairs: list[tuple[str, str]] = []
    layout = []
    for r in requests:
        groups = [
            [(r.full_prompt, r.target_new)],
            [(p, r.target_new) for p in r.paraphrase_prompts],
            r.neighborhood_pairs(),
        ]
        for g in groups:
            pairs += g
        layout.append([len(g) for g in groups])
    scores = score_continuations(model, tokenizer, pairs, batch_size=batch_size, progress=progress)
    results = []
    pos = 0
    for r, counts in zip(requests, layout, strict=True):
        row: dict = {"case_id": r.case_id}
        for name, count in zip(("efficacy", "generalization", "specificity"), counts, strict=True):
            flags = [c for s in scores[pos : pos + count] for c in s.token_correct]
            pos += count
            if flags:
                row[name] = float(np.mean(flags))
        results.append(row)
    return results


METRIC_SUITES = {"counterfact": counterfact_metrics, "zsre": zsre_metrics}
assert set(METRIC_SUITES) == set(SUITE_METRICS)


def summarize(records: Sequence[Mapping]) -> dict[str, dict]:
    """``{metric: {"mean", "sem", "n"}}`` over the records that have the metric.

    ``sem`` is the standard error of the mean, std(ddof=1) / sqrt(n); ``None`` when n < 2.
    Non-numeric fields (``case_id``) are skipped.
    """
    names: list[str] = []
    for rec in records:
        for k, v in rec.items():
            if k not in names and isinstance(v, int | float) and not isinstance(v, bool) and k != "case_id":
                names.append(k)
    out = {}
    for name in names:
        values = np.array([rec[name] for rec in records if name in rec], dtype=np.float64)
        sem = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
        out[name] = {"mean": float(values.mean()), "sem": sem, "n": len(values)}
    return out


def as_percent(summary: Mapping[str, Mapping]) -> dict[str, tuple[float, float | None]]:
    """``{metric: (100 x mean, 100 x sem)}``: the scale of the papers' tables (Fluency too)."""
    return {k: (100 * v["mean"], None if v["sem"] is None else 100 * v["sem"]) for k, v in summary.items()}
