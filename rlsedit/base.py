"""The interface every editor shares, so simulations and LLM runs can swap editors by name.

An editor holds W (d_k, d_v) and takes batches of edits with ``update(K, V)`` in the row
convention V ~ K W. Subclasses declare their scalar hyperparameters (``_params``) and their tensor
state (``_buffers``); this class does the validation, the bookkeeping and ``state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ._validate import as_batch, as_tensor, check_finite_tensor, resolve_dtype
from .errors import DTypeError, RLSEditError, ShapeError

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class UpdateRecord:
    """What one ``update`` (or ``retract``) did to its batch.

    Attributes:
        batch: index of the batch in the stream (0-based; for a retraction, the batch count after it).
        rows: u, the number of key/value rows in the batch.
        residual_before: ||V - K W||_F before the call.
        residual_after: ||V - K W||_F after the call.
    """

    batch: int
    rows: int
    residual_before: float
    residual_after: float


class StateDictError(RLSEditError, ValueError):
    """A state dict does not describe a valid editor of this class."""


class Editor(ABC):
    """Base class: holds W0, W and the stream counters; subclasses implement ``_update``."""

    name: ClassVar[str]
    _params: ClassVar[tuple[str, ...]] = ()
    _buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, W0: Any, *, dtype: Any = None) -> None:
        W0 = as_tensor(W0, "W0", dtype=resolve_dtype(dtype))
        if W0.shape[0] == 0 or W0.shape[1] == 0:
            raise ShapeError(f"W0 must have d_k >= 1 and d_v >= 1, got shape {tuple(W0.shape)}")
        self._W0 = W0.clone()
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
        """Pre-trained weight (d_k, d_v) the editor started from."""
        return self._W0

    @property
    def d_k(self) -> int:
        return self._W0.shape[0]

    @property
    def d_v(self) -> int:
        return self._W0.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self._W0.dtype

    @property
    def device(self) -> torch.device:
        return self._W0.device

    def __repr__(self) -> str:
        params = ", ".join(f"{p}={getattr(self, p)!r}" for p in self._params)
        return (f"{type(self).__name__}(d_k={self.d_k}, d_v={self.d_v}, {params}, "
                f"dtype={self.dtype}, n_batches={self.n_batches}, n_rows={self.n_rows})")

    # -- editing ---------------------------------------------------------------------------
    def _batch(self, K: Any, V: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return as_batch(K, V, d_k=self.d_k, d_v=self.d_v, dtype=self.dtype, device=self.device)

    def update(self, K: Any, V: Any) -> UpdateRecord:
        """Apply one batch: keys K (u, d_k), values V (u, d_v). Returns an :class:`UpdateRecord`.

        Inputs are validated first and never modified; if the call raises, the editor's state is
        exactly as it was before.
        """
        K, V = self._batch(K, V)
        before, after = self._update(K, V)
        record = UpdateRecord(self.n_batches, K.shape[0], before, after)
        self.n_batches += 1
        self.n_rows += K.shape[0]
        self._after_update(K, V)
        return record

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
        """Everything needed to continue the stream: tensors (cloned) and plain Python scalars."""
        state: dict[str, Any] = {
            "editor": self.name,
            "format_version": STATE_FORMAT_VERSION,
            "W0": self._W0.clone(),
            "W": self._W.clone(),
            "n_rows": self.n_rows,
            "n_batches": self.n_batches,
        }
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
        if isinstance(version, bool) or not isinstance(version, int) or version != STATE_FORMAT_VERSION:
            raise StateDictError(
                f"state format version {state.get('format_version')!r} is not "
                f"{STATE_FORMAT_VERSION}, the one this version of rlsedit reads"
            )
        needed = ("W0", "W", "n_rows", "n_batches", *cls._params, *cls._buffers)
        missing = [k for k in needed if k not in state]
        if missing:
            raise StateDictError(f"state for {cls.name!r} misses {missing}")
        obj = cls.__new__(cls)
        W0 = as_tensor(state["W0"], "state['W0']")
        W = as_tensor(state["W"], "state['W']")
        if W.shape != W0.shape or W.dtype != W0.dtype:
            raise StateDictError(
                f"state['W'] is {tuple(W.shape)} {W.dtype} but state['W0'] is "
                f"{tuple(W0.shape)} {W0.dtype}"
            )
        if W0.shape[0] == 0 or W0.shape[1] == 0:
            raise StateDictError(f"state['W0'] must have d_k >= 1 and d_v >= 1, got shape {tuple(W0.shape)}")
        obj._W0, obj._W = W0.clone(), W.clone()
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
            if t.dtype != W0.dtype:
                raise DTypeError(f"state[{b!r}] has dtype {t.dtype} but W0 has {W0.dtype}")
            check_finite_tensor(t, f"state[{b!r}]")
            setattr(obj, "_" + b, t.to(W0.device).clone())
        obj._check_state()
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
        naming the mismatch, and so is a truncated or corrupted file.
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
