"""One edit experiment, end to end: model, edit requests, statistics, the stream, evaluation.

:func:`run_edit` is what ``rlsedit edit`` does (:mod:`rlsedit_cli.edit` is its command line):

1. the model (:class:`ModelConfig`): a tiny Llama/Qwen2 trained on a synthetic fact world
   (:mod:`llm_experiments.tiny.training`, cached by its settings and reused), or a local checkpoint;
2. the requests and the statistics corpus (:class:`DataConfig`): ``n_edits`` counterfactual
   requests drawn from the fact world (:meth:`World.edit_requests`), or read from a CounterFact /
   ZsRE / plain request file (:mod:`llm_experiments.data.loaders`); E[k k^T] of the edited layers over
   the world's training texts or a text file, cached (:mod:`llm_experiments.edit.statistics`);
3. the stream (:class:`~llm_experiments.edit.session.EditingConfig`), in batches, through one
   :class:`EditingSession` (every editor keeps its state over the whole stream), checkpointed every
   ``save_every`` batches so that ``rlsedit edit --resume`` continues an interrupted run;
4. the evaluation (:class:`EvaluationPlan`): along the stream when asked (protocol
   ``along_stream``, with early-edit cohorts) and after it (protocol ``after_stream``), see
   :mod:`llm_experiments.evaluate.protocols`.

:class:`ExperimentConfig` holds the four sections (model / data / editing / evaluation) and the
machine's settings; it is written to the run's ``config.json`` and read back by ``--resume``.
:meth:`ExperimentConfig.from_options` builds it from the command's flat options.

Files in the run's directory: ``config.json`` (the resolved config and what it resolved to: model
path, its metadata), ``metrics.jsonl`` (one line per edited batch, :meth:`BatchReport.to_row`),
``checkpoints/`` (the editors' states, :meth:`EditingSession.save_checkpoint`), ``after_stream/`` and
``along_stream/`` (the protocols' own files) and ``summary.json``: ``efficacy``, ``generalization``,
``specificity``, ``fluency``, ``consistency`` in percent as in the paper's table (fluency is 100 x
the entropy in bits), their standard errors, ``absent`` (each table metric the run cannot report,
with the reason: e.g. Consistency for requests without reference texts), the timing, and for a tiny
model its general capability before and after the stream
(:mod:`llm_experiments.evaluate.world_capability`; also at every along-stream checkpoint). Figures
and tables are drawn from these files only (:mod:`llm_experiments.table`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llm_experiments.edit.keys import DEFAULT_CONTEXT_TEMPLATES
from llm_experiments.edit.presets import preset
from llm_experiments.edit.session import EditingConfig
from rlsedit.config import (
    BOOLEAN,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    THREADS,
    Config,
    ConfigError,
    increasing,
    one_of,
)

TINY_MODELS = {"tiny-llama": "llama", "tiny-qwen2": "qwen2"}
EDITOR_NAMES = ("rlsedit", "memit", "alphaedit", "rome", "ft")
TABLE_METRICS = ("efficacy", "generalization", "specificity", "fluency", "consistency")
CONTEXTS = ("bare", "default")
DATASETS = ("counterfact", "zsre", "requests")
DEFAULT_CACHE_DIR = "~/.cache/rlsedit"
_PRIOR_EDITORS = ("rlsedit", "memit", "rome")  # prior lam I + mu n_w E[kk^T]


class EditRunError(ConfigError):
    """A run that cannot be made as configured (the message names the option)."""


# ----------------------------------------------------------------------------------------------
# The configuration, one section per concern
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig(Config):
    """The model to edit.

    Attributes:
        name: ``"tiny-llama"``, ``"tiny-qwen2"`` (trained on a fact world, or reused from the
            cache) or the path of a local checkpoint directory.
        quick: the quick world and model (seconds to train; a smoke test, not an edit target).
        people: people in the tiny model's fact world (5 facts each; 10,000 edits need 2,000).
        hidden, d_ff: the tiny model's hidden size and MLP width (``TrainConfig``'s; a new size
            trains a new model). ``d_ff`` is the dimension of the edit keys.
        world_seed: seed of the fact world (its people, facts and wordings; a new seed trains a new
            model). Tuning and reporting use different world seeds (docs/edit-benchmark.md).
        train_seed: seed of the tiny model's initialisation and batch order (``TrainConfig.seed``).
        device: ``"cpu"`` or a torch device string (tiny models run on the CPU).
        dtype: a checkpoint's dtype (``float32``, ``bfloat16``, ``float16``, ``auto``); None: float32.
    """

    error = EditRunError

    name: str = "tiny-llama"
    quick: bool = False
    people: int = 300
    hidden: int = 128
    d_ff: int = 1024
    world_seed: int = 0
    train_seed: int = 0
    device: str = "cpu"
    dtype: str | None = None

    @property
    def tiny(self) -> bool:
        return self.name in TINY_MODELS

    def validate(self) -> None:
        self.require(("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())), "name")
        self.require(BOOLEAN, "quick")
        self.require(POSITIVE_INT, "people", "hidden", "d_ff")
        self.require(NON_NEGATIVE_INT, "world_seed", "train_seed")
        if self.people < 4:
            raise self.bad("people", "must be >= 4 (neighbourhood prompts need other people)")
        defaults = ModelConfig.__dataclass_fields__
        changed = [n for n in ("hidden", "d_ff", "world_seed", "train_seed") if getattr(self, n) != defaults[n].default]
        if changed and (self.quick or not self.tiny):
            raise self.bad(changed[0], "configures a tiny model trained here; "
                           + ("--quick has its own" if self.quick else "a checkpoint has its own"))
        if self.tiny and not self.quick:
            from llm_experiments.tiny.training import TrainConfig, TrainConfigError

            try:
                TrainConfig(arch=TINY_MODELS[self.name], hidden=self.hidden, d_ff=self.d_ff)
            except TrainConfigError as exc:
                raise self.bad("hidden", str(exc)) from None
        if self.dtype is not None and not self.tiny:
            from llm_experiments.model.loading import DTYPES

            self.require(one_of([*sorted(DTYPES), "auto"]), "dtype")
        elif self.dtype is not None:
            raise self.bad("dtype", "is a checkpoint's option (tiny models are float32)")


@dataclass(frozen=True)
class DataConfig(Config):
    """The edit requests and the statistics corpus.

    Attributes:
        source: ``"world"`` (the tiny model's fact world) or the path of a CounterFact / ZsRE JSON
            file, or of a plain JSON list of requests (``dataset="requests"``).
        dataset: format and metric suite of a file: ``"counterfact"``, ``"zsre"``, or ``"requests"``
            (EditRequest's fields, scored with the CounterFact suite; the world is CounterFact-shaped).
        n_edits: requests in the stream (the first ``n_edits`` of a file).
        edit_seed: seed of the world's request order and counterfactual targets.
        snippets: CounterFact's ``attribute_snippets.json``: the Consistency reference texts.
        tfidf: a folder with MEMIT's ``idf.npy`` and ``tfidf_vocab.json`` (Consistency's TF-IDF as the
            authors used it); None: fitted on the reference texts of the records used.
        stats_corpus: a text file for E[kk^T] (one document per line); None: the world's training
            texts (tiny models only).
        stats_tokens: tokens of the statistics corpus used.
    """

    error = EditRunError

    source: str = "world"
    dataset: str = "counterfact"
    n_edits: int = 100
    edit_seed: int = 0
    snippets: str | None = None
    tfidf: str | None = None
    stats_corpus: str | None = None
    stats_tokens: int = 100_000

    def validate(self) -> None:
        self.require(one_of(DATASETS), "dataset")
        self.require(POSITIVE_INT, "n_edits", "stats_tokens")
        self.require(NON_NEGATIVE_INT, "edit_seed")
        file = self.source != "world"
        if self.snippets is not None and not (file and self.dataset == "counterfact"):
            raise self.bad("snippets", "must go with a CounterFact file (attribute snippets)")
        if self.tfidf is not None and not (file and self.dataset == "counterfact"):
            raise self.bad("tfidf", "must go with a CounterFact file (Consistency's TF-IDF statistics)")
        if not file and self.dataset != "counterfact":
            raise self.bad("dataset", "must be 'counterfact' for the fact world (it is CounterFact-shaped)")


@dataclass(frozen=True)
class EvaluationPlan(Config):
    """What is evaluated, and when.

    Attributes:
        after_stream: evaluate the edited requests after the stream (protocol ``after_stream``);
            False: the run records the editing steps only (target NLL, residuals, time).
        generation: also Fluency and Consistency after the stream (CounterFact only).
        max_length: generated length in tokens, prompt included (MEMIT: 100).
        generation_every: Fluency and Consistency on every k-th edit of the stream (1: every edit).
        along_stream: also protocol ``along_stream`` (checkpoints, early-edit cohorts).
        along_generation: also Fluency and Consistency at the along-stream checkpoints (slow).
        checkpoint_every: edits between along-stream checkpoints (0: only at cohorts and the end).
        along_every: at each along-stream checkpoint, evaluate every k-th of the edits made so far
            (1: all; cohorts are always evaluated in full).
        cohort_batches: cohort k = the edits of the first k batches.
    """

    error = EditRunError

    after_stream: bool = True
    generation: bool = True
    max_length: int = 40
    generation_every: int = 1
    along_stream: bool = False
    along_generation: bool = False
    checkpoint_every: int = 0
    along_every: int = 1
    cohort_batches: tuple[int, ...] = (1,)

    def validate(self) -> None:
        self.require(BOOLEAN, "after_stream", "generation", "along_stream", "along_generation")
        self.require(POSITIVE_INT, "max_length", "generation_every", "along_every")
        self.require(NON_NEGATIVE_INT, "checkpoint_every")
        self.require(increasing(1), "cohort_batches")


@dataclass(frozen=True)
class ExperimentConfig(Config):
    """Everything that determines one ``rlsedit edit`` run: four sections and the machine.

    Attributes:
        model, data, editing, evaluation: the sections (:class:`ModelConfig`, :class:`DataConfig`,
            :class:`~llm_experiments.edit.session.EditingConfig` (default: the tiny preset,
            ``llm_experiments.edit.presets.preset("tiny")``), :class:`EvaluationPlan`).
        cache_dir: where tiny models and statistics are cached.
        threads: torch CPU threads.
        save_every: batches between checkpoints of the editors' states (and after the last batch),
            from which ``--resume`` continues; 0: none.
    """

    error = EditRunError

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    editing: EditingConfig = field(default_factory=lambda: preset("tiny"))
    evaluation: EvaluationPlan = field(default_factory=EvaluationPlan)
    cache_dir: str = DEFAULT_CACHE_DIR
    threads: int = 1
    save_every: int = 10

    def validate(self) -> None:
        for name, cls in (("model", ModelConfig), ("data", DataConfig), ("editing", EditingConfig),
                          ("evaluation", EvaluationPlan)):
            if not isinstance(getattr(self, name), cls):
                raise self.bad(name, f"must be a {cls.__name__}")
        self.require(THREADS, "threads")
        self.require(NON_NEGATIVE_INT, "save_every")
        model, data, editing, evaluation = self.model, self.data, self.editing, self.evaluation
        if data.source == "world" and not model.tiny:
            raise self.bad("data", "the fact world (data.source='world') goes with a tiny model (tiny-llama, "
                           "tiny-qwen2); give a CounterFact/ZsRE file for a checkpoint")
        if not model.tiny and data.stats_corpus is None and editing.needs_statistics:
            raise self.bad("data", "a checkpoint needs a text file for E[kk^T] (data.stats_corpus, --stats-corpus)")
        if evaluation.checkpoint_every % editing.batch_size:
            raise self.bad("evaluation", f"evaluation.checkpoint_every={evaluation.checkpoint_every} must be a "
                           f"multiple of editing.batch_size ({editing.batch_size})")
        if (evaluation.generation or evaluation.along_generation) and data.dataset == "zsre" \
                and (evaluation.after_stream or evaluation.along_stream):
            raise self.bad("evaluation", "generation (Fluency and Consistency) is defined for CounterFact only")
        options = editing.editor_options
        if editing.editor in _PRIOR_EDITORS and options.get("lam", 0) == 0 and options.get("mu", 0) == 0:
            raise self.bad("editing", "lam and mu are both 0: the prior (lam I + mu n_w E[kk^T]) is singular")

    # -- the command's flat options ----------------------------------------------------------------
    @classmethod
    def from_options(cls, base: ExperimentConfig | None = None, *, preset_name: str | None = None,
                     **options: Any) -> ExperimentConfig:
        """The config of ``rlsedit edit``'s options (their names, e.g. ``n_edits=600, lam=1e-3``).

        Starts from ``base`` (default: the tiny defaults), replaces its editing section by the
        preset ``preset_name`` ("tiny", "llama3-8b", "qwen2.5-7b") for ``options["editor"]`` when
        given, then applies every option that is not None. Editor options (``lam``, ``mu``, ``l2``,
        ``threshold``, ``ft_steps``, ``ft_lr``, ``ft_norm_bound``) are checked whatever the editor
        and set where the editor takes them. A bad option raises :class:`EditRunError` naming it.
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise EditRunError(f"unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
        given = {k: v for k, v in options.items() if v is not None}
        for name, value in given.items():
            check = _OPTION_CHECKS.get(name)
            if check is not None and not check[1](value):
                raise EditRunError(f"{name}={value!r}: must be {check[0]}")
        config = base or cls()
        try:
            editor = given.get("editor", config.editing.editor)
            if preset_name is not None:
                editing = preset(preset_name, editor)
            elif editor != config.editing.editor:  # keep the options both editors take (rlsedit -> memit: lam, mu)
                defaults = preset("tiny", editor).editor_options
                kept = {k: config.editing.editor_options.get(k, v) for k, v in defaults.items()}
                editing = config.editing.replace(editor=editor, editor_options=kept)
            else:
                editing = config.editing
            sections = {name: getattr(config, name).to_dict() for name in ("model", "data", "evaluation")}
            sections["editing"] = editing.to_dict()
            top = {"cache_dir": config.cache_dir, "threads": config.threads, "save_every": config.save_every}
            editor_options = dict(sections["editing"]["editor_options"])
            takes = set(preset("tiny", editor).editor_options)
            for name, value in given.items():
                target = OPTIONS[name]
                if name == "context":
                    sections["editing"]["context_templates"] = ["{}"] if value == "bare" \
                        else list(DEFAULT_CONTEXT_TEMPLATES)
                elif target[0] == "editor_options":
                    key = target[1]
                    if editor == "ft" and name == "ft_norm_bound":
                        value = value if value > 0 else None
                    if key in takes:
                        editor_options[key] = value
                elif target[0] == "values":
                    sections["editing"]["values"][target[1]] = value
                elif target[0] == "top":
                    top[target[1]] = value
                elif target[0] != "editing" or name != "editor":
                    sections[target[0]][target[1]] = value
            sections["editing"]["editor_options"] = editor_options
            return cls.from_dict({**sections, **top})
        except EditRunError:
            raise
        except (ConfigError, TypeError) as exc:  # a section's own rule: say it as this run's error
            raise EditRunError(str(exc)) from exc


# flat option of `rlsedit edit` -> (section, field)
OPTIONS: dict[str, tuple[str, str]] = {
    "model": ("model", "name"), "quick": ("model", "quick"), "people": ("model", "people"),
    "hidden": ("model", "hidden"), "d_ff": ("model", "d_ff"), "world_seed": ("model", "world_seed"),
    "train_seed": ("model", "train_seed"), "device": ("model", "device"), "dtype": ("model", "dtype"),
    "data": ("data", "source"), "dataset": ("data", "dataset"), "n_edits": ("data", "n_edits"),
    "edit_seed": ("data", "edit_seed"), "snippets": ("data", "snippets"), "tfidf": ("data", "tfidf"),
    "stats_corpus": ("data", "stats_corpus"), "stats_tokens": ("data", "stats_tokens"),
    "editor": ("editing", "editor"), "batch_size": ("editing", "batch_size"), "layers": ("editing", "layers"),
    "fact_token": ("editing", "fact_token"), "n_w": ("editing", "n_w"), "solver_dtype": ("editing", "solver_dtype"),
    "context": ("editing", "context_templates"),
    "lam": ("editor_options", "lam"), "mu": ("editor_options", "mu"), "l2": ("editor_options", "l2"),
    "threshold": ("editor_options", "threshold"), "ft_steps": ("editor_options", "steps"),
    "ft_lr": ("editor_options", "lr"), "ft_norm_bound": ("editor_options", "norm_bound"),
    "value_steps": ("values", "steps"), "value_lr": ("values", "lr"), "kl_factor": ("values", "kl_factor"),
    "clamp_factor": ("values", "clamp_factor"), "value_weight_decay": ("values", "weight_decay"),
    "evaluate": ("evaluation", "after_stream"), "generation": ("evaluation", "generation"),
    "max_length": ("evaluation", "max_length"), "generation_every": ("evaluation", "generation_every"),
    "along_stream": ("evaluation", "along_stream"), "along_generation": ("evaluation", "along_generation"),
    "checkpoint_every": ("evaluation", "checkpoint_every"), "along_every": ("evaluation", "along_every"),
    "cohort_batches": ("evaluation", "cohort_batches"),
    "cache_dir": ("top", "cache_dir"), "threads": ("top", "threads"), "save_every": ("top", "save_every"),
}


def _real(low: float, high: float = math.inf, *, open_low: bool = False, open_high: bool = False):
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        return (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    return ok


# the editor options' ranges, checked whichever editor a run uses (the command takes them all)
_OPTION_CHECKS: dict[str, tuple[str, Any]] = {
    "lam": ("a finite number >= 0", _real(0)), "mu": ("a finite number >= 0", _real(0)),
    "n_w": ("a finite number > 0", _real(0, open_low=True)), "l2": ("a finite number > 0", _real(0, open_low=True)),
    "threshold": ("a finite number > 0", _real(0, open_low=True)),
    "ft_steps": ("a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "ft_lr": ("in (0, 2) (relative to 1/||K||_2^2)", _real(0, 2, open_low=True, open_high=True)),
    "ft_norm_bound": ("a finite number >= 0 (0: no bound)", _real(0)),
    "context": (f"one of {CONTEXTS}", lambda v: v in CONTEXTS),
    "editor": (f"one of {EDITOR_NAMES}", lambda v: v in EDITOR_NAMES),
}
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


def tiny_model_dir(config: ExperimentConfig) -> tuple[Path, Any, Any]:
    """The tiny model's cache directory ``cache_dir/tiny-<arch>[-quick]-<digest>``, world and training configs."""
    from llm_experiments.data.world import WorldConfig
    from llm_experiments.tiny.training import QUICK_TRAIN, QUICK_WORLD, TrainConfig, _digest, _identity

    m = config.model
    arch = TINY_MODELS[m.name]
    if m.quick:
        world, train = QUICK_WORLD, QUICK_TRAIN.replace(arch=arch)
    else:
        world = WorldConfig(n_people=m.people, seed=m.world_seed)
        train = TrainConfig(arch=arch, hidden=m.hidden, d_ff=m.d_ff, seed=m.train_seed)
    tag = "-quick" if m.quick else ""
    return Path(config.cache_dir).expanduser() / f"tiny-{arch}{tag}-{_digest(_identity(world, train))}", world, train


@dataclass
class RunInputs:
    """What a run reads from files, read before any model is built (:func:`read_inputs`)."""

    requests: list | None  # None: drawn from the fact world once the tiny model is there
    tfidf: Any
    corpus_texts: list[str] | None  # None: the fact world's training texts


def _bad(name: str, value: Any, why: str) -> EditRunError:
    return EditRunError(f"{name}={value!r}: {why}")


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


def read_inputs(config: ExperimentConfig) -> RunInputs:
    """Read and check the run's files before any model is loaded or trained: the data file and its
    snippets, the statistics corpus and the checkpoint's folder. A bad one raises :class:`EditRunError`
    naming it (a :class:`llm_experiments.data.loaders.DataError`'s message: file, record, field)."""
    from llm_experiments.data.loaders import DataError, load_counterfact, load_requests, load_tfidf, load_zsre
    from llm_experiments.data.tfidf import TfidfStats
    from llm_experiments.model.loading import ModelPathError, check_model_path

    data, evaluation = config.data, config.evaluation
    requests = tfidf = None
    if data.source == "world":
        n_facts = tiny_model_dir(config)[1].n_facts
        if data.n_edits > n_facts:
            raise _bad("n_edits", data.n_edits, f"the world has {n_facts} facts (at most {n_facts} edits)")
    else:
        try:
            if data.dataset == "counterfact":
                requests = load_counterfact(data.source, snippets=data.snippets, limit=data.n_edits)
            elif data.dataset == "zsre":
                requests = load_zsre(data.source, limit=data.n_edits)
            else:
                requests = load_requests(data.source, limit=data.n_edits)
        except DataError as exc:
            raise EditRunError(str(exc)) from exc
        if len(requests) < data.n_edits:
            raise _bad("n_edits", data.n_edits, f"{data.source} holds only {len(requests)} records")
        docs = [t for r in requests for t in r.reference_texts]
        wants = (evaluation.generation and evaluation.after_stream) or \
            (evaluation.along_generation and evaluation.along_stream)
        if data.tfidf is not None:
            folder = Path(data.tfidf)
            if not folder.is_dir():
                raise _bad("tfidf", data.tfidf, "not a folder (it should hold idf.npy and tfidf_vocab.json)")
            try:
                tfidf = load_tfidf(folder / "idf.npy", folder / "tfidf_vocab.json")
            except DataError as exc:
                raise _bad("tfidf", data.tfidf, str(exc)) from exc
        elif wants and docs:
            tfidf = TfidfStats.fit(docs)
        # without reference texts (a CounterFact file without --snippets, MQuAKE, ...) Fluency is still
        # measured and Consistency is reported absent with the reason (summary.json's "absent")
    texts = None if data.stats_corpus is None else _read_corpus(data.stats_corpus)
    if not config.model.tiny:
        try:
            check_model_path(config.model.name)
        except ModelPathError as exc:
            raise EditRunError(str(exc)) from exc
    return RunInputs(requests, tfidf, texts)


def load_target(config: ExperimentConfig, *, progress: bool = True, inputs: RunInputs | None = None) -> LoadedTarget:
    """Train or reuse the tiny model (or load the checkpoint), and draw or read the requests.

    ``inputs``: the run's files as :func:`read_inputs` returned them (read here when None)."""
    from llm_experiments.data.tfidf import TfidfStats

    inputs = read_inputs(config) if inputs is None else inputs
    m, data = config.model, config.data
    if m.tiny:
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

        model, tokenizer = load_model(m.name, device=m.device, dtype=m.dtype)
        world, texts = None, None
        resolved = {"model_path": str(Path(m.name).resolve())}
    model.eval()
    if data.source == "world":
        n_facts = world.config.n_facts
        if data.n_edits > n_facts:
            raise _bad("n_edits", data.n_edits, f"the world has {n_facts} facts (at most {n_facts} edits)")
        requests = world.edit_requests(data.n_edits, seed=data.edit_seed)
        tfidf = TfidfStats.fit(texts)
    else:
        requests, tfidf = inputs.requests, inputs.tfidf
    if inputs.corpus_texts is not None:
        texts = inputs.corpus_texts
        resolved["stats_corpus"] = str(Path(data.stats_corpus).resolve())
    if data.tfidf is not None:
        resolved["tfidf"] = str(Path(data.tfidf).resolve())
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


def read_run_config(out_dir: str | Path) -> ExperimentConfig:
    """The config an earlier run wrote to ``out_dir/config.json`` (what ``--resume`` continues)."""
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise EditRunError(f"{out_dir}: no config.json, so no run to resume there")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EditRunError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(doc, dict) or "config" not in doc:
        raise EditRunError(f"{path}: not written by `rlsedit edit` (no 'config' section)")
    return ExperimentConfig.from_dict(doc["config"])


def _kept_lines(path: Path, n_edits: int) -> list[dict]:
    """The lines of a ``metrics.jsonl`` up to ``n_edits`` edits (those a resumed run keeps)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["n_edits"] <= n_edits]


def _check_out_dir(config: ExperimentConfig, out: Path, resume: bool) -> None:
    """A new or empty folder; with ``resume``, the folder of an interrupted run of this config."""
    if out.exists() and not out.is_dir():
        raise EditRunError(f"{out}: the output directory is a file")
    if resume:
        saved = read_run_config(out)
        if saved != config:
            diffs = [name for name in ("model", "data", "editing", "evaluation", "cache_dir", "save_every")
                     if getattr(saved, name) != getattr(config, name)]
            raise EditRunError(f"{out}: the run there was made with another config (it differs in {diffs})")
        if not (out / "checkpoints" / "LATEST").is_file():
            raise EditRunError(f"{out}: the run there wrote no checkpoint to resume from (save_every="
                               f"{config.save_every}); start it again in a new folder")
    elif out.exists() and any(out.iterdir()):
        raise EditRunError(f"{out}: output directory exists and is not empty (results are never overwritten; "
                           "--resume continues an interrupted run)")


def _second_moments(config: ExperimentConfig, target: LoadedTarget, progress: bool):
    """E[kk^T] of the edited layers, from the cache (keyed by content) or computed into it."""
    from llm_experiments.edit.statistics import (
        StatsCacheMismatchError,
        StatsFormatError,
        TextCorpus,
        get_second_moments,
    )

    data = config.data
    corpus_id = "world training texts" if data.stats_corpus is None else Path(data.stats_corpus).name
    corpus = TextCorpus(texts=target.corpus_texts, corpus_id=corpus_id)
    # keyed by content (weights fingerprint, layer, corpus, tokens): one folder for every model
    stats_dir = Path(config.cache_dir).expanduser() / "stats"
    try:
        return get_second_moments(target.model, target.tokenizer, config.editing.layers, corpus, stats_dir,
                                  max_tokens=data.stats_tokens, progress=progress)
    except (StatsCacheMismatchError, StatsFormatError, OSError) as exc:
        raise _bad("cache_dir", config.cache_dir, f"the statistics cache cannot be used ({exc}); delete the "
                   "file named, or give another --cache") from exc


class _Evaluation:
    """The run's evaluation: the along-stream record (when asked) and the time spent evaluating."""

    def __init__(self, config: ExperimentConfig, target: LoadedTarget, out: Path, *, resume_at: int | None) -> None:
        from llm_experiments.evaluate.protocols import AlongStreamConfig, EvaluationConfig, StreamRecorder

        editing, evaluation, data = config.editing, config.evaluation, config.data
        self.target, self.plan, self.seconds = target, evaluation, 0.0
        self.run_config = {"config": config.to_dict()}
        self.per_request = EvaluationConfig(dataset="zsre" if data.dataset == "zsre" else "counterfact",
                                            generation=evaluation.generation, max_length=evaluation.max_length,
                                            generation_every=evaluation.generation_every)
        self.recorder = None
        self.n = len(target.requests)
        if evaluation.along_stream:
            stream = AlongStreamConfig(
                edit_batch_size=editing.batch_size,
                checkpoint_every=evaluation.checkpoint_every or data.n_edits * editing.batch_size,
                cohort_batches=evaluation.cohort_batches, edited_every=evaluation.along_every)
            self.recorder = StreamRecorder(
                out / "along_stream", target.requests, self.per_request.replace(generation=evaluation.along_generation),
                stream, tfidf=target.tfidf, capability=target.capability, run_config=self.run_config,
                resume_at=resume_at)
            self.cohort_sizes = {min(s, self.n) for s in stream.cohort_sizes().values()}

    def due(self, n_edits: int) -> bool:
        """Whether the along-stream record has a checkpoint after ``n_edits`` edits."""
        every = self.plan.checkpoint_every
        return self.recorder is not None and (n_edits in self.cohort_sizes or n_edits == self.n
                                              or bool(every and n_edits % every == 0))

    def _timed(self, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds += time.perf_counter() - t0

    def checkpoint(self, model, n_edits: int) -> None:
        self._timed(lambda: self.recorder.checkpoint(model, self.target.tokenizer, n_edits))

    def start(self, session, position: int) -> dict:
        """The checkpoints due before the stream goes on (the cohorts before any edit, and a resumed run's
        checkpoint that was lost), and the capability before any edit, which it returns."""
        target = self.target
        if self.recorder is not None:
            if self.recorder.last_n_edits is None:  # a resumed run: measured on the original weights
                if session is None:
                    self.checkpoint(target.model, 0)
                else:
                    with session.original_weights() as model:
                        self.checkpoint(model, 0)
            if position and self.due(position) and self.recorder.last_n_edits < position:
                self.checkpoint(target.model, position)
            return self.recorder.history[0]["capability"]  # measured on the model before any edit

        def measure(model) -> dict:
            return {name: fn(model, target.tokenizer) for name, fn in target.capability.items()}

        if session is None:
            return self._timed(lambda: measure(target.model))
        with session.original_weights() as model:  # resumed without an along-stream record
            return self._timed(lambda: measure(model))

    def after_stream(self, out: Path, progress: bool) -> dict | None:
        from llm_experiments.evaluate.protocols import evaluate_after_stream

        if not self.plan.after_stream:
            return None
        after_dir = out / "after_stream"
        if after_dir.exists():  # a resumed run that had reached its final evaluation: do it again
            import shutil

            shutil.rmtree(after_dir)
        t = self.target
        return evaluate_after_stream(t.model, t.tokenizer, t.requests, self.per_request, after_dir, tfidf=t.tfidf,
                                     capability=t.capability, run_config=self.run_config, progress=progress)


def _edit_stream(config: ExperimentConfig, session, evaluation: _Evaluation, out: Path, position: int,
                 progress: bool) -> None:
    """Edit the stream from ``position`` on, one metrics row per batch, the along-stream checkpoints due."""
    from tqdm.auto import tqdm

    target = evaluation.target
    metrics_path = out / "metrics.jsonl"
    kept = _kept_lines(metrics_path, position)
    bar = tqdm(total=len(target.requests), initial=position, desc=f"edit {config.editing.editor}", unit="edit",
               disable=not progress)
    with metrics_path.open("w") as metrics:
        for row in kept:
            metrics.write(json.dumps(row, allow_nan=False) + "\n")
        for report in session.run(target.requests, checkpoint_dir=out / "checkpoints" if config.save_every else None,
                                  checkpoint_every=config.save_every or 1):
            metrics.write(json.dumps(report.to_row(), allow_nan=False) + "\n")
            metrics.flush()
            bar.update(len(report.case_ids))
            bar.set_postfix(nll=f"{report.target_nll_before:.2f}->{report.target_nll_after:.2f}")
            if evaluation.due(report.position):
                evaluation.checkpoint(target.model, report.position)
    bar.close()


def run_edit(config: ExperimentConfig, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> dict:
    """Make the run described by ``config`` into ``out_dir`` and return its summary.

    ``out_dir`` must be new or empty, unless ``resume``: then it holds an interrupted run of the
    same ``config`` (see :func:`read_run_config`), which continues from its last checkpoint (the
    editors' states; the batches after it are edited again, and the along-stream checkpoints after
    it are evaluated again). The result is the one an uninterrupted run gives.
    """
    from llm_experiments.edit.session import EditingSession

    out = Path(out_dir)
    _check_out_dir(config, out, resume)
    t_start = time.perf_counter()
    inputs = read_inputs(config)  # a bad file is refused before a model is trained or loaded
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    target = load_target(config, progress=progress, inputs=inputs)
    t_loaded = time.perf_counter()
    editing = config.editing
    n_layers = target.model.config.num_hidden_layers
    if max(editing.layers) >= n_layers:
        raise _bad("layers", editing.layers, f"the model has {n_layers} layers (0 to {n_layers - 1})")
    if not resume:
        _write_json(out / "config.json", {"config": config.to_dict(), "resolved": target.resolved,
                                          "n_requests": len(target.requests)})
    session = moments = None
    if resume:
        session = EditingSession.resume(target.model, target.tokenizer, out / "checkpoints", config=editing)
    elif editing.needs_statistics:
        moments = _second_moments(config, target, progress)
    t_stats = time.perf_counter()
    position = session.position if session is not None else 0
    evaluation = _Evaluation(config, target, out, resume_at=position if resume else None)
    capability_before = evaluation.start(session, position)
    if session is None:
        session = EditingSession(target.model, target.tokenizer, editing, second_moments=moments)
    _edit_stream(config, session, evaluation, out, position, progress)
    t_edited = time.perf_counter()
    along = evaluation.recorder.finish() if evaluation.recorder is not None else None
    after = evaluation.after_stream(out, progress)
    t_end = time.perf_counter()
    n_requests = len(target.requests)
    summary = {
        "editor": editing.editor,
        "model": config.model.name,
        "n_edits": n_requests,
        "batch_size": editing.batch_size,
        **(_percent(after["edited"]) if after else {}),
        "absent": after["absent"] if after else None,
        "after_stream": after["edited"] if after else None,
        "capability": {"before": capability_before, "after": after["capability"] if after else None},
        "config": {**config.to_dict(), "resolved": target.resolved},
        "resumed_at": position if resume else None,
        "seconds": {"load_or_train": t_loaded - t_start, "statistics": t_stats - t_loaded,
                    "editing": t_edited - t_stats - evaluation.seconds, "along_stream_evaluation": evaluation.seconds,
                    "after_stream_evaluation": t_end - t_edited, "total": t_end - t_start},
    }
    if along is not None:
        # per cohort: efficacy, generalization, specificity before / at write / final (the full
        # record, every metric and checkpoint, is along_stream/summary.json and metrics.jsonl)
        summary["retention"] = {
            name: {"size": min(int(name.split("_")[1]) * editing.batch_size, n_requests),
                   "written_by_checkpoint": r["written_by_checkpoint"], "final_checkpoint": r["final_checkpoint"],
                   **{m: r["metrics"][m] for m in ("efficacy", "generalization", "specificity")
                      if m in r["metrics"]}}
            for name, r in along["retention"].items()}
    _write_json(out / "summary.json", summary)
    return summary


__all__ = ["EDITOR_NAMES", "TABLE_METRICS", "DataConfig", "EditRunError", "EvaluationPlan", "ExperimentConfig",
           "ModelConfig", "RunInputs", "load_target", "read_inputs", "read_run_config", "run_edit", "with_bos"]
