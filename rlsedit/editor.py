"""RLSEditor: the cumulative soft least-squares editor of docs/method.md, as one stateful object.

The object keeps (C_t, W_t) and calls the pure functions of :mod:`rlsedit.recursion`; it never
re-implements their math. After every ``update`` its W equals :func:`rlsedit.batch_solve` on all
batches so far (up to rounding), whatever the batching and order.
"""

from __future__ import annotations

from typing import Any

import torch

from ._validate import as_batch, as_weight, check_finite_tensor
from .anchor import resolve_anchor
from .base import Editor, StateDictError, UpdateRecord
from .errors import AnchorError, NotAppliedError, ParameterError, RefactorizationError
from .health import Health, Information, diagnose
from .recursion import initial_inverse, initial_solution, rls_retract, rls_update


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

    Raises:
        NoUniqueSolutionError: lam I + mu G is singular (lam = 0 and a singular anchor Gram).
        AnchorError, ShapeError, DTypeError, NonFiniteError: bad arguments, named in the message.
        ParameterError: a bad lam, mu or refactor_every, or keep_W0=False with refactor_every.

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
    ) -> None:
        super().__init__(W0, dtype=dtype, keep_W0=keep_W0)
        self.lam = as_weight(lam, "lam")
        self.mu = as_weight(mu, "mu")
        self.refactor_every = _as_period(refactor_every, "refactor_every")
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

    def retract(self, K: Any, V: Any) -> UpdateRecord:
        """Remove a batch applied before, exactly: the state becomes as if it was never applied.

        The record's ``residual_before`` is the batch's residual with it, ``residual_after``
        without it. Raises :class:`NotAppliedError` when the math shows the batch was never
        applied (I - K C K^T not positive definite) or it has more rows than were ever absorbed.
        """
        K, V = self._batch(K, V)
        if K.shape[0] > self.n_rows:
            raise NotAppliedError(
                f"cannot retract {K.shape[0]} rows: only {self.n_rows} edit rows were applied"
            )
        step = rls_retract(self._C, self._W, K, V, inplace=True)
        if self._information is not None:
            self._information.add(K, V, self._W0, sign=-1.0)
        self.n_rows -= K.shape[0]
        self.n_batches = max(self.n_batches - 1, 0)
        return UpdateRecord(self.n_batches, K.shape[0], step.residual_before, step.residual_after)

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
                    f"batch {self.n_batches - 1} was applied, but the periodic re-factorisation "
                    f"after it failed: {exc}"
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

    def replace(self, K_old: Any, V_old: Any, K_new: Any, V_new: Any) -> tuple[UpdateRecord, UpdateRecord]:
        """Retract the batch (K_old, V_old) and apply (K_new, V_new), atomically.

        The result is the solution of a stream that never held the old batch and got the new one
        in its place (the objective is a sum, so the position does not matter). Both batches are
        validated first; if either step fails, the state (C, W, counters, information matrix) is
        exactly as before the call. Returns the retraction's and the update's records.
        """
        where = {"d_k": self.d_k, "d_v": self.d_v, "dtype": self.dtype, "device": self.device}
        K_old, V_old = as_batch(K_old, V_old, **where, K_name="K_old", V_name="V_old")
        K_new, V_new = as_batch(K_new, V_new, **where, K_name="K_new", V_name="V_new")
        saved = (self._C.clone(), self._W.clone(), self.n_rows, self.n_batches,
                 None if self._information is None else self._information.clone())
        try:
            removed = self.retract(K_old, V_old)
            added = self.update(K_new, V_new)
        except BaseException:
            self._C.copy_(saved[0])
            self._W.copy_(saved[1])
            self.n_rows, self.n_batches, self._information = saved[2], saved[3], saved[4]
            raise
        return removed, added

    def state_dict(self) -> dict[str, Any]:
        """The base state plus, with ``refactor_every``, the float64 information matrix A and B."""
        state = super().state_dict()
        if self._information is not None:
            state["information_A"] = self._information.A.clone()
            state["information_B"] = self._information.B.clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RLSEditor:
        obj = super().from_state_dict(state)
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
