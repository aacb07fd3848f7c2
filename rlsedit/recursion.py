"""The online recursion of docs/method.md sections 3-4, as pure functions on (C, W).

Symbols (row convention, V ~ K W):

    W   (d_k, d_v)  current solution W_t           K   (u, d_k)  keys of one batch
    C   (d_k, d_k)  C_t = (lam I + mu G + sum K_i^T K_i)^{-1}
    V   (u, d_v)    values of the batch            S   (u, u)    I + K C K^T
    G   anchor Gram K0^T K0                        X   anchor cross term K0^T V0

Each function opens with the equation it implements. ``inplace=True`` writes the new C and W into
the given tensors (rank-u ``addmm_``, no d_k x d_k temporary); every check and factorisation runs
before the first write, so a failed call leaves C and W exactly as they were.

Precision: the four products that touch C or W (F = C K^T, K W, F Z and G G^T, all the
O(d_k^2 u + d_k d_v u) work) run in the state's dtype. The small algebra, S = K F (u x u, accumulated
over d_k terms), its Cholesky factor and the solves with it (O(d_k u^2 + u^2 d_v)), runs in float64
whatever the state's dtype: for a float32 state this lowers the error of W and C along an
ill-conditioned stream by about a quarter, for under 1% of the step's flops (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .anchor import Anchor
from .errors import FactorizationError, NonFiniteError, NotAppliedError, NoUniqueSolutionError


@dataclass(frozen=True)
class Step:
    """What one recursion step produced.

    ``residual_before`` is ||V - K W_{t-1}||_F; ``residual_after`` is ||V - K W_t||_F, evaluated
    through the soft-write identity V - K W_t = S^{-1} (V - K W_{t-1}) (docs/method.md section 4).
    """

    C: torch.Tensor
    W: torch.Tensor
    residual_before: float
    residual_after: float


def prior_precision(d_k: int, lam: float, mu: float, anchor: Anchor | None,
                    dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A_0 = lam I + mu G   (docs/method.md section 3, the regularisers' part of the normal matrix)."""
    A0 = torch.zeros(d_k, d_k, dtype=dtype, device=device)
    if anchor is not None and mu != 0.0:
        A0.add_(anchor.gram, alpha=mu)
    A0.diagonal().add_(lam)
    return A0


def cholesky_or_raise(A: torch.Tensor, lam: float, what: str) -> torch.Tensor:
    """Lower Cholesky factor of the symmetric matrix A, or :class:`NoUniqueSolutionError`."""
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        hint = (
            "lam = 0 and the anchor Gram (plus any edit keys) is singular; "
            "use lam > 0, or an anchor whose Gram has full rank"
            if lam == 0.0
            else "the matrix lost positive definiteness; check the scale of the anchor Gram"
        )
        raise NoUniqueSolutionError(
            f"{what} is not positive definite (Cholesky fails at leading minor {int(info)}): {hint}"
        )
    return L


