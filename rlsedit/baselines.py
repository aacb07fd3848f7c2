"""Baseline editors behind the :class:`rlsedit.base.Editor` interface, in docs/method.md's notation.

All work in the row convention V ~ K W (W is d_k x d_v, K is u x d_k). The prior matrix
A_0 = lam I + mu G (G = K0^T K0, the anchor Gram, e.g. n_w E[k k^T]) and C_0 = A_0^{-1} are the
same as RLSEditor's; what differs is what each editor does with them:

==========  ==============================================================  ===================
editor      per-batch problem                                               accumulates
==========  ==============================================================  ===================
RLSEdit     min sum_{i<=t} ||K_i W - V_i||^2 + lam||W-W0||^2 + mu||K0 W-V0||^2   C_t (everything)
MEMIT       min ||K_t W - V_t||^2 + lam||W-W_{t-1}||^2 + mu||K0 (W-W_{t-1})||^2  nothing
AlphaEdit   min_{D in range(P)} ||K_t (W_{t-1}+D) - V_t||^2 + l2||D||^2 + ||Kp D||^2   past keys Kp
ROME        min ||W-W_{t-1}||_{A_0}^2  s.t.  k^T W = v^T, one key at a time     nothing
FT          projected gradient descent on 1/2 ||K_t W - V_t||^2                   nothing
==========  ==============================================================  ===================

Each takes ``keep_W0`` like RLSEditor: their steps start from W_{t-1} and never read W0, so
``keep_W0=False`` drops it after construction (FT refuses it with a ``norm_bound``, which reads W0).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._validate import as_weight
from .anchor import resolve_anchor
from .base import Editor
from .errors import AnchorError, NonFiniteError, ParameterError
from .recursion import _guard_products, initial_inverse, rls_write


def _prior_inverse(editor: Editor, lam: float, mu: float, anchor_keys: Any, anchor_gram: Any) -> torch.Tensor:
    anchor = resolve_anchor(editor._W0, anchor_keys=anchor_keys, anchor_gram=anchor_gram)
    if mu > 0 and anchor is None:
        raise AnchorError("mu > 0 needs an anchor: pass anchor_keys or anchor_gram")
    return initial_inverse(editor.d_k, lam, mu, anchor, editor.dtype, editor.device)


class MEMITEditor(Editor):
    """MEMIT (Meng et al. 2023) in sequential mode: each batch solved alone, nothing accumulated.

        W_t = argmin_W ||K_t W - V_t||^2 + lam ||W - W_{t-1}||^2 + mu ||K0 (W - W_{t-1})||^2
            = W_{t-1} + C_0 K_t^T (I + K_t C_0 K_t^T)^{-1} (V_t - K_t W_{t-1})

    which is RLSEdit's step from (C_0, W_{t-1}): "RLSEdit restarted from C_0 at every batch"
    (docs/method.md section 4). The anchor preserves the *current* map on the anchor keys (MEMIT's
    mom2 term), so it takes only the anchor's keys or Gram, never anchor values.
    """

    name = "memit"
    _params = ("lam", "mu")
    _buffers = ("C0",)

    def __init__(self, W0: Any, *, lam: float = 0.0, mu: float = 0.0, anchor_keys: Any = None,
                 anchor_gram: Any = None, dtype: Any = None, keep_W0: bool = True) -> None:
        super().__init__(W0, dtype=dtype, keep_W0=keep_W0)
        self.lam = as_weight(lam, "lam")
        self.mu = as_weight(mu, "mu")
        self._C0 = _prior_inverse(self, self.lam, self.mu, anchor_keys, anchor_gram)
        self._release_W0()

    @property
    def C(self) -> torch.Tensor:
        """C_0 = (lam I + mu G)^{-1}, used unchanged for every batch."""
        return self._C0

    def _update(self, K: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
        step = rls_write(self._C0, self._W, K, V, inplace=True)
        return step.residual_before, step.residual_after

    def _check_state(self) -> None:
        self.lam = as_weight(self.lam, "state['lam']")
        self.mu = as_weight(self.mu, "state['mu']")
        self._check_square_buffer("C0")


class ROMEEditor(Editor):
    """ROME-style rank-one hard writes (Meng et al. 2022), one key at a time, nothing accumulated.

    For each row (k, v) of the batch, in order:

        W <- argmin_W ||W - W_prev||_{A_0}^2  subject to  k^T W = v^T
           = W_prev + C_0 k (v^T - k^T W_prev) / (k^T C_0 k)

    with ||D||_{A_0}^2 = tr(D^T A_0 D), A_0 = lam I + mu G (ROME's C = E[k k^T] prior). After the
    write the key's residual is exactly zero: a hard write, the limit of MEMIT's step as the
    edit's weight grows without bound.
    """

    name = "rome"
    _params = ("lam", "mu")
    _buffers = ("C0",)

    def __init__(self, W0: Any, *, lam: float = 0.0, mu: float = 0.0, anchor_keys: Any = None,
                 anchor_gram: Any = None, dtype: Any = None, keep_W0: bool = True) -> None:
        super().__init__(W0, dtype=dtype, keep_W0=keep_W0)
        self.lam = as_weight(lam, "lam")
        self.mu = as_weight(mu, "mu")
        self._C0 = _prior_inverse(self, self.lam, self.mu, anchor_keys, anchor_gram)
        self._release_W0()

    @property
    def C(self) -> torch.Tensor:
        return self._C0

    def _update(self, K: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
        before = float(torch.linalg.vector_norm(V - K @ self._W))
        W = self._W.clone()  # written back only if every row succeeds
        for j in range(K.shape[0]):
            k, v = K[j], V[j]
            c = self._C0 @ k  # (d_k,)
            denom = float(k @ c)
            if not math.isfinite(denom):
                raise NonFiniteError(f"ROME write of row {j}: k^T C_0 k = {denom}; the key is too large")
            if not denom > 0.0:
                raise NonFiniteError(f"ROME write of row {j}: k^T C_0 k = {denom} is not positive")
            r = v - k @ W  # (d_v,)
            _guard_products(f"ROME write of row {j}", (c[:, None], r[None, :] / denom))
            W.add_(torch.outer(c, r), alpha=1.0 / denom)  # (d_k, 1) @ (1, d_v)
        after = float(torch.linalg.vector_norm(V - K @ W))
        self._W.copy_(W)
        return before, after

    def _check_state(self) -> None:
        self.lam = as_weight(self.lam, "state['lam']")
        self.mu = as_weight(self.mu, "state['mu']")
        self._check_square_buffer("C0")


class AlphaEditEditor(Editor):
    """AlphaEdit (Fang et al. 2025): null-space-projected writes with a cumulative past-key term.

    P = U0 U0^T, where U0 are the eigenvectors of the anchor Gram G whose eigenvalues are below
    ``threshold`` (the anchor's approximate null space). Each batch solves

        D_t = argmin_{D in range(P)} ||K_t (W_{t-1} + D) - V_t||^2 + l2 ||D||^2 + ||Kp D||^2
            = (P (Kp^T Kp + K_t^T K_t) + l2 I)^{-1} P K_t^T (V_t - K_t W_{t-1})

    (the solution lies in range(P) automatically), W_t = W_{t-1} + D_t, and adds K_t^T K_t to the
    past-key Gram Kp^T Kp. Anchor keys in the kept directions (eigenvalue >= threshold) are
    preserved up to the discarded part of their spectrum. ``threshold`` is absolute, on G as given
    (AlphaEdit's code uses 1e-2 on E[k k^T]); each batch costs one d_k x d_k solve.
    """

    name = "alphaedit"
    _params = ("l2", "threshold")
    _buffers = ("P", "past_gram")

    def __init__(self, W0: Any, *, anchor_keys: Any = None, anchor_gram: Any = None,
                 threshold: float = 1e-2, l2: float = 10.0, dtype: Any = None, keep_W0: bool = True) -> None:
        super().__init__(W0, dtype=dtype, keep_W0=keep_W0)
        self.l2 = as_weight(l2, "l2")
        self.threshold = as_weight(threshold, "threshold")
        if self.l2 == 0.0:
            raise ParameterError("l2 must be > 0: the per-batch system is singular without it")
        anchor = resolve_anchor(self._W0, anchor_keys=anchor_keys, anchor_gram=anchor_gram)
        if anchor is None:
            raise AnchorError("AlphaEdit needs an anchor (anchor_keys or anchor_gram) for its projector")
        self._P = null_space_projector(anchor.gram, self.threshold)
        self._past_gram = torch.zeros(self.d_k, self.d_k, dtype=self.dtype, device=self.device)
        self._release_W0()

    @property
    def P(self) -> torch.Tensor:
        """The null-space projector (d_k, d_k), symmetric and idempotent."""
        return self._P

    def _update(self, K: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
        E = V - K @ self._W  # (u, d_v)
        M = self._P @ (self._past_gram + K.T @ K)  # (d_k, d_k)
        M.diagonal().add_(self.l2)
        D = torch.linalg.solve(M, self._P @ (K.T @ E))  # (d_k, d_v)
        if not bool(torch.isfinite(D).all()):
            raise NonFiniteError("AlphaEdit's step is not finite: the keys or values are too large")
        after = float(torch.linalg.vector_norm(E - K @ D))
        self._W.add_(D)
        self._past_gram.addmm_(K.T, K)
        return float(torch.linalg.vector_norm(E)), after

    def _check_state(self) -> None:
        self.l2 = as_weight(self.l2, "state['l2']")
        self.threshold = as_weight(self.threshold, "state['threshold']")
        if self.l2 == 0.0:
            raise ParameterError("state['l2'] must be > 0")
        self._check_square_buffer("P")
        self._check_square_buffer("past_gram")


def null_space_projector(G: torch.Tensor, threshold: float) -> torch.Tensor:
    """P = U0 U0^T over the eigenvectors of symmetric G with eigenvalue < threshold.  # (d_k, d_k)"""
    evals, evecs = torch.linalg.eigh(G)
    U0 = evecs[:, evals < threshold]  # (d_k, r)
    P = U0 @ U0.T
    return 0.5 * (P + P.T)


class FTEditor(Editor):
    """FT-L style fine-tuning of the layer alone (Zhu et al. 2020; ROME's FT baseline).

    Each batch runs ``steps`` of projected gradient descent on 1/2 ||K W - V||_F^2 from W_{t-1}:

        W <- Proj( W - (lr / ||K||_2^2) K^T (K W - V) ),   Proj: clamp to |W - W0| <= norm_bound

    (entrywise; no clamp when ``norm_bound`` is None). The step is normalised by the largest
    curvature ||K||_2^2, so lr in (0, 2) is stable and lr = 1 is the usual choice. The clamp reads
    W0 at every batch: ``keep_W0=False`` is refused with a ``norm_bound``.
    """

    name = "ft"
    _params = ("steps", "lr", "norm_bound")

    def __init__(self, W0: Any, *, steps: int = 25, lr: float = 1.0, norm_bound: float | None = None,
                 dtype: Any = None, keep_W0: bool = True) -> None:
        super().__init__(W0, dtype=dtype, keep_W0=keep_W0)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ParameterError(f"steps must be a positive int, got {steps!r}")
        self.steps = steps
        self.lr = as_weight(lr, "lr")
        if not 0.0 < self.lr < 2.0:
            raise ParameterError(f"lr must be in (0, 2) (it is relative to 1/||K||_2^2), got {self.lr}")
        self.norm_bound = None if norm_bound is None else as_weight(norm_bound, "norm_bound")
        self._check_keep_W0()
        self._release_W0()

    def _needs_W0(self) -> str | None:
        if self.norm_bound is None:
            return None
        return "norm_bound clamps every step to |W - W0| <= norm_bound, so it reads W0 at every batch"

    def _update(self, K: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
        before = float(torch.linalg.vector_norm(V - K @ self._W))
        curvature = float(torch.linalg.matrix_norm(K.double(), ord=2)) ** 2
        if curvature == 0.0:
            return before, before  # all-zero keys: the gradient vanishes, W does not move
        W = self._W.clone()
        for _ in range(self.steps):
            W.addmm_(K.T, K @ W - V, alpha=-self.lr / curvature)  # (d_k, u) @ (u, d_v)
            if self.norm_bound is not None:
                W = torch.clamp(W, self._W0 - self.norm_bound, self._W0 + self.norm_bound)
        if not bool(torch.isfinite(W).all()):
            raise NonFiniteError("FT's step is not finite: the keys or values are too large")
        self._W.copy_(W)
        return before, float(torch.linalg.vector_norm(V - K @ W))

    def _check_state(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            from .base import StateDictError
            raise StateDictError(f"state['steps'] must be a positive int, got {self.steps!r}")
        self.lr = as_weight(self.lr, "state['lr']")
        if not 0.0 < self.lr < 2.0:
            raise ParameterError(f"state['lr'] must be in (0, 2), got {self.lr}")
        if self.norm_bound is not None:
            self.norm_bound = as_weight(self.norm_bound, "state['norm_bound']")
