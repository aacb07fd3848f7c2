"""The reference side of every check: the normal equations of J_t, formed and solved from scratch.

For a stream of batches (K_i, V_i) and the parameters (lam, mu, G; default anchor V0 = K0 W0) this
module forms, in float64 and after every batch,

    A_t = lam I + mu G + sum_{i<=t} K_i^T K_i          (d_k, d_k)
    B_t = sum_{i<=t} K_i^T (V_i - K_i W0)                (d_k, d_v), the right-hand side relative to W0

and solves A_t (W_t* - W0) = B_t by a Cholesky factorisation of A_t (docs/method.md section 3).
Nothing here reads an editor: the checks of :mod:`theory.checks` compare an editor's ``W`` with
these quantities, so that the measured side and the reference side never share state. The
solver's own code (``rlsedit``) is not used either; ``tests/theory`` checks this module against
scipy.

Cost: O(d_k^3) per batch (a Cholesky factorisation, an inverse and an eigendecomposition), which
is the point: the recursion avoids exactly this work, and the reference must not share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._linalg import DTYPE, as64, check_weights, prior_matrix


class ReferenceError(ValueError):
    """The normal equations have no unique solution (A_t is not positive definite)."""


@dataclass(frozen=True)
class ReferenceStep:
    """The exact minimiser of J_t and the matrices around it, after ``t`` batches (t = 0: the prior).

    Attributes:
        t: number of batches absorbed.
        A: A_t (d_k, d_k); C: C_t = A_t^{-1}; W: the minimiser W_t* (d_k, d_v).
        eig: the eigenvalues of A_t, ascending (so cond(A_t) = eig[-1] / eig[0]).
        kappa_max: max_{s<=t} max(cond(A_s), cond(S_s)): the recursion's rounding carries the worst
            prefix, since C_0 is formed once and every later C_s is updated from the one before,
            and each step solves with S_s = I + K_s C_{s-1} K_s^T.
        logdet: log det A_t.
        J_min: J_t(W_t*), the minimum of the objective, evaluated from the residuals.
        S_eig: eigenvalues of S_t = I + K_t C_{t-1} K_t^T (empty at t = 0).
        E: V_t - K_t W_{t-1}*, the batch's residual before it at the exact previous minimiser
            (None at t = 0).
    """

    t: int
    A: torch.Tensor
    C: torch.Tensor
    W: torch.Tensor
    eig: torch.Tensor
    kappa_max: float
    logdet: float
    J_min: float
    S_eig: torch.Tensor
    E: torch.Tensor | None

    @property
    def kappa(self) -> float:
        """cond(A_t) in the 2-norm."""
        return float(self.eig[-1] / self.eig[0])

    @property
    def norm_A(self) -> float:
        """||A_t||_2."""
        return float(self.eig[-1])

    @property
    def norm_C(self) -> float:
        """||C_t||_2 = 1 / lambda_min(A_t)."""
        return float(1.0 / self.eig[0])


def _factor(A: torch.Tensor, t: int) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        raise ReferenceError(
            f"A_{t} = lam I + mu G + sum K_i^T K_i is not positive definite (Cholesky fails at "
            f"leading minor {int(info)}): the objective has no unique minimiser"
        )
    return L


def _objective_min(W: torch.Tensor, W0: torch.Tensor, K: torch.Tensor, V: torch.Tensor, lam: float,
                   mu: float, G: torch.Tensor | None) -> float:
    D = W - W0
    J = float(((K @ W - V) ** 2).sum()) + lam * float((D**2).sum())
    if G is not None and mu != 0.0:
        J += mu * float((D * (G @ D)).sum())
    return J


def solve_stream(W0: Any, keys: Sequence[Any], values: Sequence[Any], *, lam: float, mu: float = 0.0,
                 anchor_gram: Any = None) -> list[ReferenceStep]:
    """The exact minimiser after every prefix of the stream: ``[step_0, step_1, ..., step_n]``.

    ``step_t`` describes J_t after the batches ``keys[:t]``, ``values[:t]``; ``step_0`` is the
    prior alone (W_0* = W0 for the default anchor). Raises :class:`ReferenceError` when some A_t
    is singular (lam = 0 with a singular anchor Gram and too few keys).
    """
    lam, mu = check_weights(lam, mu)
    W0 = as64(W0, "W0")
    d_k, d_v = W0.shape
    G = None if anchor_gram is None or mu == 0.0 else as64(anchor_gram, "anchor_gram")
    if len(keys) != len(values):
        raise ValueError(f"keys has {len(keys)} batches but values has {len(values)}")
    A = prior_matrix(d_k, lam, mu, G)
    B = torch.zeros(d_k, d_v, dtype=DTYPE)
    rows_K: list[torch.Tensor] = []
    rows_V: list[torch.Tensor] = []
    steps: list[ReferenceStep] = []
    kappa_max = 0.0
    for t in range(len(keys) + 1):
        S_eig = torch.zeros(0, dtype=DTYPE)
        E = None
        if t > 0:
            K = as64(keys[t - 1], f"keys[{t - 1}]").reshape(-1, d_k)
            V = as64(values[t - 1], f"values[{t - 1}]").reshape(-1, d_v)
            if K.shape[0] != V.shape[0]:
                raise ValueError(f"batch {t - 1}: {K.shape[0]} keys but {V.shape[0]} values")
            prev = steps[-1]
            E = V - K @ prev.W  # (u, d_v)
            KCK = K @ prev.C @ K.T  # (u, u)
            S_eig = 1.0 + torch.linalg.eigvalsh(0.5 * (KCK + KCK.T))
            A = A + K.T @ K
            B = B + K.T @ (V - K @ W0)
            rows_K.append(K)
            rows_V.append(V)
        A = 0.5 * (A + A.T)
        L = _factor(A, t)
        W = W0 + torch.cholesky_solve(B, L)
        C = torch.cholesky_inverse(L)
        C = 0.5 * (C + C.T)
        eig = torch.linalg.eigvalsh(A)
        if float(eig[0]) <= 0.0:
            raise ReferenceError(f"A_{t} has a non-positive eigenvalue {float(eig[0]):.3g}")
        # the recursion also solves with S_t, whose condition number exceeds cond(A_t) when a batch
        # has more rows than directions it constrains (3 keys of norm 1e3 in d_k = 2: cond(A_1) = 11,
        # cond(S_1) = 2e6, and the float64 recursion's error was 2,000 eps cond(A_1))
        cond_S = float(S_eig[-1] / S_eig[0]) if len(S_eig) else 1.0
        kappa_max = max(kappa_max, float(eig[-1] / eig[0]), cond_S)
        K_all = torch.cat(rows_K) if rows_K else torch.zeros(0, d_k, dtype=DTYPE)
        V_all = torch.cat(rows_V) if rows_V else torch.zeros(0, d_v, dtype=DTYPE)
        steps.append(ReferenceStep(
            t=t, A=A.clone(), C=C, W=W, eig=eig, kappa_max=kappa_max,
            logdet=2.0 * float(torch.log(L.diagonal()).sum()),
            J_min=_objective_min(W, W0, K_all, V_all, lam, mu, G), S_eig=S_eig, E=E))
    return steps


def logdet_ratio(steps: Sequence[ReferenceStep], t: int) -> float:
    """log det(A_t A_0^{-1}) = log det A_t - log det A_0 (>= 0, since A_t >= A_0)."""
    return steps[t].logdet - steps[0].logdet


