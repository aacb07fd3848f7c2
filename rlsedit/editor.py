"""RLSEditor: the cumulative soft least-squares editor of PAPER.md, as one stateful object.

The object keeps (C_t, W_t) and calls the pure functions of :mod:`rlsedit.recursion`; it never
re-implements their math. After every ``update`` its W equals :func:`rlsedit.batch_solve` on all
batches so far (up to rounding), whatever the batching and order.
"""

from __future__ import annotations

from typing import Any

import torch

from ._validate import as_weight
from .anchor import resolve_anchor
from .base import Editor, UpdateRecord
from .errors import AnchorError, NotAppliedError
from .recursion import initial_inverse, initial_solution, rls_retract, rls_update


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

    Raises:
        NoUniqueSolutionError: lam I + mu G is singular (lam = 0 and a singular anchor Gram).
        AnchorError, ShapeError, DTypeError, NonFiniteError: bad arguments, named in the message.

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
    _params = ("lam", "mu")
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
    ) -> None:
        super().__init__(W0, dtype=dtype)
        self.lam = as_weight(lam, "lam")
        self.mu = as_weight(mu, "mu")
        anchor = resolve_anchor(self._W0, anchor_keys=anchor_keys, anchor_values=anchor_values,
                                anchor_gram=anchor_gram, anchor_cross=anchor_cross)
        if self.mu > 0 and anchor is None:
            raise AnchorError("mu > 0 needs an anchor: pass anchor_keys or anchor_gram")
        self._C = initial_inverse(self.d_k, self.lam, self.mu, anchor, self.dtype, self.device)
        self._W = initial_solution(self._C, self._W0, self.mu, anchor)

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
        self.n_rows -= K.shape[0]
        self.n_batches = max(self.n_batches - 1, 0)
        return UpdateRecord(self.n_batches, K.shape[0], step.residual_before, step.residual_after)

    def _check_state(self) -> None:
        self.lam = as_weight(self.lam, "state['lam']")
        self.mu = as_weight(self.mu, "state['mu']")
        self._check_square_buffer("C")
