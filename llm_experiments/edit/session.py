"""Edit a model with a stream of :class:`EditRequest` batches, one solver editor per edited layer.

For each batch (MEMIT's multi-layer procedure, docs/method.md section 6):

1. a target z (d_v) per request at the output of the last edited layer (:mod:`.values`);
2. for each edited layer i = 0..L-1 in increasing depth, on the model as edited so far:
   keys K (u, d_k) at the fact token (:mod:`.keys`), the residual share
   R = (z - h_now) / (L - i) with h_now the last edited layer's current output, values
   V = K W_i + R, then ``editor_i.update(K, V)`` and the editor's W written into the model.

Every editor is built once, from the unedited weight, and carries its state over the whole stream
(RLSEdit's C_t above all; the authors' released driver rebuilt it each batch). The solver math is
all in :mod:`rlsedit`; this module only moves tensors between the model and the editors.

The anchor for editors that take one: ``anchor_gram = n_w * E[k k^T]`` for ``rlsedit``, ``memit``
and ``rome`` (their ``mu`` weighs it); ``alphaedit`` gets ``E[k k^T]`` itself, because its
``threshold`` is on the eigenvalues of E[k k^T] as in AlphaEdit's code (``nullspace_threshold``).

Checkpoints (:meth:`EditingSession.save_checkpoint`) hold the edited weights, every editor's state
and the stream position; :meth:`EditingSession.resume` continues exactly where the stream stopped.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

import rlsedit
from llm_experiments.data.requests import EditRequest
from llm_experiments.edit.keys import DEFAULT_CONTEXT_TEMPLATES, check_templates, compute_keys
from llm_experiments.edit.statistics import SecondMoment
from llm_experiments.edit.values import ValueConfig, hidden_at_fact, optimize_targets, spread_residual
from llm_experiments.model.loading import weights_fingerprint
from llm_experiments.model.sites import read_weight, restore_weights, site_for, snapshot_weights, write_weight
from llm_experiments.model.tokens import FACT_TOKENS, PromptError, encode_prompt, encode_target
from rlsedit.checkpoint import atomic_write, load_checkpoint, save_editor
from rlsedit.config import POSITIVE, POSITIVE_INT, Config, increasing, one_of
from rlsedit.errors import CheckpointError

CHECKPOINT_FORMAT = "rlsedit-stream-v2"
_SESSION_SET = ("W0", "anchor_gram", "anchor_keys", "anchor_values", "anchor_cross", "dtype")
_TAKES_ANCHOR = ("rlsedit", "memit", "rome", "alphaedit")


class SessionError(RuntimeError):
    """The session cannot do what was asked (closed, wrong model, missing statistics, ...)."""


def _editor_options(name: str) -> set[str]:
    params = inspect.signature(rlsedit.EDITORS[name].__init__).parameters
    return {p for p in params if p != "self"} - set(_SESSION_SET)


@dataclass(frozen=True)
class EditingConfig(Config):
    """Everything that determines an editing stream (validated on construction).

    Attributes:
        editor: one of ``rlsedit.EDITORS`` ("rlsedit", "memit", "alphaedit", "rome", "ft").
        layers: edited layers, strictly increasing (the last one is where targets are optimised).
        batch_size: requests per batch (the authors' 100).
        fact_token: "subject_last" or "last" (:mod:`.keys`).
        context_templates: fixed prefixes for keys and targets, each with one ``{}``.
        values: the target optimisation's settings (:class:`ValueConfig`).
        editor_options: the editor's own options (``lam``, ``mu``, ``l2``, ``threshold``, ``steps``, ...);
            an option the editor does not take is refused here, not ignored.
        n_w: the anchor Gram is ``n_w * E[k k^T]`` (the authors' 15000).
        solver_dtype: "float64" or "float32", the editors' state dtype.
    """

    editor: str = "rlsedit"
    layers: tuple[int, ...] = (1,)
    batch_size: int = 100
    fact_token: str = "subject_last"
    context_templates: tuple[str, ...] = DEFAULT_CONTEXT_TEMPLATES
    values: ValueConfig = field(default_factory=ValueConfig)
    editor_options: Mapping[str, Any] = field(default_factory=dict)
    n_w: float = 15000.0
    solver_dtype: str = "float64"

    def validate(self) -> None:
        self.require(one_of(sorted(rlsedit.EDITORS)), "editor")
        self.require(increasing(0), "layers")
        self.require(POSITIVE_INT, "batch_size")
        self.require(one_of(FACT_TOKENS), "fact_token")
        object.__setattr__(self, "context_templates", check_templates(self.context_templates))
        if not isinstance(self.values, ValueConfig):
            raise self.bad("values", "must be a ValueConfig")
        unknown = set(self.editor_options) - _editor_options(self.editor)
        if unknown:
            raise self.bad("editor_options", f"takes no option(s) {sorted(unknown)} for editor {self.editor!r} "
                           f"(it takes {sorted(_editor_options(self.editor))})")
        object.__setattr__(self, "editor_options", MappingProxyType(dict(self.editor_options)))
        self.require(POSITIVE, "n_w")
        self.require(one_of(("float64", "float32")), "solver_dtype")

    @property
    def needs_statistics(self) -> bool:
        """Whether the editor uses E[k k^T] (AlphaEdit always; the others when mu > 0)."""
        if self.editor == "alphaedit":
            return True
        return self.editor in _TAKES_ANCHOR and float(self.editor_options.get("mu", 0.0)) > 0

@dataclass(frozen=True)
class LayerReport:
    layer: int
    residual_before: float
    residual_after: float
    weight_change: float  # ||W - W_prev||_F of this batch


@dataclass(frozen=True)
class BatchReport:
    """What one batch did: which requests, the target optimisation, and each layer's write."""

    index: int
    case_ids: tuple
    position: int  # requests edited so far, this batch included
    target_nll_before: float
    target_nll_after: float
    layers: tuple[LayerReport, ...]
    seconds: float

    def to_row(self) -> dict:
        """The batch as one line of a run's ``metrics.jsonl`` (the one row schema of every edit run)."""
        return {"batch": self.index, "n_edits": self.position, "case_ids": list(self.case_ids),
                "seconds": self.seconds, "target_nll_before": self.target_nll_before,
                "target_nll_after": self.target_nll_after,
                "layers": [dataclasses.asdict(layer) for layer in self.layers]}


def _moment_tensor(m: SecondMoment | torch.Tensor) -> torch.Tensor:
    return m.moment() if isinstance(m, SecondMoment) else m


class EditingSession:
    """Edits ``model`` in place with a stream of request batches.

    Args:
        model, tokenizer: a causal LM with a declared edit site (:mod:`llm_experiments.model.sites`) and its tokenizer.
        config: the :class:`EditingConfig`.
        second_moments: E[k k^T] per edited layer (a :class:`SecondMoment` or the (d_k, d_k)
            moment tensor), needed when ``config.needs_statistics``.

    Use ``for report in session.run(requests): ...`` to evaluate between batches, or
    :meth:`edit_batch` directly. :meth:`original_weights` swaps the unedited weights in for a
    ``with`` block; :meth:`revert` puts them back for good and closes the session.
    """

    def __init__(self, model: nn.Module, tokenizer, config: EditingConfig, *,
                 second_moments: Mapping[int, SecondMoment | torch.Tensor] | None = None,
                 _states: Mapping[int, dict] | None = None) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        if model.training:
            raise SessionError("the model is in training mode (dropout would make keys and values random); "
                               "call model.eval() first")
        self.site = site_for(model)
        for layer in config.layers:
            self.site.module(model, layer)  # asserts layer range and layout
        self.original_fingerprint = weights_fingerprint(model)
        self._original = snapshot_weights(model, config.layers, site=self.site)
        self.position = 0
        self.batches_done = 0
        self.edited_case_ids: list[list] = []
        self.closed = False
        self.failed: BaseException | None = None
        if _states is not None:
            self.editors = {layer: rlsedit.editor_from_state_dict(_states[layer]) for layer in config.layers}
            return
        if config.needs_statistics:
            missing = [layer for layer in config.layers if not second_moments or layer not in second_moments]
            if missing:
                raise SessionError(f"editor {config.editor!r} with these options needs E[kk^T] of layers {missing} "
                                   "(second_moments=...; see llm_experiments.edit.statistics)")
        dtype = getattr(torch, config.solver_dtype)
        self.editors = {}
        for layer in config.layers:
            W0 = read_weight(model, layer, site=self.site, dtype=dtype)
            options = dict(config.editor_options)
            if config.editor in _TAKES_ANCHOR and second_moments and layer in second_moments:
                mom = _moment_tensor(second_moments[layer]).to(device=W0.device, dtype=dtype)
                options["anchor_gram"] = mom if config.editor == "alphaedit" else config.n_w * mom
            self.editors[layer] = rlsedit.make_editor(config.editor, W0, dtype=dtype, **options)

    # -- editing -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise SessionError("the session was reverted; start a new one to edit again")
        if self.failed is not None:
            raise SessionError(f"a batch failed half-way ({self.failed!r}); the editors of its first layers had "
                               "already been updated, so resume from the last checkpoint") from self.failed

    def _validate(self, requests: Sequence[EditRequest]) -> None:
        """Tokenise every prompt and target of the batch before anything is written."""
        cfg = self.config
        for r in requests:
            try:
                encode_target(self.tokenizer, r.target_new)
                for c in (*cfg.context_templates, "{}"):
                    encode_prompt(self.tokenizer, c.format(r.prompt), r.subject)
                encode_prompt(self.tokenizer, cfg.values.kl_prompt, r.subject)
            except PromptError as exc:
                raise PromptError(f"request {r.case_id!r}: {exc}") from exc

    def edit_batch(self, requests: Sequence[EditRequest]) -> BatchReport:
        """Edit one batch (any size >= 1) and write the new weights into the model."""
        self._check_open()
        requests = list(requests)
        if not requests or not all(isinstance(r, EditRequest) for r in requests):
            raise ValueError("a batch must be a non-empty sequence of EditRequest")
        self._validate(requests)
        start = time.perf_counter()
        cfg, last = self.config, self.config.layers[-1]
        targets = optimize_targets(self.model, self.tokenizer, self.site, last, requests, cfg.values,
                                   fact_token=cfg.fact_token, context_templates=cfg.context_templates)
        z = torch.stack([t.z for t in targets])  # (u, d_v)
        reports = []
        before = self.edited_weights()
        try:
            self._write_layers(requests, z, reports)
        except BaseException as exc:
            restore_weights(self.model, before, site=self.site)
            if reports or any(e.n_batches > self.batches_done for e in self.editors.values()):
                self.failed = exc
            raise
        self.position += len(requests)
        self.batches_done += 1
        self.edited_case_ids.append([r.case_id for r in requests])
        return BatchReport(self.batches_done - 1, tuple(r.case_id for r in requests), self.position,
                           sum(t.nll_before for t in targets) / len(targets),
                           sum(t.nll_after for t in targets) / len(targets), tuple(reports),
                           time.perf_counter() - start)

    def _write_layers(self, requests: list[EditRequest], z: torch.Tensor, reports: list[LayerReport]) -> None:
        cfg, layers = self.config, self.config.layers
        last = layers[-1]
        for i, layer in enumerate(layers):
            editor = self.editors[layer]
            K = compute_keys(self.model, self.tokenizer, self.site, layer, requests, fact_token=cfg.fact_token,
                             context_templates=cfg.context_templates).to(device=editor.device, dtype=editor.dtype)
            h_now = hidden_at_fact(self.model, self.tokenizer, self.site, last, requests, fact_token=cfg.fact_token)
            R = spread_residual(z.to(h_now.device), h_now, i, len(layers)).to(device=editor.device, dtype=editor.dtype)
            V = K @ editor.W + R  # (u, d_k) @ (d_k, d_v) + (u, d_v)
            W_prev = editor.W.clone()
            record = editor.update(K, V)
            write_weight(self.model, layer, editor.W, site=self.site)
            reports.append(LayerReport(layer, record.residual_before, record.residual_after,
                                       float(torch.linalg.vector_norm(editor.W - W_prev))))

    def run(self, requests: Sequence[EditRequest], *, checkpoint_dir: str | Path | None = None,
            checkpoint_every: int = 1, callback: Callable[[BatchReport], None] | None = None,
            ) -> Iterator[BatchReport]:
        """Edit ``requests[self.position:]`` in batches of ``config.batch_size``, yielding after each.

        ``requests`` is the whole stream: a resumed session skips what it already edited. With
        ``checkpoint_dir``, a checkpoint is written every ``checkpoint_every`` batches and after
        the last one. ``callback(report)`` runs after each batch (before the yield).
        """
        self._check_open()
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1")
        requests = list(requests)
        done = [case_id for batch in self.edited_case_ids for case_id in batch]
        if [r.case_id for r in requests[: self.position]] != done:
            raise SessionError("the stream's first requests are not the ones this session already edited")
        bs = self.config.batch_size
        for start in range(self.position, len(requests), bs):
            report = self.edit_batch(requests[start: start + bs])
            is_last = start + bs >= len(requests)
            if checkpoint_dir is not None and (self.batches_done % checkpoint_every == 0 or is_last):
                self.save_checkpoint(checkpoint_dir)
            if callback is not None:
                callback(report)
            yield report

    # -- reverting -----------------------------------------------------------------------------
    def edited_weights(self) -> dict[int, torch.Tensor]:
        return snapshot_weights(self.model, self.config.layers, site=self.site)

    class _Swap:
        def __init__(self, session: EditingSession) -> None:
            self.session = session

        def __enter__(self):
            self.saved = self.session.edited_weights()
            restore_weights(self.session.model, self.session._original, site=self.session.site)
            return self.session.model

        def __exit__(self, *exc) -> None:
            restore_weights(self.session.model, self.saved, site=self.session.site)

    def original_weights(self) -> EditingSession._Swap:
        """``with session.original_weights(): ...`` runs the body on the unedited weights."""
        self._check_open()
        return EditingSession._Swap(self)

    def revert(self) -> None:
        """Put the original weights back, bit for bit, and close the session."""
        restore_weights(self.model, self._original, site=self.site)
        self.closed = True

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write ``directory/step-<batches>/`` and point ``directory/LATEST`` at it.

        The step directory holds each layer's editor as an rlsedit checkpoint
        (``editor-layer<L>.safetensors``, :func:`rlsedit.save_editor`: checksummed, with its W0 or
        W0's fingerprint), ``stream.json`` (position, edited case ids, the original model's
        fingerprint) and ``config.json``. The edited weights are not stored: they are the editors'
        W, written back on resume. The directory is assembled under a temporary name and renamed;
        ``LATEST`` is replaced atomically last, so a crash leaves the previous checkpoint. Older step
        directories are removed afterwards.
        """
        self._check_open()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"step-{self.batches_done:06d}"
        tmp = directory / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for layer, editor in self.editors.items():
            save_editor(editor, tmp / f"editor-layer{layer}.safetensors",
                        extra={"layer": layer, "position": self.position, "batches_done": self.batches_done})
        stream = {
            "format": CHECKPOINT_FORMAT, "position": self.position, "batches_done": self.batches_done,
            "edited_case_ids": self.edited_case_ids, "original_fingerprint": self.original_fingerprint,
            "model_type": self.site.model_type,
        }
        atomic_write(tmp / "stream.json", json.dumps(stream, indent=1).encode())
        atomic_write(tmp / "config.json", json.dumps(self.config.to_dict(), indent=1).encode())
        final = directory / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write(directory / "LATEST", name.encode())  # fsyncs the directory: the rename above too
        for old in directory.glob("step-*"):
            if old.name != name and old.is_dir():
                shutil.rmtree(old)
        return final

    @classmethod
    def resume(cls, model: nn.Module, tokenizer, directory: str | Path,
               config: EditingConfig | None = None) -> EditingSession:
        """Continue a stream from ``directory``'s latest checkpoint on the *unedited* ``model``.

        The model's weights must be the ones the stream started from (checked by fingerprint, and
        each editor's W0 against the layer); ``config``, when given, must equal the checkpoint's.
        Editors are restored from their checkpoints, so no statistics are needed, and their W is
        written into the model.
        """
        directory = Path(directory)
        latest = directory / "LATEST"
        if not latest.is_file():
            raise CheckpointError(f"{directory} holds no checkpoint (no LATEST file)")
        step = directory / latest.read_text().strip()
        try:
            stream = json.loads((step / "stream.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{step}: stream.json cannot be read ({exc})") from exc
        if stream.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{step}: format {stream.get('format')!r}, this rlsedit reads {CHECKPOINT_FORMAT!r} "
                                  "(a stream checkpointed by an older version cannot be resumed; start it again)")
        saved_cfg = EditingConfig.from_json(step / "config.json")
        if config is not None and config != saved_cfg:
            diffs = [f.name for f in dataclasses.fields(EditingConfig)
                     if getattr(config, f.name) != getattr(saved_cfg, f.name)]
            raise CheckpointError(f"{step}: the checkpoint's config differs in {diffs}")
        fingerprint = weights_fingerprint(model)
        if fingerprint != stream["original_fingerprint"]:
            raise CheckpointError(f"{step}: the model is not the one the stream started from (weights "
                                  "fingerprint differs); resume on the unedited model")
        site = site_for(model)
        dtype = getattr(torch, saved_cfg.solver_dtype)
        states = {}
        for layer in saved_cfg.layers:
            device = site.parameter(model, layer).device
            W0 = read_weight(model, layer, site=site, dtype=dtype)
            editor = load_checkpoint(step / f"editor-layer{layer}.safetensors", editor=saved_cfg.editor,
                                     dtype=dtype, W0=W0, device=device).editor
            states[layer] = editor.state_dict()
        session = cls(model, tokenizer, saved_cfg, _states=states)
        for layer, editor in session.editors.items():
            write_weight(model, layer, editor.W, site=session.site)
        session.position = int(stream["position"])
        session.batches_done = int(stream["batches_done"])
        session.edited_case_ids = [list(b) for b in stream["edited_case_ids"]]
        return session
