"""The two evaluation protocols of lifelong editing, named explicitly, writing results as files.

``after_stream`` (AlphaEdit's protocol)
    Apply the whole stream of edits, then evaluate every edited request once on the final model:
    :func:`evaluate_after_stream`.

``along_stream`` (checkpoints with early-edit retention)
    Evaluate at checkpoints along the stream ("after n edits"): the requests edited so far, and
    fixed *cohorts* of early edits (cohort k = the edits of the first k batches), re-evaluated at
    every checkpoint once they are complete. A cohort's *retention* of a metric is its value at the
    last checkpoint divided by its value at the first checkpoint after the cohort was written.
    Drive it with your own loop and a :class:`StreamRecorder` (``recorder.checkpoint(model, tok,
    n_edits)``), or hand a callable that edits one batch to :func:`run_along_stream`, which calls
    it batch by batch and checkpoints after every cohort and every ``checkpoint_every`` edits.

Nothing here edits a model: the editing stream is the caller's (any callable or loop). Files
written to ``out_dir``: ``config.json`` (the resolved configuration), ``metrics.jsonl`` (one line
per checkpoint; protocol ``after_stream`` has one), ``summary.json``, and for ``after_stream``
``records.jsonl`` (one line of metrics per request); ``summary.json``'s ``absent`` gives, for each
table metric the suite cannot report on the requests, the reason (no paraphrase prompts, no
reference texts, generation off, ...). Metric keys are those of
:mod:`llm_experiments.evaluate.metrics` (fractions in [0, 1], entropy in bits; the papers print 100 x).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_experiments.data.requests import EditRequest
from llm_experiments.data.tfidf import TfidfStats
from llm_experiments.evaluate.metrics import (
    METRIC_SUITES,
    absent_metrics,
    counterfact_metrics,
    summarize,
    zsre_metrics,
)
from rlsedit.config import BOOLEAN, POSITIVE_INT, Config, ConfigError, increasing, one_of

PROTOCOLS = ("after_stream", "along_stream")


class EvaluationError(ConfigError):
    """A bad configuration or a checkpoint out of order; the recorder's state is left unchanged."""


