"""General capability of a (possibly edited) causal LM: held-out perplexity and zero-shot GLUE.

Perplexity
    Each text is tokenized (with the tokenizer's special tokens, e.g. a BOS), cut into
    non-overlapping windows of ``max_length`` tokens, and every token after a window's first is
    predicted from the window before it:

        perplexity = exp( sum of -log p(token | window prefix) / number of predicted tokens )

Zero-shot GLUE (SST-2, MRPC, CoLA, RTE), from local files in GLUE's TSV layouts (``dev.tsv``;
``train.tsv`` has the same layout; ``test.tsv`` has no labels and is refused):

    ========  =======================================================  ==========================
    task      dev.tsv layout                                           labels
    ========  =======================================================  ==========================
    sst2      header ``sentence<TAB>label``                            0 negative, 1 positive
    mrpc      header ``Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String``...  0 no, 1 paraphrase
    cola      no header: ``source<TAB>label<TAB>author mark<TAB>text`` 0 unacceptable, 1 acceptable
    rte       header ``index<TAB>sentence1<TAB>sentence2<TAB>label``   entailment, not_entailment
    ========  =======================================================  ==========================

Each example is written into a fixed prompt (:data:`GLUE_TASKS`) and every label word is scored
after it by its total log-likelihood (the sum over its tokens, teacher forced, via
:func:`~llm_experiments.evaluate.metrics.score_continuations`); the prediction is the most likely label
word (the first on a tie). Reported: ``accuracy``, ``f1`` (of the task's positive class: positive,
paraphrase, acceptable, entailment), ``mcc`` (Matthews correlation, CoLA's official metric) and
``n``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_experiments.evaluate.metrics import MetricError, _input_device, _pad_batch, _pad_id, score_continuations


class CapabilityDataError(ValueError):
    """A capability data file that cannot be read; the message names the file, line and column."""


# ----------------------------------------------------------------------------------------------
# Perplexity


def _read_text(path: str | Path, encoding: str) -> str:
    path = Path(path)
    if path.is_dir():
        raise CapabilityDataError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise CapabilityDataError(f"{path}: no such file")
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise CapabilityDataError(f"{path.name}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise CapabilityDataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def load_texts(path: str | Path) -> list[str]:
    """Held-out texts from a local file: ``.jsonl`` (a ``"text"`` field per line) or plain text
    (documents separated by blank lines)."""
    raw = _read_text(path, "utf-8")
    path = Path(path)
    if path.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CapabilityDataError(f"{path.name}: line {n}: not valid JSON ({exc})") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise CapabilityDataError(f"{path.name}: line {n}: needs a string field 'text'")
            texts.append(obj["text"])
    else:
        texts = [block.strip() for block in raw.split("\n\n") if block.strip()]
    if not texts:
        raise CapabilityDataError(f"{path.name}: holds no text")
    return texts


@torch.no_grad()
def perplexity(model, tokenizer, texts: Sequence[str], *, max_length: int = 512, batch_size: int = 8) -> dict:
    """``{"perplexity", "nll", "tokens"}`` over ``texts`` (see the module docstring)."""
    if max_length < 2 or batch_size < 1:
        raise MetricError(f"max_length must be >= 2 and batch_size >= 1, got {max_length} and {batch_size}")
    windows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        windows += [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
    windows = [w for w in windows if len(w) >= 2]
    if not windows:
        raise MetricError("perplexity needs at least one text of two or more tokens")
    device, pad = _input_device(model), _pad_id(tokenizer)
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        ids, mask = _pad_batch(chunk, pad, device)  # (B, T)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, vocab)
        for row, window in enumerate(chunk):  # one row at a time: a float32 copy of (T, vocab) at most
            step_logits = logits[row, : len(window) - 1].float()  # predicts tokens 1..len-1
            target = torch.tensor(window[1:], device=step_logits.device)
            total += float(torch.nn.functional.cross_entropy(step_logits, target, reduction="sum"))
            count += len(window) - 1
    return {"perplexity": math.exp(total / count), "nll": total / count, "tokens": count}


# ----------------------------------------------------------------------------------------------
# Zero-shot GLUE


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task's TSV is read and written into a prompt."""

    name: str
    header: tuple[str, ...] | None  # expected header columns (None: the file has no header)
    columns: int  # columns per row
    text_columns: tuple[int, ...]  # columns filled into the template, in order
    label_column: int
    labels: tuple[str, ...]  # label values as written in the file, in class order
    template: str  # with {0}, {1} for the text columns
    label_words: tuple[str, ...]  # continuation scored for each class (leading space included)
    positive: int  # class index whose F1 is reported


GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask("sst2", ("sentence", "label"), 2, (0,), 1, ("0", "1"),
                     "Review: {0}\nSentiment:", (" negative", " positive"), 1),
    "mrpc": GlueTask("mrpc", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"), 5, (3, 4), 0, ("0", "1"),
                     "Sentence 1: {0}\nSentence 2: {1}\nQuestion: Do both sentences mean the same thing?\nAnswer:",
                     (" No", " Yes"), 1),
    "cola": GlueTask("cola", None, 4, (3,), 1, ("0", "1"),
                     "Sentence: {0}\nQuestion: Is this sentence grammatically correct?\nAnswer:", (" No", " Yes"), 1),
    "rte": GlueTask("rte", ("index", "sentence1", "sentence2", "label"), 4, (1, 2), 3,
                    ("entailment", "not_entailment"), "{0}\nQuestion: {1} True or False?\nAnswer:",
                    (" True", " False"), 0),
}


@dataclass(frozen=True)
class GlueExample:
    texts: tuple[str, ...]
    label: int


def load_glue(task: str, path: str | Path, *, limit: int | None = None) -> list[GlueExample]:
    """The labelled examples of a GLUE TSV file of ``task`` (``sst2``, ``mrpc``, ``cola``, ``rte``).

    GLUE's files are not quoted: every line is split on tabs. ``limit`` keeps the first examples.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise CapabilityDataError(f"limit must be a positive integer or None, got {limit!r}")
    if task not in GLUE_TASKS:
        raise CapabilityDataError(f"unknown GLUE task {task!r}; known: {sorted(GLUE_TASKS)}")
    spec = GLUE_TASKS[task]
    lines = _read_text(path, "utf-8-sig").splitlines()
    path = Path(path)
    start = 0
    if spec.header is not None:
        if not lines or tuple(c.strip() for c in lines[0].split("\t")) != spec.header:
            got = lines[0] if lines else "an empty file"
            raise CapabilityDataError(
                f"{path.name}: line 1: expected the {task} header {chr(9).join(spec.header)!r}, got {got!r} "
                "(test.tsv files have no labels and cannot be scored)"
            )
        start = 1
    examples = []
    for n, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != spec.columns:
            raise CapabilityDataError(f"{path.name}: line {n}: {len(cells)} columns, the {task} layout has "
                                      f"{spec.columns}")
        label = cells[spec.label_column].strip()
        if label not in spec.labels:
            raise CapabilityDataError(f"{path.name}: line {n}: column {spec.label_column + 1} (label) is {label!r}, "
                                      f"expected one of {list(spec.labels)}")
        texts = tuple(cells[c].strip() for c in spec.text_columns)
        for c, t in zip(spec.text_columns, texts, strict=True):
            if not t:
                raise CapabilityDataError(f"{path.name}: line {n}: column {c + 1} (text) is empty")
        examples.append(GlueExample(texts, spec.labels.index(label)))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise CapabilityDataError(f"{path.name}: holds no example")
    return examples


def binary_scores(labels: Sequence[int], predictions: Sequence[int], positive: int = 1) -> dict:
    """``accuracy``, ``f1`` of class ``positive`` and ``mcc`` (0 where undefined), and ``n``."""
    pairs = list(zip(labels, predictions, strict=True))
    tp = sum(y == positive and p == positive for y, p in pairs)
    tn = sum(y != positive and p != positive for y, p in pairs)
    fp = sum(y != positive and p == positive for y, p in pairs)
    fn = sum(y == positive and p != positive for y, p in pairs)
    n = len(pairs)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    return {"accuracy": (tp + tn) / n, "f1": f1, "mcc": mcc, "n": n}


def glue_zero_shot(model, tokenizer, task: str, examples: Sequence[GlueExample], *, batch_size: int = 16) -> dict:
    """Zero-shot scores of ``model`` on ``examples`` of ``task`` (see the module docstring)."""
    spec = GLUE_TASKS[task]
    pairs = [(spec.template.format(*ex.texts), word) for ex in examples for word in spec.label_words]
    scores = score_continuations(model, tokenizer, pairs, batch_size=batch_size)
    k = len(spec.label_words)
    predictions = []
    for i in range(len(examples)):
        nll = [s.sum_nll for s in scores[i * k : (i + 1) * k]]
        predictions.append(min(range(k), key=nll.__getitem__))
    return binary_scores([ex.label for ex in examples], predictions, spec.positive)
