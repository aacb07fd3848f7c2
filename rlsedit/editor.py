"""RLSEditor: the cumulative soft least-squares editor of docs/method.md, as one stateful object.

The object keeps (C_t, W_t) and calls the pure functions of :mod:`rlsedit.recursion`; it never
re-implements their math. After every ``update`` its W equals :func:`rlsedit.batch_solve` on all
batches so far (up to rounding), whatever the batching and order.

Beside (C_t, W_t) it keeps a ledger of the batches it applied (:mod:`rlsedit.ledger`): a digest per
batch, and with ``keep_batches=True`` the batch itself. ``retract`` and ``replace`` look the batch up
there before any arithmetic, so a batch that was never applied (or was already retracted) is refused
with the state unchanged, instead of moving W to the solution of no stream at all.
"""

from __future__ import annotations

from typing import Any

import torch

from ._validate import as_batch, as_weight, check_finite_tensor
from .anchor import resolve_anchor
from .base import Editor, StateDictError, UpdateRecord
from .errors import AnchorError, NotAppliedError, ParameterError, RefactorizationError
from .health import Health, Information, diagnose
from .ledger import KEPT_KEYS, LEDGER_KEYS, Ledger, LedgerEntry, PendingEntry, batch_digest
from .recursion import initial_inverse, initial_solution, rls_retract, rls_update


def _as_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return value