def initial_inverse(d_k: int, lam: float, mu: float, anchor: Anchor | None,
                    dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """C_0 = (lam I + mu K0^T K0)^{-1}   (docs/method.md section 4, first line). Costs O(d_k^3), once.

    At most two d_k x d_k matrices are alive at once: A_0 is freed once factored, the factor once
    inverted, and the inverse is symmetrised in place (:func:`symmetrize_`).
    """
    L = cholesky_or_raise(prior_precision(d_k, lam, mu, anchor, dtype, device), lam, "lam I + mu anchor_gram")
    C0 = torch.cholesky_inverse(L)  # (d_k, d_k)
    del L
    return symmetrize_(C0)


def symmetrize_(A: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """A <- (A + A^T) / 2 in place, one pair of (block, block) tiles at a time; returns A.

    Equal, bit for bit, to ``0.5 * (A + A.T)``, without its two d x d temporaries. Every inverse
    built from a Cholesky factor goes through it (C_0 here, the rebuilt C in :mod:`.health`):
    ``torch.cholesky_inverse`` is exactly symmetric on the CPU (measured up to d = 3000, float32
    and float64), so there it is one O(d^2) pass that changes nothing; no other device was checked.
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"symmetrize_ needs a square matrix, got shape {tuple(A.shape)}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    d = A.shape[0]
    for i in range(0, d, block):
        for j in range(i, d, block):
            upper = A[i:i + block, j:j + block]
            lower = A[j:j + block, i:i + block]
            mean = 0.5 * (upper + lower.T)  # a copy: the writes below cannot feed back into it
            upper.copy_(mean)
            lower.copy_(mean.T)
    return A


def initial_solution(C0: torch.Tensor, W0: torch.Tensor, mu: float, anchor: Anchor | None) -> torch.Tensor:
    """W_0* = C_0 (lam W0 + mu X) = W0 + mu C_0 (X - G W0)   (docs/method.md section 3 with no edits).

    Written as a correction of W0, so that W_0* = W0 exactly when V0 = K0 W0.
    """
    W = W0.clone()
    if anchor is not None and mu != 0.0 and not anchor.cross_is_default:
        W.addmm_(C0, anchor.pull(W0), alpha=mu)  # (d_k, d_k) @ (d_k, d_v)
    return W


# The dtype of the small u x u algebra: S, its Cholesky factor L, and the solves with L.
SMALL_DTYPE = torch.float64


def _gain(C: torch.Tensor, K: torch.Tensor, sign: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """F = C K^T and the Cholesky factor L (float64) of S = I + sign * K F (sign = +1 update, -1 retract).

    F is the one pass over C that reads it; S is accumulated in float64 (module docstring).
    """
    F = C @ K.T  # (d_k, d_k) @ (d_k, u) -> (d_k, u)
    S = K.to(SMALL_DTYPE) @ F.to(SMALL_DTYPE)  # (u, d_k) @ (d_k, u) -> (u, u)
    S = 0.5 * (S + S.T)
    if sign < 0:
        S = -S
    S.diagonal().add_(1.0)
    if not bool(torch.isfinite(S).all()):
        raise NonFiniteError(
            "K C K^T is not finite: the keys are too large for this dtype (or C is); "
            "rescale them or use float64"
        )
    L, info = torch.linalg.cholesky_ex(S)
    return F, L, int(info)


def _guard_products(name: str, *pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Refuse a step whose factors are non-finite, or whose products could overflow.

    |(A B)_ij| <= ||A||_F ||B||_F, so finite norms bound every entry of the rank-u products.
    """
    limit = float(torch.finfo(pairs[0][0].dtype).max)
    for A, B in pairs:
        nA = float(torch.linalg.vector_norm(A, dtype=torch.float64))
        nB = float(torch.linalg.vector_norm(B, dtype=torch.float64))
        if not (nA * nB < limit):  # also catches NaN
            raise NonFiniteError(
                f"{name} would produce non-finite values (factor norms {nA:.3e} and {nB:.3e}); "
                "the keys or values are too large for this dtype: rescale them or use float64"
            )


def _prepare_write(C: torch.Tensor, W: torch.Tensor, K: torch.Tensor, V: torch.Tensor):
    """F = C K^T, S = I + K F = L L^T, E = V - K W, Z = S^{-1} E; checked, nothing written."""
    F, L, info = _gain(C, K, +1.0)
    if info != 0:
        raise FactorizationError(
            f"S = I + K C K^T is not positive definite (Cholesky fails at leading minor {info}); "
            "C has lost positive definiteness: rebuild it from the information matrix, or work "
            "in float64"
        )
    E = torch.addmm(V, K, W, alpha=-1.0)  # (u, d_v) = V - (u, d_k) @ (d_k, d_v), residual before the write
    Z = torch.cholesky_solve(E.to(SMALL_DTYPE), L).to(W.dtype)  # (u, d_v) = S^{-1} E, the residual after
    _guard_products("the update of W", (F, Z))
    return F, L, E, Z


def _downdate_factor(F: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """G = F R^{-1} with S = R^T R, R = L^T, so that G G^T = F S^{-1} F^T.  # (d_k, u)

    A triangular solve from the right, G R = F, so that neither F nor G is transposed in memory.
    """
    G = torch.linalg.solve_triangular(L.mT, F.to(SMALL_DTYPE), upper=True, left=False)  # (d_k, u) = F R^{-1}
    G = G.to(F.dtype)
    _guard_products("the downdate of C", (G, G))
    return G


def rls_write(C: torch.Tensor, W: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *,
              inplace: bool = False) -> Step:
    """W_t = W_{t-1} + F S^{-1} (V - K W_{t-1}),  F = C K^T,  S = I + K F   (docs/method.md section 4).

    Writes W only; the returned :class:`Step` carries the input C unchanged. This is the step of
    an editor that does not accumulate (MEMIT restarts from C_0 at every batch).
    """
    F, _, E, Z = _prepare_write(C, W, K, V)
    W_new = W.addmm_(F, Z) if inplace else torch.addmm(W, F, Z)  # (d_k, u) @ (u, d_v)
    return Step(C, W_new, float(torch.linalg.vector_norm(E)), float(torch.linalg.vector_norm(Z)))


def rls_update(C: torch.Tensor, W: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *,
               inplace: bool = False) -> Step:
    """One batch of the Woodbury recursion (docs/method.md section 4):

        F = C K^T,  S = I + K F = R^T R,  G = F R^{-1}
        C_t = C_{t-1} - G G^T
        W_t = W_{t-1} + F S^{-1} (V - K W_{t-1})

    Cost O(d_k^2 u + d_k d_v u + u^3), independent of how many batches came before. Everything
    that can fail runs before the first write, so with ``inplace=True`` a failure leaves C and W
    untouched.
    """
    F, L, E, Z = _prepare_write(C, W, K, V)
    G = _downdate_factor(F, L)
    if inplace:
        W_new = W.addmm_(F, Z)  # (d_k, u) @ (u, d_v)
        C_new = C.addmm_(G, G.T, alpha=-1.0)  # (d_k, u) @ (u, d_k), no d_k x d_k temporary
    else:
        W_new = torch.addmm(W, F, Z)
        C_new = torch.addmm(C, G, G.T, alpha=-1.0)
    return Step(C_new, W_new, float(torch.linalg.vector_norm(E)), float(torch.linalg.vector_norm(Z)))


def rls_retract(C: torch.Tensor, W: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *,
                inplace: bool = False) -> Step:
    """Remove a batch that was applied before: the inverse Woodbury step (docs/method.md section 4).

        F = C K^T,  T = I - K F = R^T R,  G = F R^{-1}
        C_{t-1} = C_t + C K^T (I - K C K^T)^{-1} K C = C_t + G G^T
        W_{t-1} = W_t - F T^{-1} (V - K W_t)

    (From A_{t-1} = A_t - K^T K and b_{t-1} = b_t - K^T V: W_{t-1} = W_t + C_{t-1} K^T (K W_t - V),
    and C_{t-1} K^T = F T^{-1}.) If the batch was applied, T = S^{-1} is positive definite; a
    T that is not proves the batch was never applied, and :class:`NotAppliedError` is raised.
    ``residual_before`` and ``residual_after`` are the batch's residuals with and without it.
    """
    F, L, info = _gain(C, K, -1.0)
    if info != 0:
        raise NotAppliedError(
            "this batch cannot have been applied: I - K C K^T is not positive definite "
            f"(Cholesky fails at leading minor {info}). Only a batch that was added by update() "
            "can be retracted, with exactly the same keys"
        )
    E = torch.addmm(V, K, W, alpha=-1.0)  # (u, d_v) = V - (u, d_k) @ (d_k, d_v), residual with the batch
    Z = torch.cholesky_solve(E.to(SMALL_DTYPE), L).to(W.dtype)  # (u, d_v) = T^{-1} E, the residual without it
    _guard_products("the retraction", (F, Z))
    G = _downdate_factor(F, L)  # (d_k, u), G G^T = F T^{-1} F^T
    if inplace:
        W_new = W.addmm_(F, Z, alpha=-1.0)
        C_new = C.addmm_(G, G.T)
    else:
        W_new = torch.addmm(W, F, Z, alpha=-1.0)
        C_new = torch.addmm(C, G, G.T)
    return Step(C_new, W_new, float(torch.linalg.vector_norm(E)), float(torch.linalg.vector_norm(Z)))
