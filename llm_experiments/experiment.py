"""One editing benchmark run, end to end: model, edit requests, statistics, the stream, evaluation.

:func:`run_edit` is what ``rlsedit edit`` does (:mod:`rlsedit_cli.edit` is its command line):

1. the model: a tiny Llama/Qwen2 trained on a synthetic fact world (:mod:`llm_experiments.tiny.training`, cached
   by path and reused), or a local checkpoint;
2. ``n_edits`` counterfactual requests: drawn from the fact world (:meth:`World.edit_requests`),
   or read from a CounterFact/ZsRE file (:mod:`llm_experiments.data.loaders`);
3. E[k k^T] of the edited layers over a statistics corpus (the world's training texts, or a text
   file), cached under the cache directory (:mod:`llm_experiments.edit.statistics`);
4. the stream, in batches, through one :class:`EditingSession` (every editor keeps its state over
   the whole stream), evaluated along the way when asked (protocol ``along_stream``, with
   early-edit cohorts) and after it (protocol ``after_stream``), see :mod:`llm_experiments.evaluate.protocols`.

Files in the run's directory: ``config.json`` (the resolved :class:`EditRunConfig` and what it
resolved to: model path, its metadata, the :class:`EditingConfig`), ``metrics.jsonl`` (one line
per edited batch), ``after_stream/`` and ``along_stream/`` (the protocols' own files) and
``summary.json``: ``efficacy``, ``generalization``, ``specificity``, ``fluency``,
``consistency`` in percent as in the paper's table (fluency is 100 x the entropy in bits), their
standard errors, the timing, and for a tiny model its general capability before and after the
stream (:mod:`llm_experiments.evaluate.world_capability`: the world's language apart from its facts; also at every
along-stream checkpoint). Figures and tables are drawn from these files only
(:mod:`llm_experiments.table`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_experiments.configs import config_from_dict
from rlsedit.config import MAX_THREADS

TINY_MODELS = {"tiny-llama": "llama", "tiny-qwen2": "qwen2"}
EDITOR_NAMES = ("rlsedit", "memit", "alphaedit", "rome", "ft")
TABLE_METRICS = ("efficacy", "generalization", "specificity", "fluency", "consistency")
CONTEXTS = ("bare", "default")
DEFAULT_CACHE_DIR = "~/.cache/rlsedit"


class EditRunError(ValueError):
    """A run that cannot be made as configured (the message names the option)."""


def _bad(name: str, value: Any, why: str) -> EditRunError:
    return EditRunError(f"EditRunConfig.{name}={value!r}: {why}")


@dataclass(frozen=True)
class EditRunConfig:
    """Everything that determines one ``rlsedit edit`` run (validated on construction).

    Defaults suit the tiny fact models (TINY-MODELS.md, docs/edit-benchmark.md): one edited layer
    (0) at the subject's last token, anchor ``mu * n_w * E[kk^T]`` with ``mu * n_w = 10``, target
    deltas up to 1.5 x the hidden state's norm, no decay on them (tuned on 100 edits there).

    Attributes:
        model: ``"tiny-llama"``, ``"tiny-qwen2"`` (trained or reused from ``cache_dir``) or the
            path of a local checkpoint directory.
        data: ``"world"`` (the tiny model's fact world; only with a tiny model) or the path of a
            CounterFact / ZsRE JSON file.
        dataset: metric suite for a data file, ``"counterfact"`` or ``"zsre"`` (the world is
            CounterFact-shaped).
        editor: one of ``rlsedit``, ``memit``, ``alphaedit``, ``rome``, ``ft``.
        n_edits, batch_size: the stream (``n_edits`` requests in batches of ``batch_size``).
        layers: edited layers (strictly increasing).
        fact_token: ``"subject_last"`` or ``"last"``.
        lam, mu, n_w: RLSEdit / MEMIT / ROME prior ``lam I + mu n_w E[kk^T]``.
        l2, threshold: AlphaEdit's ridge weight and null-space eigenvalue threshold on E[kk^T].
        ft_steps, ft_lr, ft_norm_bound: FT's gradient steps, relative step size, entrywise bound
            (0 = none).
        value_steps, value_lr, kl_factor, clamp_factor, value_weight_decay: the target
            optimisation (:class:`llm_experiments.edit.values.ValueConfig`).
        context: ``"bare"`` (keys and targets from the prompt alone) or ``"default"`` (the
            package's six English prefixes; words a word-level tokenizer does not know).
        snippets: CounterFact's ``attribute_snippets.json`` for a CounterFact file: the Consistency
            references (without it, generation needs reference texts in the records).
        tfidf: a folder with MEMIT's ``idf.npy`` and ``tfidf_vocab.json`` for a CounterFact file:
            Consistency's TF-IDF statistics as the authors used them; ``None``: fitted on the
            reference texts of the records used.
        stats_corpus: a text file for E[kk^T] (one document per line); ``None``: the world's
            training texts (tiny models only).
        stats_tokens: tokens of the statistics corpus used.
        generation: also Fluency and Consistency after the stream (generation of ``max_length`` tokens).
        along_generation: also Fluency and Consistency at the along-stream checkpoints (off by
            default: generation is most of the evaluation's time; the probabilities are cheap).
        max_length: generated length in tokens, prompt included (MEMIT: 100).
        generation_every: Fluency and Consistency on every k-th edit of the stream (1: every edit,
            as the papers; generation is most of the evaluation's time on long streams).
        along_stream: also protocol ``along_stream`` (checkpoints, early-edit cohorts).
        checkpoint_every: edits between along-stream checkpoints (0: only at cohorts and the end).
        along_every: at each along-stream checkpoint, evaluate every k-th of the edits made so far
            (1: all; cohorts are always evaluated in full).
        cohort_batches: cohort k = the edits of the first k batches.
        edit_seed: seed of the world's request order and new targets.
        people: people in the fact world (5 facts each; the 10,000-edit stream needs 2,000).
        hidden, d_ff: the tiny model's hidden size and MLP width (``TrainConfig``'s; a new size trains
            a new model). ``d_ff`` is the dimension of the edit keys.
        quick: the quick world and model (seconds to train; a smoke test, not an edit target).
        cache_dir: where tiny models and statistics are cached.
        threads: torch CPU threads.
        device: ``"cpu"`` or a torch device string.
    """

    model: str = "tiny-llama"
    data: str = "world"
    dataset: str = "counterfact"
    editor: str = "rlsedit"
    n_edits: int = 100
    batch_size: int = 50
    layers: tuple[int, ...] = (0,)
    fact_token: str = "subject_last"
    lam: float = 1e-3
    mu: float = 1.0
    n_w: float = 10.0
    l2: float = 10.0
    threshold: float = 0.1
    ft_steps: int = 25
    ft_lr: float = 1.0
    ft_norm_bound: float = 0.0
    value_steps: int = 60
    value_lr: float = 0.3
    kl_factor: float = 0.0625
    clamp_factor: float = 1.5
    value_weight_decay: float = 0.0
    context: str = "bare"
    snippets: str | None = None
    tfidf: str | None = None
    stats_corpus: str | None = None
    stats_tokens: int = 100_000
    generation: bool = True
    along_generation: bool = False
    max_length: int = 40
    generation_every: int = 1
    along_stream: bool = False
    checkpoint_every: int = 0
    along_every: int = 1
    cohort_batches: tuple[int, ...] = (1,)
    edit_seed: int = 0
    people: int = 300
    hidden: int = 128
    d_ff: int = 1024
    quick: bool = False
    cache_dir: str = DEFAULT_CACHE_DIR
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "cohort_batches", tuple(self.cohort_batches))
        if self.editor not in EDITOR_NAMES:
            raise _bad("editor", self.editor, f"must be one of {EDITOR_NAMES}")
        if self.dataset not in ("counterfact", "zsre"):
            raise _bad("dataset", self.dataset, "must be 'counterfact' or 'zsre'")
        if self.data == "world" and self.model not in TINY_MODELS:
            raise _bad("data", self.data, "the fact world goes with a tiny model (tiny-llama, tiny-qwen2); "
                       "give a CounterFact/ZsRE file for a checkpoint")
        if self.snippets is not None and (self.data == "world" or self.dataset != "counterfact"):
            raise _bad("snippets", self.snippets, "attribute snippets go with a CounterFact file")
        if self.tfidf is not None and (self.data == "world" or self.dataset != "counterfact"):
            raise _bad("tfidf", self.tfidf, "TF-IDF statistics go with a CounterFact file (Consistency)")
        if self.data == "world" and self.dataset != "counterfact":
            raise _bad("dataset", self.dataset, "the fact world is CounterFact-shaped; use 'counterfact'")
        if self.model not in TINY_MODELS and self.stats_corpus is None and self.editor != "ft":
            raise _bad("stats_corpus", None, "a checkpoint needs a text file for E[kk^T] (--stats-corpus)")
        for name in ("n_edits", "batch_size", "ft_steps", "stats_tokens", "max_length", "generation_every",
                     "along_every", "threads", "people", "hidden", "d_ff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _bad(name, v, "must be a positive integer")
        for name in ("value_steps", "checkpoint_every", "edit_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _bad(name, v, "must be an integer >= 0")
        if self.threads > MAX_THREADS:
            raise _bad("threads", self.threads, f"must be at most {MAX_THREADS}")
        resized = [name for name in ("hidden", "d_ff") if getattr(self, name) != _FIELD_DEFAULTS[name]]
        if resized and (self.quick or self.model not in TINY_MODELS):
            raise _bad(resized[0], getattr(self, resized[0]), "sets the size of a tiny model trained here; "
                       + ("--quick has its own" if self.quick else "a checkpoint has its own"))
        if self.model in TINY_MODELS and not self.quick:
            from llm_experiments.tiny.training import TrainConfig, TrainConfigError

            try:
                TrainConfig(arch=TINY_MODELS[self.model], hidden=self.hidden, d_ff=self.d_ff)
            except TrainConfigError as exc:
                raise _bad("hidden", self.hidden, str(exc)) from None
        if self.people < 4:
            raise _bad("people", self.people, "must be >= 4 (neighbourhood prompts need other people)")
        if self.checkpoint_every % self.batch_size:
            raise _bad("checkpoint_every", self.checkpoint_every,
                       f"must be a multiple of batch_size ({self.batch_size})")
        if not self.layers or list(self.layers) != sorted(set(self.layers)) or min(self.layers) < 0:
            raise _bad("layers", self.layers, "must be non-negative and strictly increasing")
        if self.fact_token not in ("subject_last", "last"):
            raise _bad("fact_token", self.fact_token, "must be 'subject_last' or 'last'")
        for name in ("lam", "mu", "kl_factor", "value_weight_decay", "ft_norm_bound"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise _bad(name, v, "must be a finite number >= 0")
        for name in ("n_w", "l2", "threshold", "value_lr", "clamp_factor"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise _bad(name, v, "must be a finite number > 0")
        if not 0 < self.ft_lr < 2:
            raise _bad("ft_lr", self.ft_lr, "must be in (0, 2) (relative to 1/||K||_2^2)")
        if self.editor in ("rlsedit", "memit", "rome") and self.lam == 0 and self.mu == 0:
            raise _bad("lam", self.lam, "lam and mu are both 0: the prior (lam I + mu n_w E[kk^T]) is singular")
        if self.context not in CONTEXTS:
            raise _bad("context", self.context, f"must be one of {CONTEXTS}")
        if not self.cohort_batches or list(self.cohort_batches) != sorted(set(self.cohort_batches)) \
                or min(self.cohort_batches) < 1:
            raise _bad("cohort_batches", self.cohort_batches, "must be positive and strictly increasing")
        if (self.generation or self.along_generation) and self.dataset != "counterfact":
            raise _bad("generation", self.generation, "Fluency and Consistency are defined for CounterFact only")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"], d["cohort_batches"] = list(self.layers), list(self.cohort_batches)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> EditRunConfig:
        return config_from_dict(cls, data, EditRunError)

    def editor_options(self) -> dict:
        """The options of the chosen editor (each editor takes only its own)."""
        if self.editor in ("rlsedit", "memit", "rome"):
            return {"lam": self.lam, "mu": self.mu}
        if self.editor == "alphaedit":
            return {"l2": self.l2, "threshold": self.threshold}
        return {"steps": self.ft_steps, "lr": self.ft_lr,
                "norm_bound": self.ft_norm_bound if self.ft_norm_bound > 0 else None}

    def editing_config(self):
        from llm_experiments.edit.keys import DEFAULT_CONTEXT_TEMPLATES
        from llm_experiments.edit.session import EditingConfig
        from llm_experiments.edit.values import ValueConfig

        values = ValueConfig(steps=self.value_steps, lr=self.value_lr, kl_factor=self.kl_factor,
                             clamp_factor=self.clamp_factor, weight_decay=self.value_weight_decay)
        templates = ("{}",) if self.context == "bare" else DEFAULT_CONTEXT_TEMPLATES
        return EditingConfig(editor=self.editor, layers=self.layers, batch_size=self.batch_size,
                             fact_token=self.fact_token, context_templates=templates, values=values,
                             editor_options=self.editor_options(), n_w=float(self.n_w))


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(EditRunConfig)}


def with_bos(tokenizer):
    """Make a word-level tokenizer put ``<bos>`` in front of every text, as the tiny models were trained.

    The tiny models always saw ``<bos>`` first (:func:`llm_experiments.tiny.training.encode`); the word tokenizer adds
    no special tokens by itself, so scoring, keys and generation would otherwise read text the model
    never saw. The offsets of ``<bos>`` are (0, 0): it overlaps no subject or target.
    """
    from tokenizers import processors

    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)])
    return tokenizer


@dataclass
class LoadedTarget:
    """The model to edit, its tokenizer, the requests, the statistics corpus and what was resolved."""

    model: torch.nn.Module
    tokenizer: Any
    requests: list
    corpus_texts: list[str] | None
    tfidf: Any
    resolved: dict
    capability: dict = dataclasses.field(default_factory=dict)  # {name: fn(model, tokenizer) -> dict}


def tiny_model_dir(config: EditRunConfig) -> tuple[Path, Any, Any]:
    """The tiny model's cache directory ``cache_dir/tiny-<arch>[-quick]-<digest>``, world and training configs."""
    from llm_experiments.data.world import WorldConfig
    from llm_experiments.tiny.training import QUICK_TRAIN, QUICK_WORLD, TrainConfig, _digest, _identity

    arch = TINY_MODELS[config.model]
    if config.quick:
        world, train = QUICK_WORLD, dataclasses.replace(QUICK_TRAIN, arch=arch)
    else:
        world = WorldConfig(n_people=config.people)
        train = TrainConfig(arch=arch, hidden=config.hidden, d_ff=config.d_ff)
    tag = "-quick" if config.quick else ""
    return Path(config.cache_dir).expanduser() / f"tiny-{arch}{tag}-{_digest(_identity(world, train))}", world, train


@dataclass
class RunInputs:
    """What a run reads from files, read before any model is built (:func:`read_inputs`)."""

    requests: list | None  # None: drawn from the fact world once the tiny model is there
    tfidf: Any
    corpus_texts: list[str] | None  # None: the fact world's training texts


def _read_corpus(path: str) -> list[str]:
    """The statistics corpus: one document per non-blank line of a UTF-8 text file."""
    p = Path(path)
    if not p.is_file():
        raise _bad("stats_corpus", path, "is a directory, not a file" if p.is_dir() else "no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("stats_corpus", path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise _bad("stats_corpus", path, f"cannot be read ({exc.strerror or exc})") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise _bad("stats_corpus", path, "holds no text")
    return lines


def read_inputs(config: EditRunConfig) -> RunInputs:
    """Read and check the run's files before any model is loaded or trained: the data file and its
    snippets, the statistics corpus and the checkpoint's folder. A bad one raises :class:`EditRunError`
    naming it (a :class:`llm_experiments.data.loaders.DataError`'s message: file, record, field)."""
    from llm_experiments.data.loaders import DataError, load_counterfact, load_tfidf, load_zsre
    from llm_experiments.data.tfidf import TfidfStats
    from llm_experiments.model.loading import ModelPathError, check_model_path

    requests = tfidf = None
    if config.data == "world":
        n_facts = tiny_model_dir(config)[1].n_facts
        if config.n_edits > n_facts:
            raise _bad("n_edits", config.n_edits, f"the world has {n_facts} facts (at most {n_facts} edits)")
    else:
        try:
            if config.dataset == "counterfact":
                requests = load_counterfact(config.data, snippets=config.snippets, limit=config.n_edits)
            else:
                requests = load_zsre(config.data, limit=config.n_edits)
        except DataError as exc:
            raise EditRunError(str(exc)) from exc
        if len(requests) < config.n_edits:
            raise _bad("n_edits", config.n_edits, f"{config.data} holds only {len(requests)} records")
        docs = [t for r in requests for t in r.reference_texts]
        wants = config.generation or config.along_generation
        if config.tfidf is not None:
            folder = Path(config.tfidf)
            if not folder.is_dir():
                raise _bad("tfidf", config.tfidf, "not a folder (it should hold idf.npy and tfidf_vocab.json)")
            try:
                tfidf = load_tfidf(folder / "idf.npy", folder / "tfidf_vocab.json")
            except DataError as exc:
                raise _bad("tfidf", config.tfidf, str(exc)) from exc
        elif wants and docs:
            tfidf = TfidfStats.fit(docs)
        # without reference texts (a CounterFact file without --snippets, MQuAKE, ...) Fluency is still
        # measured and Consistency is reported absent with the reason (summary.json's "absent")
    texts = None if config.stats_corpus is None else _read_corpus(config.stats_corpus)
    if config.model not in TINY_MODELS:
        try:
            check_model_path(config.model)
        except ModelPathError as exc:
            raise EditRunError(str(exc)) from exc
    return RunInputs(requests, tfidf, texts)


def load_target(config: EditRunConfig, *, progress: bool = True, inputs: RunInputs | None = None) -> LoadedTarget:
    """Train or reuse the tiny model (or load the checkpoint), and draw or read the requests.

    ``inputs``: the run's files as :func:`read_inputs` returned them (read here when None)."""
    from llm_experiments.data.tfidf import TfidfStats

    inputs = read_inputs(config) if inputs is None else inputs
    if config.model in TINY_MODELS:
        from llm_experiments.tiny.training import train_or_load

        path, world_config, train_config = tiny_model_dir(config)
        tiny = train_or_load(world_config, train_config, path, progress=progress)
        model, tokenizer, world = tiny.model, with_bos(tiny.tokenizer), tiny.world
        # a model just trained records no path; the reloaded one records its directory: name it the same
        # way, so that the statistics cached on the first run are found again on the next
        model.config._name_or_path = str(path)
        resolved = {"model_path": str(path), "model_reused": tiny.reused,
                    "tiny_model": {k: tiny.metadata[k] for k in ("digest", "n_facts", "n_params", "accuracy",
                                                                 "train_seconds", "world_config", "train_config")}}
        texts = world.training_texts()
    else:
        from llm_experiments.model.loading import load_model

        model, tokenizer = load_model(config.model, device=config.device)
        world, texts = None, None
        resolved = {"model_path": str(Path(config.model).resolve())}
    model.eval()
    if config.data == "world":
        n_facts = world.config.n_facts
        if config.n_edits > n_facts:
            raise _bad("n_edits", config.n_edits, f"the world has {n_facts} facts (at most {n_facts} edits)")
        requests = world.edit_requests(config.n_edits, seed=config.edit_seed)
        tfidf = TfidfStats.fit(texts)
    else:
        requests, tfidf = inputs.requests, inputs.tfidf
    if inputs.corpus_texts is not None:
        texts = inputs.corpus_texts
        resolved["stats_corpus"] = str(Path(config.stats_corpus).resolve())
    if config.tfidf is not None:
        resolved["tfidf"] = str(Path(config.tfidf).resolve())
    capability = {}
    if world is not None:  # the tiny model's general capability: the world's language, apart from its facts
        from llm_experiments.evaluate.world_capability import world_capability

        capability = world_capability(world)
    return LoadedTarget(model, tokenizer, requests, texts, tfidf, resolved, capability)


def _percent(summary: dict) -> dict:
    """``{metric: 100 x mean}`` and ``{metric_sem: 100 x sem}`` for the table's metrics present."""
    out = {}
    for name in TABLE_METRICS:
        if name in summary:
            out[name] = 100.0 * summary[name]["mean"]
            sem = summary[name]["sem"]
            out[f"{name}_sem"] = None if sem is None else 100.0 * sem
    return out


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def run_edit(config: EditRunConfig, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Make the run described by ``config`` into ``out_dir`` (new or empty) and return its summary."""
    from tqdm.auto import tqdm

    from llm_experiments.edit.session import EditingSession
    from llm_experiments.edit.statistics import (
        StatsCacheMismatchError,
        StatsFormatError,
        TextCorpus,
        get_second_moments,
    )
    from llm_experiments.evaluate.protocols import EvaluationConfig, StreamConfig, StreamRecorder, evaluate_after_stream

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EditRunError(f"{out}: the output directory is a file")
    if out.exists() and any(out.iterdir()):
        raise EditRunError(f"{out}: output directory exists and is not empty (results are never overwritten)")
    t_start = time.perf_counter()
    inputs = read_inputs(config)  # a bad file is refused before a model is trained or loaded
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    target = load_target(config, progress=progress, inputs=inputs)
    t_loaded = time.perf_counter()
    editing = config.editing_config()
    n_layers = target.model.config.num_hidden_layers
    if max(config.layers) >= n_layers:
        raise _bad("layers", config.layers, f"the model has {n_layers} layers (0 to {n_layers - 1})")
    _write_json(out / "config.json", {"run": config.to_dict(), "resolved": target.resolved,
                                      "editing": editing.to_dict(), "n_requests": len(target.requests)})

    moments = None
    if editing.needs_statistics:
        corpus_id = "world training texts" if config.stats_corpus is None else Path(config.stats_corpus).name
        corpus = TextCorpus(texts=target.corpus_texts, corpus_id=corpus_id)
        # keyed by content (weights fingerprint, layer, corpus, tokens): one folder for every model
        stats_dir = Path(config.cache_dir).expanduser() / "stats"
        try:
            moments = get_second_moments(target.model, target.tokenizer, config.layers, corpus, stats_dir,
                                         max_tokens=config.stats_tokens, progress=progress)
        except (StatsCacheMismatchError, StatsFormatError, OSError) as exc:
            raise _bad("cache_dir", config.cache_dir, f"the statistics cache cannot be used ({exc}); delete the "
                       "file named, or give another --cache") from exc
    t_stats = time.perf_counter()

    evaluation = EvaluationConfig(dataset=config.dataset, generation=config.generation,
                                  max_length=config.max_length, generation_every=config.generation_every)
    run_config = {"run": config.to_dict(), "editing": editing.to_dict()}
    recorder = None
    eval_seconds = 0.0
    if config.along_stream:
        stream = StreamConfig(edit_batch_size=config.batch_size,
                              checkpoint_every=config.checkpoint_every or config.n_edits * config.batch_size,
                              cohort_batches=config.cohort_batches, edited_every=config.along_every)
        along_eval = dataclasses.replace(evaluation, generation=config.along_generation)
        recorder = StreamRecorder(out / "along_stream", target.requests, along_eval, stream, tfidf=target.tfidf,
                                  capability=target.capability, run_config=run_config)
        t0 = time.perf_counter()
        recorder.checkpoint(target.model, target.tokenizer, 0)  # the cohorts before any edit
        eval_seconds += time.perf_counter() - t0
        cohort_sizes = {min(s, len(target.requests)) for s in stream.cohort_sizes().values()}

    if recorder is not None:  # its first checkpoint measured the model before any edit
        capability_before = recorder.history[0]["capability"]
    else:
        t0 = time.perf_counter()
        capability_before = {name: fn(target.model, target.tokenizer) for name, fn in target.capability.items()}
        eval_seconds += time.perf_counter() - t0
    session = EditingSession(target.model, target.tokenizer, editing, second_moments=moments)
    bar = tqdm(total=len(target.requests), desc=f"edit {config.editor}", unit="edit", disable=not progress)
    with (out / "metrics.jsonl").open("w") as metrics:
        for report in session.run(target.requests):
            line = {"batch": report.index, "n_edits": report.position, "seconds": report.seconds,
                    "target_nll_before": report.target_nll_before, "target_nll_after": report.target_nll_after,
                    "layers": [dataclasses.asdict(r) for r in report.layers]}
            metrics.write(json.dumps(line, allow_nan=False) + "\n")
            metrics.flush()
            bar.update(len(report.case_ids))
            bar.set_postfix(nll=f"{report.target_nll_before:.2f}->{report.target_nll_after:.2f}")
            n = report.position
            if recorder is not None and (n in cohort_sizes or n == len(target.requests)
                                         or (config.checkpoint_every and n % config.checkpoint_every == 0)):
                t0 = time.perf_counter()
                recorder.checkpoint(target.model, target.tokenizer, n)
                eval_seconds += time.perf_counter() - t0
    bar.close()
    t_edited = time.perf_counter()
    along = recorder.finish() if recorder is not None else None
    after = evaluate_after_stream(target.model, target.tokenizer, target.requests, evaluation, out / "after_stream",
                                  tfidf=target.tfidf, capability=target.capability, run_config=run_config,
                                  progress=progress)
    t_end = time.perf_counter()
    edit_seconds = t_edited - t_stats - eval_seconds
    summary = {
        "editor": config.editor,
        "model": config.model,
        "n_edits": len(target.requests),
        "batch_size": config.batch_size,
        **_percent(after["edited"]),
        "absent": after["absent"],
        "after_stream": after["edited"],
        "capability": {"before": capability_before, "after": after["capability"]},
        "config": {"run": config.to_dict(), "editing": editing.to_dict(), "resolved": target.resolved},
        "seconds": {"load_or_train": t_loaded - t_start, "statistics": t_stats - t_loaded,
                    "editing": edit_seconds, "along_stream_evaluation": eval_seconds,
                    "after_stream_evaluation": t_end - t_edited, "total": t_end - t_start},
    }
    if along is not None:
        # per cohort: efficacy, generalization, specificity before / at write / final (the full
        # record, every metric and checkpoint, is along_stream/summary.json and metrics.jsonl)
        summary["retention"] = {
            name: {"size": min(int(name.split("_")[1]) * config.batch_size, len(target.requests)),
                   "written_by_checkpoint": r["written_by_checkpoint"], "final_checkpoint": r["final_checkpoint"],
                   **{m: r["metrics"][m] for m in ("efficacy", "generalization", "specificity")
                      if m in r["metrics"]}}
            for name, r in along["retention"].items()}
    _write_json(out / "summary.json", summary)
    return summary


__all__ = ["EDITOR_NAMES", "TABLE_METRICS", "EditRunConfig", "EditRunError", "RunInputs", "load_target", "read_inputs",
           "run_edit", "with_bos"]