def _as_period(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be None (off) or a positive int (batches), got {value!r}")
    return value


class RLSEditor(Editor):
    """Soft recursive least-squares editor (RLSEdit).

    Minimises, exactly and online, over the whole stream of batches (K_i, V_i):

        J_t(W) = sum_{i<=t} ||K_i W - V_i||_F^2 + lam ||W - W0||_F^2 + mu ||K0 W - V0||_F^2

    Args:
        W0: pre-trained weight (d_k, d_v); for a torch ``nn.Linear`` this is ``weight.T``.
        lam: weight of the parameter-space regulariser toward W0 (>= 0).
        mu: weight of the anchor (function-space) regulariser (>= 0); needs an anchor when > 0.
        anchor_keys: K0 (n, d_k). With ``anchor_values`` V0 (n, d_v); default V0 = K0 W0.
        anchor_gram: G = K0^T K0 (d_k, d_k) instead of keys, e.g. n_w * E[k k^T] over a corpus.
            With ``anchor_cross`` X = K0^T V0 (d_k, d_v); default X = G W0.
        dtype: torch.float32 or torch.float64; default follows W0. Every batch is cast to it.
        refactor_every: None (default, off) or a number of batches: keep the information matrix
            A_t = lam I + mu G + sum K_i^T K_i (and its right-hand side) in float64 beside the
            recursion, and rebuild C_t and W_t from it after every ``refactor_every``-th batch
            (:meth:`refactorize`; costs a float64 (d_k, d_k) matrix and O(d_k^3) per rebuild).
            C_0 is then also formed from the float64 prior.
        keep_W0: keep a copy of W0 (default). False drops it once the editor is built, saving
            d_k x d_v numbers: the recursion never reads W0. The editor then keeps W0's
            fingerprint (checkpoints are still checked against the layer they are resumed on) and
            its ``W0`` property raises :class:`W0NotKeptError`. Not possible with
            ``refactor_every``, whose rebuild reads W0.
        keep_batches: False (default): the ledger of applied batches keeps a digest of each
            (O(1) memory per batch), and a batch is retracted by its keys and values. True: it also
            keeps a copy of each batch, u (d_k + d_v) numbers in the editor's dtype per batch (in
            memory and in checkpoints), so that ``retract_by_id`` and ``replace_by_id`` need only
            the id that ``update`` returned.

    Raises:
        NoUniqueSolutionError: lam I + mu G is singular (lam = 0 and a singular anchor Gram).
        AnchorError, ShapeError, DTypeError, NonFiniteError: bad arguments, named in the message.
        ParameterError: a bad lam, mu, refactor_every or keep_batches, or keep_W0=False with
            refactor_every.

    Example:
        >>> import torch, rlsedit
        >>> g = torch.Generator().manual_seed(0)
        >>> W0 = torch.randn(8, 3, generator=g, dtype=torch.float64)
        >>> ed = rlsedit.RLSEditor(W0, lam=1.0)
        >>> K, V = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
        >>> rec = ed.update(K, V)
        >>> rec.residual_after < rec.residual_before
        True
        >>> torch.allclose(ed.W, rlsedit.batch_solve(W0, K, V, lam=1.0))
        True
        >>> rec.batch_id, ed.retract(K, V).batch_id   # the ledger knew the batch
        (0, 0)
        >>> torch.allclose(ed.W, W0)
        True
    """

    name = "rlsedit"
    _params = ("lam", "mu", "refactor_every")
    _buffers = ("C",)

    def __init__(
        self,
        W0: Any,
        *,
        lam: float = 0.0,
        mu: float = 0.0,
        anchor_keys: Any = None,
        anchor_values: Any = None,
        anchor_gram: Any = None,
        anchor_cross: Any = None,
        dtype: Any = None,
        refactor_every: int | None = None,
        keep_W0: bool = True,
        keep_batches: bool = False,
    ) -> None:
        super().__init__(W0, dtype=dtype, keep_W0=keep_W0)
        self.lam = as_weight(lam, "lam")
        self.mu = as_weight(mu, "mu")
        self.refactor_every = _as_period(refactor_every, "refactor_every")
        self._ledger = Ledger(keep_batches=_as_flag(keep_batches, "keep_batches"))
        self._check_keep_W0()
        anchor = resolve_anchor(self._W0, anchor_keys=anchor_keys, anchor_values=anchor_values,
                                anchor_gram=anchor_gram, anchor_cross=anchor_cross)
        if self.mu > 0 and anchor is None:
            raise AnchorError("mu > 0 needs an anchor: pass anchor_keys or anchor_gram")
        self._C = initial_inverse(self.d_k, self.lam, self.mu, anchor, self.dtype, self.device)
        self._W = initial_solution(self._C, self._W0, self.mu, anchor)
        self._information = (Information.prior(self._W0, self.lam, self.mu, anchor)
                             if self.refactor_every is not None else None)
        if self._information is not None:
            self.refactorize()  # C_0 from the float64 A_0 too: forming it in float32 costs eps * cond(A_0)
        self._release_W0()

    def _needs_W0(self) -> str | None:
        if self.refactor_every is None:
            return None
        return ("refactor_every accumulates B_t = sum K_i^T (V_i - K_i W0) and rebuilds "
                "W_t = W0 + A_t^{-1} B_t, so it reads W0 at every batch")

    @property
    def C(self) -> torch.Tensor:
        """C_t = (lam I + mu G + sum K_i^T K_i)^{-1} (d_k, d_k). The editor's own tensor."""
        return self._C

    def _update(self, K: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
        step = rls_update(self._C, self._W, K, V, inplace=True)
        return step.residual_before, step.residual_after

    # -- the ledger of applied batches ----------------------------------------------------------
    def _prepare_record(self, K: torch.Tensor, V: torch.Tensor) -> PendingEntry:
        return self._ledger.prepare(K, V)  # before the step: nothing that can fail runs after it

    def _commit_record(self, pending: PendingEntry) -> int:
        return self._ledger.commit(pending)

    @property
    def applied_batches(self) -> tuple[LedgerEntry, ...]:
        """The ledger's entries (batch_id, rows, digest) of the batches applied and not retracted,
        in the order they were applied. Batches applied before the editor had a ledger are not
        among them (see :attr:`unrecorded_batches`)."""
        return self._ledger.entries

    @property
    def unrecorded_batches(self) -> int:
        """Batches this editor holds that are not in its ledger: those applied before it had one
        (an editor restored from a format-1 state). 0 for an editor built by this version."""
        return self._ledger.unrecorded_batches

    @property
    def keep_batches(self) -> bool:
        """Whether the ledger keeps each applied batch (for ``retract_by_id``), not only its digest."""
        return self._ledger.keep_batches

    def kept_batch(self, batch_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A copy of the applied batch ``batch_id``, (K, V) as the editor used them.

        Raises :class:`NotAppliedError` for an id that is not in the ledger, and
        :class:`BatchNotKeptError` if the editor was built without ``keep_batches``.
        """
        K, V = self._ledger.kept_batch(batch_id)
        return K.clone(), V.clone()

    def _look_up(self, K: torch.Tensor, V: torch.Tensor, allow_unrecorded: Any, K_name: str = "K",
                 V_name: str = "V") -> LedgerEntry | None:
        """The ledger entry of a validated batch; None only for an allowed unrecorded batch. Reads only."""
        _as_flag(allow_unrecorded, "allow_unrecorded")
        digest = batch_digest(K, V)
        entry = self._ledger.find(digest)
        if entry is None and not (allow_unrecorded and self._ledger.unrecorded_batches > 0):
            raise NotAppliedError(self._ledger.not_found(digest, K_name, V_name, self.dtype,
                                                         rows=K.shape[0], n_rows=self.n_rows))
        return entry

    def _retract(self, K: torch.Tensor, V: torch.Tensor, entry: LedgerEntry | None) -> UpdateRecord:
        """The inverse step for a batch found in the ledger (``entry``) or an allowed unrecorded one."""
        if entry is None:
            # C and W only show the unrecorded batches' rows: n_rows less the ledger's rows, at least
            # one per unrecorded batch, so that the counters stay consistent for the rest of them.
            unrecorded_rows = self.n_rows - self._ledger.rows
            most = unrecorded_rows - (self._ledger.unrecorded_batches - 1)
            if K.shape[0] > most:
                raise NotAppliedError(
                    f"cannot retract {K.shape[0]} rows as an unrecorded batch: the "
                    f"{self._ledger.unrecorded_batches} unrecorded batch(es) hold {unrecorded_rows} rows"
                )
        try:
            step = rls_retract(self._C, self._W, K, V, inplace=True)
        except NotAppliedError as exc:
            if entry is None:
                raise
            raise NotAppliedError(
                f"the ledger holds this batch (id {entry.batch_id}), but this state cannot give it back: "
                f"{exc}. Rounding has moved C this far; rebuild it (refactor_every / refactorize()) "
                "or work in float64"
            ) from exc
        if self._information is not None:
            self._information.add(K, V, self._W0, sign=-1.0)
        if entry is None:
            self._ledger.unrecorded_batches -= 1
        else:
            self._ledger.remove(entry.batch_id)
        self.n_rows -= K.shape[0]
        self.n_batches -= 1
        return UpdateRecord(self.n_batches, K.shape[0], step.residual_before, step.residual_after,
                            None if entry is None else entry.batch_id)

    def retract(self, K: Any, V: Any, *, allow_unrecorded: bool = False) -> UpdateRecord:
        """Remove a batch applied before, exactly: the state becomes as if it was never applied.

        The batch must be in the ledger: the same keys and values that ``update`` was given, bit
        for bit after the cast to the editor's dtype, and not yet retracted (a batch applied twice
        can be retracted twice). The ledger is checked before any arithmetic; a batch that is not
        in it raises :class:`NotAppliedError` with the state (C, W, counters, information matrix,
        ledger) unchanged. So do a batch the math shows was never applied (I - K C K^T not positive
        definite) and, for a batch in the ledger, a state whose rounding no longer allows it.

        ``allow_unrecorded=True`` concerns only an editor restored from a format-1 state, whose
        earlier batches are not in any ledger (:attr:`unrecorded_batches`): a batch not in the
        ledger is then retracted as one of those, on the math check alone, which does not detect
        other values or near-miss keys. Without unrecorded batches it changes nothing.

        The record's ``residual_before`` is the batch's residual with it, ``residual_after``
        without it, and ``batch_id`` the ledger id it had (None for an unrecorded batch).
        """
        K, V = self._batch(K, V)
        return self._retract(K, V, self._look_up(K, V, allow_unrecorded))

    def retract_by_id(self, batch_id: int) -> UpdateRecord:
        """Retract the applied batch whose id ``update`` returned (``record.batch_id``).

        Needs ``keep_batches=True`` (the ledger then holds the batch itself); otherwise
        :class:`BatchNotKeptError`. An id that is not in the ledger (never issued, or already
        retracted) raises :class:`NotAppliedError`. Either way the state is unchanged. Equal, bit for
        bit, to ``retract(K, V)`` with the batch's K and V.
        """
        entry = self._ledger.entry(batch_id)
        K, V = self._ledger.kept_batch(batch_id)
        return self._retract(K, V, entry)

    # -- reliability: re-factorisation, diagnostics, replacement --------------------------
    def _after_update(self, K: torch.Tensor, V: torch.Tensor) -> None:
        """A_t = A_{t-1} + K^T K, B_t = B_{t-1} + K^T (V - K W0); rebuild every refactor_every batches."""
        if self._information is None:
            return
        self._information.add(K, V, self._W0)
        if self.n_batches % self.refactor_every == 0:
            try:
                self.refactorize()
            except RefactorizationError as exc:
                raise RefactorizationError(
                    f"batch {self.n_batches - 1} (ledger id {self._ledger.next_id - 1}) was applied, "
                    f"but the periodic re-factorisation after it failed: {exc}"
                ) from exc

    @property
    def information(self) -> Information | None:
        """The float64 information matrix and right-hand side, when ``refactor_every`` is set."""
        return self._information

    def refactorize(self) -> None:
        """Rebuild C_t = A_t^{-1} and W_t = W0 + A_t^{-1} B_t from the float64 information matrix.

        Removes the rounding the recursion has accumulated: afterwards (C, W) equal the float64
        batch solution rounded to the editor's dtype. Needs ``refactor_every`` (the information
        matrix is only kept then). Raises :class:`RefactorizationError` with the state unchanged.
        """
        if self._information is None:
            raise RefactorizationError(
                "this editor keeps no information matrix: construct it with refactor_every=N "
                "to allow re-factorisation"
            )
        C, W = self._information.rebuild(self._W0)
        self._C.copy_(C)
        self._W.copy_(W)

    def health(self, *, exact: bool = False, iters: int = 30) -> Health:
        """Diagnostics of C: symmetry error, extreme eigenvalues, condition number, definiteness.

        See :func:`rlsedit.health.diagnose`: an estimate by default (one Cholesky factorisation of
        C and 2 * ``iters`` matrix-vector products), a full float64 eigensolver with ``exact=True``.
        """
        return diagnose(self._C, exact=exact, iters=iters)

    def replace(self, K_old: Any, V_old: Any, K_new: Any, V_new: Any, *,
                allow_unrecorded: bool = False) -> tuple[UpdateRecord, UpdateRecord]:
        """Retract the batch (K_old, V_old) and apply (K_new, V_new), atomically.

        The result is the solution of a stream that never held the old batch and got the new one
        in its place (the objective is a sum, so the position does not matter). Both batches are
        validated and the old one is looked up in the ledger (as in :meth:`retract`, also for
        ``allow_unrecorded``) before any arithmetic; if any step fails, the state (C, W, counters,
        information matrix, ledger) is exactly as before the call. Returns the retraction's and the
        update's records; the new batch gets a new id.
        """
        where = {"d_k": self.d_k, "d_v": self.d_v, "dtype": self.dtype, "device": self.device}
        K_old, V_old = as_batch(K_old, V_old, **where, K_name="K_old", V_name="V_old")
        K_new, V_new = as_batch(K_new, V_new, **where, K_name="K_new", V_name="V_new")
        entry = self._look_up(K_old, V_old, allow_unrecorded, "K_old", "V_old")
        return self._replace(K_old, V_old, entry, K_new, V_new)

    def replace_by_id(self, batch_id: int, K_new: Any, V_new: Any) -> tuple[UpdateRecord, UpdateRecord]:
        """:meth:`replace` for the applied batch ``batch_id`` (needs ``keep_batches=True``, as
        :meth:`retract_by_id`)."""
        where = {"d_k": self.d_k, "d_v": self.d_v, "dtype": self.dtype, "device": self.device}
        K_new, V_new = as_batch(K_new, V_new, **where, K_name="K_new", V_name="V_new")
        entry = self._ledger.entry(batch_id)
        K_old, V_old = self._ledger.kept_batch(batch_id)
        return self._replace(K_old, V_old, entry, K_new, V_new)

    def _replace(self, K_old: torch.Tensor, V_old: torch.Tensor, entry: LedgerEntry | None,
                 K_new: torch.Tensor, V_new: torch.Tensor) -> tuple[UpdateRecord, UpdateRecord]:
        saved = (self._C.clone(), self._W.clone(), self.n_rows, self.n_batches,
                 None if self._information is None else self._information.clone(), self._ledger.clone())
        try:
            removed = self._retract(K_old, V_old, entry)
            added = self.update(K_new, V_new)
        except BaseException:
            self._C.copy_(saved[0])
            self._W.copy_(saved[1])
            self.n_rows, self.n_batches, self._information, self._ledger = saved[2:]
            raise
        return removed, added

    def state_dict(self) -> dict[str, Any]:
        """The base state, the ledger and, with ``refactor_every``, the float64 information matrix A and B.

        The ledger's entries: ``keep_batches``, ``unrecorded_batches`` and ``next_batch_id`` (ints
        and a bool); ``ledger_ids``, ``ledger_rows`` (int64, one per batch) and ``ledger_digests``
        (uint8, 32 bytes per batch), in the order the batches were applied; with ``keep_batches``
        also ``kept_K`` and ``kept_V``, the kept batches stacked in that order.
        """
        state = super().state_dict()
        state.update(self._ledger.state(self.d_k, self.d_v, self.dtype, self.device))
        if self._information is not None:
            state["information_A"] = self._information.A.clone()
            state["information_B"] = self._information.B.clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RLSEditor:
        """Rebuild an editor from :meth:`state_dict`'s output, exactly, ledger included.

        A format-1 state (written before the ledger existed) is read too: its editor has an empty
        ledger and counts every batch it holds as unrecorded (:attr:`unrecorded_batches`). Those
        batches cannot be verified, so ``retract``/``replace`` refuse any batch that is not in the
        ledger unless asked with ``allow_unrecorded=True``; batches applied after the restore are
        recorded and retracted as usual (by digest: such an editor keeps no batches). Saving the
        editor writes format 2 and keeps the count.
        """
        obj = super().from_state_dict(state)
        if state["format_version"] == 1:
            stray = [k for k in (*LEDGER_KEYS, *KEPT_KEYS) if k in state]
            if stray:
                raise StateDictError(f"state format version 1 has no ledger, but this state holds {stray}")
            obj._ledger = Ledger.legacy(obj.n_batches)
        else:
            obj._ledger = Ledger.from_state(state, n_batches=obj.n_batches, n_rows=obj.n_rows, d_k=obj.d_k,
                                            d_v=obj.d_v, dtype=obj.dtype, device=obj.device)
        obj._information = None
        if obj.refactor_every is not None:
            tensors = []
            for key, shape in (("information_A", (obj.d_k, obj.d_k)), ("information_B", (obj.d_k, obj.d_v))):
                t = state.get(key)
                if not isinstance(t, torch.Tensor):
                    raise StateDictError(f"state has refactor_every set but state[{key!r}] is missing")
                if t.dtype != torch.float64 or tuple(t.shape) != shape:
                    raise StateDictError(
                        f"state[{key!r}] is {tuple(t.shape)} {t.dtype}, expected {shape} torch.float64"
                    )
                check_finite_tensor(t, f"state[{key!r}]")
                tensors.append(t.to(obj.device).clone())
            obj._information = Information(*tensors)
        return obj

    def _check_state(self) -> None:
        self.lam = as_weight(self.lam, "state['lam']")
        self.mu = as_weight(self.mu, "state['mu']")
        try:
            self.refactor_every = _as_period(self.refactor_every, "state['refactor_every']")
        except ValueError as exc:
            raise StateDictError(str(exc)) from None
        self._check_square_buffer("C")