@dataclass(frozen=True)
class EvaluationConfig(Config):
    """What is measured on each request.

    Attributes:
        dataset: metric suite, ``"counterfact"`` (MEMIT's metrics) or ``"zsre"`` (token accuracy).
        batch_size: (prompt, target) pairs per forward pass.
        generation: also Fluency and Consistency (CounterFact only; Consistency needs TF-IDF
            statistics, and is reported absent when no request has reference texts).
        max_length: generated text length in tokens, prompt included (MEMIT: 100).
        top_k: top-k sampling for generation (MEMIT: 5).
        seed: seed of the generation's random stream.
        generation_every: Fluency and Consistency on every k-th request only (1: all; MEMIT and
            AlphaEdit evaluate all, which on CPU costs more than a 10,000-edit stream itself).
    """

    dataset: str = "counterfact"
    batch_size: int = 16
    generation: bool = False
    max_length: int = 100
    top_k: int = 5
    seed: int = 0
    generation_every: int = 1

    error = EvaluationError

    def validate(self) -> None:
        self.require(one_of(sorted(METRIC_SUITES)), "dataset")
        self.require(POSITIVE_INT, "batch_size", "max_length", "top_k", "generation_every")
        self.require(BOOLEAN, "generation")
        if self.generation and self.dataset != "counterfact":
            raise self.bad("generation", "(Fluency, Consistency) is defined for CounterFact only")
        self.require(("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)), "seed")


@dataclass(frozen=True)
class AlongStreamConfig(Config):
    """Checkpoints of protocol ``along_stream``.

    Attributes:
        edit_batch_size: edits per batch of the stream (the paper: 100).
        checkpoint_every: edits between regular checkpoints (a multiple of ``edit_batch_size``).
        cohort_batches: cohort k holds the edits of the first k batches; each is re-evaluated at
            every checkpoint from the one where it is complete (strictly increasing).
        evaluate_edited: also evaluate all requests edited so far at each checkpoint (the costly
            part on long streams; cohorts are always evaluated).
        edited_every: of the requests edited so far, evaluate every k-th (0, k, 2k, ...; 1: all),
            so a long stream's checkpoints cost O(n / k); cohorts are always evaluated in full.
    """

    edit_batch_size: int = 100
    checkpoint_every: int = 1000
    cohort_batches: tuple[int, ...] = (1,)
    evaluate_edited: bool = True
    edited_every: int = 1

    error = EvaluationError

    def validate(self) -> None:
        self.require(POSITIVE_INT, "edit_batch_size", "edited_every", "checkpoint_every")
        if self.checkpoint_every % self.edit_batch_size:
            raise self.bad("checkpoint_every", f"must be a multiple of edit_batch_size ({self.edit_batch_size})")
        self.require(increasing(1), "cohort_batches")
        self.require(BOOLEAN, "evaluate_edited")

    def cohort_sizes(self) -> dict[str, int]:
        """``{"first_k_batches": number of edits}`` for each cohort."""
        return {f"first_{k}_batches": k * self.edit_batch_size for k in self.cohort_batches}


def evaluate_requests(
    model, tokenizer, requests: Sequence[EditRequest], config: EvaluationConfig, *, tfidf: TfidfStats | None = None,
    progress: bool = False,
) -> list[dict]:
    """Per-request metrics of ``config.dataset``'s suite (one dict per request, with ``case_id``).

    ``progress``: progress bars over the scored prompts (and the generations).
    """
    if not requests:
        return []
    if config.dataset == "zsre":
        return zsre_metrics(model, tokenizer, requests, batch_size=config.batch_size, progress=progress)
    return counterfact_metrics(model, tokenizer, requests, batch_size=config.batch_size,
                               generation=config.generation, tfidf=tfidf, max_length=config.max_length,
                               top_k=config.top_k, seed=config.seed, generation_every=config.generation_every,
                               progress=progress)


def _check_tfidf(requests: Sequence[EditRequest], config: EvaluationConfig, tfidf: TfidfStats | None) -> None:
    """Consistency needs TF-IDF statistics when some request has reference texts to compare with."""
    if config.generation and tfidf is None and any(r.reference_texts for r in requests):
        raise EvaluationError("config.generation needs tfidf statistics (the requests have reference texts "
                              "for Consistency)")


def absent(requests: Sequence[EditRequest], config: EvaluationConfig) -> dict[str, str]:
    """``{metric: why}`` for the table's metrics that ``config``'s suite cannot report on ``requests``."""
    return absent_metrics(requests, suite=config.dataset, generation=config.generation,
                          generation_every=config.generation_every)


def _capability(model, tokenizer, capability: Mapping[str, Callable] | None) -> dict:
    return {name: fn(model, tokenizer) for name, fn in (capability or {}).items()}


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _prepare_out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise EvaluationError(f"{out}: output directory exists and is not empty (results are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def evaluate_after_stream(
    model,
    tokenizer,
    requests: Sequence[EditRequest],
    config: EvaluationConfig,
    out_dir: str | Path,
    *,
    tfidf: TfidfStats | None = None,
    capability: Mapping[str, Callable] | None = None,
    run_config: Mapping | None = None,
    progress: bool = False,
) -> dict:
    """Protocol ``after_stream``: every request once, on the model after the whole stream.

    ``capability`` maps names to callables ``fn(model, tokenizer) -> dict`` (e.g. perplexity or a
    GLUE task, bound with ``functools.partial``); ``run_config`` is recorded in ``config.json``
    (the editor's settings, say); ``progress`` shows progress bars (scoring, generation).
    Returns the summary written to ``summary.json``.
    """
    _check_tfidf(requests, config, tfidf)
    out = _prepare_out_dir(out_dir)
    _write_json(out / "config.json", {"protocol": "after_stream", "evaluation": config.to_dict(),
                                      "n_requests": len(requests), "run": dict(run_config or {})})
    start = time.perf_counter()
    records = evaluate_requests(model, tokenizer, requests, config, tfidf=tfidf, progress=progress)
    line = {"n_edits": len(requests), "edited": summarize(records),
            "capability": _capability(model, tokenizer, capability),
            "seconds": time.perf_counter() - start}
    with (out / "records.jsonl").open("w") as f:
        for rec in records:
            f.write(json.dumps(rec, allow_nan=False) + "\n")
    with (out / "metrics.jsonl").open("w") as f:
        f.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
    summary = {"protocol": "after_stream", **line, "absent": absent(requests, config)}
    _write_json(out / "summary.json", summary)
    return summary


class StreamRecorder:
    """Protocol ``along_stream``: call :meth:`checkpoint` after n edits, then :meth:`finish`.

    ``requests`` is the stream in edit order: after n edits, ``requests[:n]`` have been applied.
    Each checkpoint appends one line to ``metrics.jsonl``::

        {"n_edits": n, "edited": {metric: {"mean", "sem", "n"}},        (if evaluate_edited)
         "cohorts": {"first_1_batches": {"size": 100, "written": true, "metrics": {...}}, ...},
         "capability": {name: result}, "seconds": evaluation time}

    Cohorts appear once complete (``written``: true); at ``n_edits == 0`` every cohort is evaluated
    before any edit (``written``: false), the baseline that ``summary.json`` reports as ``before``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        requests: Sequence[EditRequest],
        config: EvaluationConfig,
        stream: AlongStreamConfig,
        *,
        tfidf: TfidfStats | None = None,
        capability: Mapping[str, Callable] | None = None,
        run_config: Mapping | None = None,
        resume_at: int | None = None,
    ) -> None:
        _check_tfidf(requests, config, tfidf)
        self.requests = list(requests)
        self.config, self.stream, self.tfidf = config, stream, tfidf
        self.capability = dict(capability or {})
        self.history: list[dict] = []
        header = {"protocol": "along_stream", "evaluation": config.to_dict(), "stream": stream.to_dict(),
                  "n_requests": len(self.requests), "run": dict(run_config or {})}
        if resume_at is not None and Path(out_dir).is_dir() and any(Path(out_dir).iterdir()):
            self._resume(Path(out_dir), header, resume_at)
            return
        self.out = _prepare_out_dir(out_dir)
        _write_json(self.out / "config.json", header)

    def _resume(self, out: Path, header: dict, n_edits: int) -> None:
        """Continue the record in ``out`` of a stream resumed after ``n_edits`` edits: its
        checkpoints up to ``n_edits`` are kept (those after it were made on edits that are redone)."""
        try:
            saved = json.loads((out / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EvaluationError(f"{out}: cannot resume its record, config.json unreadable ({exc})") from exc
        if saved != json.loads(json.dumps(header, sort_keys=True)):
            raise EvaluationError(f"{out}: the record there was made with another configuration")
        path = out / "metrics.jsonl"
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
        self.history = [line for line in lines if line["n_edits"] <= n_edits]
        with path.open("w") as f:
            for line in self.history:
                f.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
        self.out = out

    @property
    def last_n_edits(self) -> int | None:
        return self.history[-1]["n_edits"] if self.history else None

    def checkpoint(self, model, tokenizer, n_edits: int) -> dict:
        """Evaluate the model after ``n_edits`` edits of the stream and append the line."""
        if isinstance(n_edits, bool) or not isinstance(n_edits, int) or not 0 <= n_edits <= len(self.requests):
            raise EvaluationError(f"n_edits must be an integer in 0..{len(self.requests)}, got {n_edits!r}")
        if self.last_n_edits is not None and n_edits <= self.last_n_edits:
            raise EvaluationError(f"checkpoints must move forward: n_edits {n_edits} after {self.last_n_edits}")
        start = time.perf_counter()
        # complete cohorts; before the first edit, every cohort (the pre-edit baseline)
        cohorts = {name: size for name, size in self.stream.cohort_sizes().items() if size <= n_edits or n_edits == 0}
        cohorts = {name: min(size, len(self.requests)) for name, size in cohorts.items()}
        # cohorts are prefixes of the stream: evaluate the longest prefix once and slice it; the edits
        # made so far every `edited_every`-th one (the same records where the two overlap)
        prefix = max(cohorts.values(), default=0)
        sampled = range(0, n_edits, self.stream.edited_every) if self.stream.evaluate_edited else range(0)
        indices = sorted(set(range(prefix)) | set(sampled))
        scored = evaluate_requests(model, tokenizer, [self.requests[i] for i in indices], self.config,
                                   tfidf=self.tfidf)
        records = dict(zip(indices, scored, strict=True))
        line: dict = {"n_edits": n_edits}
        if self.stream.evaluate_edited and n_edits:
            line["edited"] = summarize([records[i] for i in sampled])
        line["cohorts"] = {name: {"size": size, "written": n_edits >= size > 0,
                                  "metrics": summarize([records[i] for i in range(size)])}
                           for name, size in cohorts.items()}
        line["capability"] = _capability(model, tokenizer, self.capability)
        line["seconds"] = time.perf_counter() - start
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
        self.history.append(line)
        return line

    def finish(self) -> dict:
        """Write and return ``summary.json``: checkpoints, final metrics, retention per cohort."""
        if not self.history:
            raise EvaluationError("no checkpoint was recorded")
        retention: dict = {}
        for name in self.stream.cohort_sizes():
            lines = [h for h in self.history if h["cohorts"].get(name, {}).get("written")]
            if not lines:
                continue
            first, last = lines[0], lines[-1]
            before = next((h["cohorts"][name]["metrics"] for h in self.history
                           if name in h["cohorts"] and not h["cohorts"][name]["written"]), {})
            per_metric = {}
            for metric, value in first["cohorts"][name]["metrics"].items():
                at_write, final = value["mean"], last["cohorts"][name]["metrics"][metric]["mean"]
                per_metric[metric] = {"before": before.get(metric, {}).get("mean"), "at_write": at_write,
                                      "final": final, "ratio": final / at_write if at_write else None}
            retention[name] = {"written_by_checkpoint": first["n_edits"], "final_checkpoint": last["n_edits"],
                               "metrics": per_metric}
        summary = {"protocol": "along_stream", "checkpoints": [h["n_edits"] for h in self.history],
                   "final": self.history[-1], "retention": retention}
        _write_json(self.out / "summary.json", summary)
        return summary


def run_along_stream(
    model,
    tokenizer,
    requests: Sequence[EditRequest],
    apply_batch: Callable[[list[EditRequest]], object],
    config: EvaluationConfig,
    stream: AlongStreamConfig,
    out_dir: str | Path,
    *,
    tfidf: TfidfStats | None = None,
    capability: Mapping[str, Callable] | None = None,
    run_config: Mapping | None = None,
    evaluate_before: bool = True,
) -> dict:
    """Protocol ``along_stream`` driven here: ``apply_batch(batch)`` edits the model in place.

    Batches of ``stream.edit_batch_size`` requests in order (the last may be shorter); checkpoints
    before the first edit (``evaluate_before``), after each cohort is complete, every
    ``stream.checkpoint_every`` edits and after the last batch. Returns the summary.
    """
    recorder = StreamRecorder(out_dir, requests, config, stream, tfidf=tfidf, capability=capability,
                              run_config=run_config)
    sizes = set(stream.cohort_sizes().values())
    if evaluate_before:
        recorder.checkpoint(model, tokenizer, 0)
    n = 0
    while n < len(requests):
        batch = list(requests[n : n + stream.edit_batch_size])
        apply_batch(batch)
        n += len(batch)
        if n in sizes or n % stream.checkpoint_every == 0 or n == len(requests):
            recorder.checkpoint(model, tokenizer, n)
    return recorder.finish()


__all__ = [
    "PROTOCOLS",
    "AlongStreamConfig",
    "EvaluationConfig",
    "EvaluationError",
    "StreamRecorder",
    "absent",
    "counterfact_metrics",
    "evaluate_after_stream",
    "evaluate_requests",
    "run_along_stream",
    "zsre_metrics",
]
