"""Broken editors (negative controls): every check of :mod:`theory.checks` must be able to fail.

Each control has the editor interface the checks use (``update(K, V)`` and ``W``) and is broken in
one known way. The bounds experiment runs all of them on every random stream and reports, per
bound, how many streams each one was caught on; a bound that catches none of them is a consistency
identity, not evidence about the editor.

==================  ===========================================================================
name                what is wrong
==================  ===========================================================================
do_nothing          never moves: W_t = W0
memit               MEMIT, i.e. the recursion restarted from C_0 at every batch (nothing kept)
flipped_downdate    the recursion with C_t = C_{t-1} + F S^{-1} F^T (the downdate's sign flipped)
lam_doubled         a correct RLSEditor built with 2 lam (not applicable when lam = 0)
perturbed_1e-6      a correct RLSEditor whose reported W is off by 1e-6 relative (fixed direction)
==================  ===========================================================================

The flipped recursion is written here, in a few lines, from docs/method.md section 4 (it cannot
be a switch in the solver, which must not carry a way to be wrong).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import rlsedit

from ._linalg import DTYPE, as64, prior_matrix


class DoNothingEditor:
    """An editor that accepts every batch and never changes W (W_t = W0)."""

    def __init__(self, W0: Any) -> None:
        self._W = as64(W0, "W0").clone()

    @property
    def W(self) -> torch.Tensor:
        return self._W

    def update(self, K: Any, V: Any) -> None:
        as64(K, "K"), as64(V, "V")


class FlippedDowndateEditor:
    """The recursion of docs/method.md section 4 with the sign of C's downdate flipped.

        F = C_{t-1} K^T,  S = I + K F,  W_t = W_{t-1} + F S^{-1} (V - K W_{t-1})   (as the true one)
        C_t = C_{t-1} + F S^{-1} F^T                                              (true: minus)

    The first batch is written exactly right (C_0 is right); every later one uses a C that grows
    instead of shrinking, so earlier edits are protected less and less.
    """

    def __init__(self, W0: Any, *, lam: float, mu: float = 0.0, anchor_gram: Any = None) -> None:
        self._W = as64(W0, "W0").clone()
        self._C = torch.linalg.inv(prior_matrix(self._W.shape[0], lam, mu, anchor_gram))

    @property
    def W(self) -> torch.Tensor:
        return self._W

    def update(self, K: Any, V: Any) -> None:
        K, V = as64(K, "K"), as64(V, "V")
        F = self._C @ K.T  # (d_k, u)
        S = torch.eye(K.shape[0], dtype=DTYPE) + K @ F  # (u, u)
        self._W = self._W + F @ torch.linalg.solve(S, V - K @ self._W)  # (d_k, u) @ (u, d_v)
        self._C = self._C + F @ torch.linalg.solve(S, F.T)  # the flipped sign


class PerturbedEditor:
    """A correct float64 RLSEditor whose reported W is W + delta, ||delta||_F = rel ||W||_F.

    delta has a fixed random direction (``seed``); the inner recursion is not disturbed, so only
    what the editor reports is off, by a relative 1e-6 by default: a check that cannot see this
    cannot tell a right editor from a slightly wrong one.
    """

    def __init__(self, W0: Any, *, lam: float, mu: float = 0.0, anchor_gram: Any = None, rel: float = 1e-6,
                 seed: int = 0) -> None:
        W0 = as64(W0, "W0")
        anchor = {} if anchor_gram is None or mu == 0.0 else {"anchor_gram": as64(anchor_gram, "anchor_gram")}
        self._inner = rlsedit.RLSEditor(W0, lam=lam, mu=mu, dtype=DTYPE, **anchor)
        Z = torch.randn(W0.shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
        self._direction = Z / torch.linalg.vector_norm(Z)
        self.rel = float(rel)

    @property
    def W(self) -> torch.Tensor:
        W = self._inner.W
        return W + self.rel * float(torch.linalg.vector_norm(W)) * self._direction

    def update(self, K: Any, V: Any) -> None:
        self._inner.update(K, V)


def _anchor(mu: float, anchor_gram: Any) -> dict:
    return {} if anchor_gram is None or mu == 0.0 else {"anchor_gram": as64(anchor_gram, "anchor_gram")}


def _memit(W0: Any, lam: float, mu: float, anchor_gram: Any):
    return rlsedit.MEMITEditor(as64(W0, "W0"), lam=lam, mu=mu, dtype=DTYPE, **_anchor(mu, anchor_gram))


def _lam_doubled(W0: Any, lam: float, mu: float, anchor_gram: Any):
    if lam == 0.0:
        return None  # 2 * 0 = 0: the control would be the true editor
    return rlsedit.RLSEditor(as64(W0, "W0"), lam=2.0 * lam, mu=mu, dtype=DTYPE, **_anchor(mu, anchor_gram))


# name -> factory(W0, lam, mu, anchor_gram) -> editor, or None where the control does not apply
NEGATIVE_CONTROLS: dict[str, Callable[[Any, float, float, Any], Any]] = {
    "do_nothing": lambda W0, lam, mu, G: DoNothingEditor(W0),
    "memit": _memit,
    "flipped_downdate": lambda W0, lam, mu, G: FlippedDowndateEditor(W0, lam=lam, mu=mu, anchor_gram=G),
    "lam_doubled": _lam_doubled,
    "perturbed_1e-6": lambda W0, lam, mu, G: PerturbedEditor(W0, lam=lam, mu=mu, anchor_gram=G),
}


def make_control(name: str, W0: Any, *, lam: float, mu: float = 0.0, anchor_gram: Any = None):
    """The negative control ``name`` for this problem, or None where it does not apply."""
    try:
        factory = NEGATIVE_CONTROLS[name]
    except KeyError:
        raise ValueError(f"unknown negative control {name!r}; choose one of {sorted(NEGATIVE_CONTROLS)}") from None
    return factory(W0, lam, mu, anchor_gram)
