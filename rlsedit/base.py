"""The interface every editor shares, so simulations and LLM runs can swap editors by name.

An editor holds W (d_k, d_v) and takes batches of edits with ``update(K, V)`` in the row
convention V ~ K W. Subclasses declare their scalar hyperparameters (``_params``) and their tensor
state (``_buffers``); this class does the validation, the bookkeeping and ``state_dict``.

An editor keeps a copy of W0 unless it is built with ``keep_W0=False``: then it reads W0 only while
it is constructed and keeps its fingerprint (:func:`weight_fingerprint`), which is enough to check
a checkpoint against the layer it is resumed on. The recursion itself never reads W0 again; the
options that do (RLSEditor's ``refactor_every``, FT's ``norm_bound``) refuse ``keep_W0=False``.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ._validate import as_batch, as_tensor, check_finite_tensor, resolve_dtype
from .errors import DTypeError, ParameterError, RLSEditError, ShapeError, W0NotKeptError

# Version 1 holds either the tensor "W0" or, for an editor built with keep_W0=False, the string
# "W0_fingerprint" in its place. States with W0 are unchanged from before keep_W0 existed; a reader
# that predates it refuses a fingerprint-only state as missing 'W0', so the version stayed 1.
# Version 2 adds RLSEditor's ledger of applied batches (rlsedit.ledger). A version-1 reader would
# ignore the ledger's entries and retract unverified, so the version was raised: it refuses a
# version-2 state. Version-1 states are still read (RLSEditor: see RLSEditor.from_state_dict);
# the other editors' states are the same in both versions.
STATE_FORMAT_VERSION = 2
READABLE_STATE_VERSIONS = (1, 2)
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


def weight_fingerprint(W: torch.Tensor) -> str:
    """sha256 over W's dtype, shape and bytes (row-major, whatever W's strides): ``"sha256:<hex>"``.

    What an editor built with ``keep_W0=False`` keeps of W0: two weights have the same fingerprint
    exactly when they are equal bit for bit (barring a sha256 collision).
    """
    t = W.detach().contiguous().cpu()  # no copy for a contiguous tensor on the CPU
    h = hashlib.sha256(json.dumps([str(t.dtype).removeprefix("torch."), list(t.shape)]).encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # hashes the buffer in place
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class UpdateRecord:
    """What one ``update`` (or ``retract``) did to its batch.

    Attributes:
        batch: index of the batch in the stream (0-based; for a retraction, the batch count after it).
        rows: u, the number of key/value rows in the batch.
        residual_before: ||V - K W||_F before the call.
        residual_after: ||V - K W||_F after the call.
        batch_id: RLSEditor: the id of the batch in the editor's ledger (the one ``update`` gave
            it, also in a retraction's record); pass it to ``retract_by_id``. Unlike ``batch`` it is
            never reused. None for the editors that cannot retract.
    """

    batch: int
    rows: int
    residual_before: float
    residual_after: float
    batch_id: int | None = None


class StateDictError(RLSEditError, ValueError):
    """A state dict does not describe a valid editor of this class."""


class Editor(ABC):
    """Base class: holds W0 (or its fingerprint), W and the stream counters; subclasses implement
    ``_update``.

    A subclass's ``__init__`` calls ``super().__init__``, reads ``self._W0`` as it needs, calls
    :meth:`_check_keep_W0` once its options are set (before any expensive work) and
    :meth:`_release_W0` last.
    """

    name: ClassVar[str]
    _params: ClassVar[tuple[str, ...]] = ()
    _buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, W0: Any, *, dtype: Any = None, keep_W0: bool = True) -> None:
        if not isinstance(keep_W0, bool):
            raise ParameterError(f"keep_W0 must be True or False, got {keep_W0!r}")
        W0 = as_tensor(W0, "W0", dtype=resolve_dtype(dtype))
        if W0.shape[0] == 0 or W0.shape[1] == 0:
            raise ShapeError(f"W0 must have d_k >= 1 and d_v >= 1, got shape {tuple(W0.shape)}")
        self._keep_W0 = keep_W0
        # Without keep_W0 the caller's W0 is only read, and only until _release_W0().
        self._W0: torch.Tensor | None = W0.clone() if keep_W0 else W0
        self._W0_fingerprint: str | None = None
        self._W = W0.clone()
        self.n_rows = 0
        self.n_batches = 0

    # -- read-only views -------------------------------------------------------------------
    @property
    def W(self) -> torch.Tensor:
        """Current weight (d_k, d_v). The editor's own tensor: clone it before modifying it."""
        return self._W

    @property
    def W0(self) -> torch.Tensor:
        """Pre-trained weight (d_k, d_v) the editor started from.

        Raises :class:`~rlsedit.errors.W0NotKeptError` if the editor was built with
        ``keep_W0=False``.
        """
        if self._W0 is None:
            raise W0NotKeptError(
                f"this {type(self).__name__} was built with keep_W0=False: it dropped W0 after "
                f"construction and keeps only its fingerprint ({self._W0_fingerprint}). Pass W0 from "
                "the model's layer where it is needed (e.g. rlsedit.objective(W0, ...), "
                "load(path, W0=...)), or build the editor with keep_W0=True"
            )
        return self._W0

    @property
    def keep_W0(self) -> bool:
        """Whether the editor holds a copy of W0 (False: only its fingerprint)."""
        return self._keep_W0

    @property
    def W0_fingerprint(self) -> str:
        """:func:`weight_fingerprint` of W0 (computed on demand when the editor keeps W0)."""
        if self._W0_fingerprint is not None:
            return self._W0_fingerprint
        return weight_fingerprint(self.W0)

    @property
    def d_k(self) -> int:
        return self._W.shape[0]

    @property
    def d_v(self) -> int:
        return self._W.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self._W.dtype

    @property
    def device(self) -> torch.device:
        return self._W.device

    def __repr__(self) -> str:
        params = ", ".join(f"{p}={getattr(self, p)!r}" for p in self._params)
        kept = "" if self._keep_W0 else ", keep_W0=False"
        return (f"{type(self).__name__}(d_k={self.d_k}, d_v={self.d_v}, {params}, "
                f"dtype={self.dtype}{kept}, n_batches={self.n_batches}, n_rows={self.n_rows})")

    # -- editing ---------------------------------------------------------------------------
    def _batch(self, K: Any, V: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return as_batch(K, V, d_k=self.d_k, d_v=self.d_v, dtype=self.dtype, device=self.device)

    def update(self, K: Any, V: Any) -> UpdateRecord:
        """Apply one batch: keys K (u, d_k), values V (u, d_v). Returns an :class:`UpdateRecord`
        (for RLSEditor with the batch's ``batch_id`` in its ledger of applied batches).

        Inputs are validated first and never modified; if the call raises, the editor's state is
        exactly as it was before.
        """
        K, V = self._batch(K, V)
        pending = self._prepare_record(K, V)
        before, after = self._update(K, V)
        batch_id = self._commit_record(pending)
        record = UpdateRecord(self.n_batches, K.shape[0], before, after, batch_id)
        self.n_batches += 1
        self.n_rows += K.shape[0]
        self._after_update(K, V)
        return record

    def _prepare_record(self, K: torch.Tensor, V: torch.Tensor) -> Any:
        """Before the step: whatever recording the batch needs that can fail (RLSEditor: its digest)."""
        return None

    def _commit_record(self, pending: Any) -> int | None:
        """After the step: record the applied batch (must not fail); returns its id, or None."""
        return None

    def _needs_W0(self) -> str | None:
        """Why this editor reads W0 after construction (so it cannot drop it), or None."""
        return None

    def _check_keep_W0(self) -> None:
        """Refuse ``keep_W0=False`` when the editor's options read W0 after construction."""
        why = self._needs_W0()
        if not self._keep_W0 and why is not None:
            raise ParameterError(
                f"{type(self).__name__} cannot be built with keep_W0=False here: {why}. "
                "Keep W0 (keep_W0=True, the default) or leave that option off"
            )

    def _release_W0(self) -> None:
        """End of construction: with ``keep_W0=False``, keep W0's fingerprint and drop W0."""
        if not self._keep_W0 and self._W0 is not None:
            self._W0_fingerprint = weight_fingerprint(self._W0)
            self._W0 = None

    def _after_update(self, K: torch.Tensor, V: torch.Tensor) -> None:
        """Bookkeeping after a successful ``_update`` (RLSEditor: its periodic re-factorisation)."""

    @abstractmethod
    def _update(self, K: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
        """Apply a validated batch; return (residual before, residual after). Must not half-fail."""

    def retract(self, K: Any, V: Any) -> UpdateRecord:
        """Remove a batch applied before. Only editors whose state allows it implement this."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot retract a batch: its state does not determine the "
            "solution without that batch (only RLSEditor keeps the full cumulative problem)"
        )

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream: tensors (cloned) and plain Python scalars.

        Holds ``W0``, or with ``keep_W0=False`` the string ``W0_fingerprint`` in its place.
        """
        state: dict[str, Any] = {"editor": self.name, "format_version": STATE_FORMAT_VERSION}
        if self._W0 is not None:
            state["W0"] = self._W0.clone()
        else:
            state["W0_fingerprint"] = self._W0_fingerprint
        state.update({"W": self._W.clone(), "n_rows": self.n_rows, "n_batches": self.n_batches})
        for p in self._params:
            state[p] = getattr(self, p)
        for b in self._buffers:
            state[b] = getattr(self, "_" + b).clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Editor:
        """Rebuild an editor from :meth:`state_dict`'s output, exactly (tensors are cloned)."""
        if not isinstance(state, dict):
            raise StateDictError(f"state must be a dict, got {type(state).__name__}")
        if not isinstance(state.get("editor"), str) or state["editor"] != cls.name:
            raise StateDictError(
                f"state was saved by editor {state.get('editor')!r}, not {cls.name!r}"
            )
        version = state.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_STATE_VERSIONS:
            raise StateDictError(
                f"state format version {state.get('format_version')!r} is not one of "
                f"{READABLE_STATE_VERSIONS}, the ones this version of rlsedit reads"
            )
        keeps_W0 = "W0_fingerprint" not in state
        if not keeps_W0 and "W0" in state:
            raise StateDictError(
                "state holds both 'W0' and 'W0_fingerprint'; an editor keeps one of them "
                "(W0, or with keep_W0=False its fingerprint)"
            )
        needed = ("W0" if keeps_W0 else "W0_fingerprint", "W", "n_rows", "n_batches",
                  *cls._params, *cls._buffers)
        missing = [k for k in needed if k not in state]
        if missing:
            raise StateDictError(f"state for {cls.name!r} misses {missing}")
        obj = cls.__new__(cls)
        W = as_tensor(state["W"], "state['W']")
        if keeps_W0:
            W0 = as_tensor(state["W0"], "state['W0']")
            if W.shape != W0.shape or W.dtype != W0.dtype:
                raise StateDictError(
                    f"state['W'] is {tuple(W.shape)} {W.dtype} but state['W0'] is "
                    f"{tuple(W0.shape)} {W0.dtype}"
                )
            obj._W0, obj._W0_fingerprint = W0.clone(), None
        else:
            fingerprint = state["W0_fingerprint"]
            if not (isinstance(fingerprint, str) and _FINGERPRINT.fullmatch(fingerprint)):
                raise StateDictError(
                    f"state['W0_fingerprint'] must be 'sha256:' and 64 hex digits, got {fingerprint!r}"
                )
            obj._W0, obj._W0_fingerprint = None, fingerprint
        which = "W0" if keeps_W0 else "W"
        if W.shape[0] == 0 or W.shape[1] == 0:
            raise StateDictError(f"state[{which!r}] must have d_k >= 1 and d_v >= 1, got shape {tuple(W.shape)}")
        obj._keep_W0, obj._W = keeps_W0, W.clone()
        for counter in ("n_rows", "n_batches"):
            value = state[counter]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StateDictError(f"state[{counter!r}] must be a non-negative int, got {value!r}")
            setattr(obj, counter, value)
        for p in cls._params:
            setattr(obj, p, state[p])
        for b in cls._buffers:
            t = state[b]
            if not isinstance(t, torch.Tensor):
                raise StateDictError(f"state[{b!r}] must be a tensor, got {type(t).__name__}")
            if t.dtype != W.dtype:
                raise DTypeError(f"state[{b!r}] has dtype {t.dtype} but W has {W.dtype}")
            check_finite_tensor(t, f"state[{b!r}]")
            setattr(obj, "_" + b, t.to(W.device).clone())
        obj._check_state()
        why = obj._needs_W0()
        if not keeps_W0 and why is not None:
            raise StateDictError(f"state holds W0's fingerprint but not W0, and {why}")
        return obj

    # -- files ---------------------------------------------------------------------------
    def save(self, path: Any, *, extra: dict[str, Any] | None = None) -> None:
        """Write the editor to a safetensors checkpoint, atomically (see :mod:`rlsedit.checkpoint`).

        ``extra`` is JSON-serialisable metadata stored beside the state (e.g. a stream position).
        """
        from .checkpoint import save_editor

        save_editor(self, path, extra=extra)

    @classmethod
    def load(cls, path: Any, *, shape: tuple[int, int] | None = None, dtype: Any = None,
             W0: Any = None, device: Any = None) -> Editor:
        """Read an editor of this class from :meth:`save`'s file, exactly.

        ``shape`` (d_k, d_v), ``dtype`` and ``W0`` are what the caller expects (the layer being
        resumed): a checkpoint that does not match is refused with a :class:`CheckpointError`
        naming the mismatch, and so is a truncated or corrupted file. ``W0`` is checked against
        the checkpoint's W0, or against its fingerprint if it was saved with ``keep_W0=False``.
        """
        from .checkpoint import load_editor

        return load_editor(path, editor=getattr(cls, "name", None), shape=shape, dtype=dtype, W0=W0,
                           device=device)

    def _check_state(self) -> None:
        """Subclasses check their buffers' shapes after :meth:`from_state_dict`."""

    def _check_square_buffer(self, name: str) -> None:
        t = getattr(self, "_" + name)
        if t.shape != (self.d_k, self.d_k):
            raise StateDictError(
                f"state[{name!r}] has shape {tuple(t.shape)}, expected (d_k, d_k) = "
                f"({self.d_k}, {self.d_k})"
            )
