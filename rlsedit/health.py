"""Numerical health of the recursion's state over long streams (docs/method.md sections 3-4).

Symbols as in :mod:`rlsedit.recursion`: C = A^{-1} (d_k, d_k), W (d_k, d_v), a batch K (u, d_k),
V (u, d_v), the anchor Gram G and cross term X, and the information matrix and right-hand side

    A_t = lam I + mu G + sum_{i<=t} K_i^T K_i                   (d_k, d_k)   (section 3)
    B_t = mu (X - G W0) + sum_{i<=t} K_i^T (V_i - K_i W0)       (d_k, d_v)
    C_t = A_t^{-1},   W_t = W0 + A_t^{-1} B_t

Two tools live here:

* Diagnostics on request (:func:`diagnose`): the symmetry error of C, its smallest and largest
  eigenvalue, a condition number estimate and whether C is still positive definite, so that a long
  run can be monitored. The estimate costs one Cholesky factorisation of C plus ``iters``
  matrix-vector products; ``exact=True`` uses a full symmetric eigensolver in float64 instead.
* Re-factorisation (:class:`Information`): A_t and B_t accumulated in float64 next to the
  recursion, from which C_t and W_t are rebuilt by one Cholesky factorisation of A_t.

Why the information matrix and not a square-root form: a square-root recursion (propagating a
Cholesky factor of C) would replace the Woodbury step itself and needs a hyperbolic downdate, which
is itself the weak point in finite precision. The information matrix is the closed form of
section 3, accumulated by additions of positive semi-definite terms only, so it carries no
cancellation; a rebuild returns the float64 batch solution rounded to the working dtype, however far
the recursion had drifted. It costs one float64 (d_k, d_k) matrix of memory (twice a float32 C),
O(d_k^2 u) float64 flops per batch, and O(d_k^3) per rebuild. docs/reliability.md has the
measurements that chose the default (off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .anchor import Anchor
from .errors import ParameterError, RefactorizationError, ShapeError
from .recursion import symmetrize_


@dataclass(frozen=True)
class Health:
    """Diagnostics of C (all floats; eigenvalues of the symmetric part of C).

    Attributes:
        symmetry_error: max |C - C^T| / max |C| (0 for an exactly symmetric C).
        min_eigenvalue, max_eigenvalue: extreme eigenvalues of C (estimates unless ``exact``).
        condition_number: max / min eigenvalue; ``inf`` when C is not positive definite.
        positive_definite: whether C admits a Cholesky factorisation in its own dtype.
        exact: True when the eigenvalues come from a full eigensolver in float64.
    """

    symmetry_error: float
    min_eigenvalue: float
    max_eigenvalue: float
    condition_number: float
    positive_definite: bool
    exact: bool


def symmetry_error(C: torch.Tensor) -> float:
    """max |C - C^T| / max |C|, computed row block by row block (no (d_k, d_k) temporary)."""
    scale = float(C.abs().max())
    if scale == 0.0:
        return 0.0
    worst, step = 0.0, 1024
    for i in range(0, C.shape[0], step):
        block = C[i:i + step] - C[:, i:i + step].T  # (step, d_k)
        worst = max(worst, float(block.abs().max()))
    return worst / scale


def _rayleigh(C: torch.Tensor, x: torch.Tensor) -> float:
    """x^T C x / x^T x in float64 (x^T C x only sees the symmetric part of C)."""
    Cx = (C @ x).double()  # (d_k,)
    xd = x.double()
    return float(xd @ Cx) / float(xd @ xd)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(x)
    return x / n if float(n) > 0.0 else x


def extreme_eigenvalues(C: torch.Tensor, *, iters: int = 30, seed: int = 0) -> tuple[float, float, bool]:
    """Estimate (smallest, largest) eigenvalue of C and whether C is positive definite.

    The largest comes from ``iters`` steps of power iteration on C, the smallest from ``iters`` steps
    of inverse iteration through a Cholesky factor of C (which also decides positive definiteness).
    When that factorisation fails, the smallest eigenvalue is estimated by power iteration on
    C - lam_max I instead. Rayleigh quotients never overshoot, so the largest is a lower bound and
    the smallest an upper bound of the true values, and the condition number is underestimated at
    worst. The start vector is seeded: two calls on the same C give the same numbers.
    """
    if iters < 1:
        raise ParameterError(f"iters must be >= 1, got {iters}")
    d = C.shape[0]
    g = torch.Generator(device="cpu").manual_seed(seed)
    start = torch.randn(d, generator=g, dtype=torch.float64).to(dtype=C.dtype, device=C.device)
    x = _normalise(start)
    for _ in range(iters):
        x = _normalise(C @ x)  # (d_k, d_k) @ (d_k,)
    lam_max = _rayleigh(C, x)
    L, info = torch.linalg.cholesky_ex(C)
    if int(info) == 0:
        x = _normalise(start)
        for _ in range(iters):
            x = _normalise(torch.cholesky_solve(x[:, None], L)[:, 0])  # C^{-1} x
        return _rayleigh(C, x), lam_max, True
    x = _normalise(start)
    for _ in range(iters):
        x = _normalise(C @ x - lam_max * x)  # (C - lam_max I) x: dominated by lam_min - lam_max
    return _rayleigh(C, x), lam_max, False


def diagnose(C: torch.Tensor, *, exact: bool = False, iters: int = 30) -> Health:
    """Health of C: symmetry error, extreme eigenvalues, condition number, positive definiteness.

    ``exact=False`` (default) estimates the eigenvalues (:func:`extreme_eigenvalues`, one Cholesky
    factorisation plus 2 * ``iters`` matrix-vector products); ``exact=True`` computes them with
    ``torch.linalg.eigvalsh`` on the symmetric part of C in float64 (O(d_k^3), several seconds at
    d_k = 4096).
    """
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ShapeError(f"C must be square, got shape {tuple(C.shape)}")
    sym = symmetry_error(C)
    if exact:
        C64 = C.double()
        evals = torch.linalg.eigvalsh(0.5 * (C64 + C64.T))
        lo, hi = float(evals[0]), float(evals[-1])
        pd = lo > 0.0 and int(torch.linalg.cholesky_ex(C)[1]) == 0
    else:
        lo, hi, pd = extreme_eigenvalues(C, iters=iters)
    cond = hi / lo if pd and lo > 0.0 else float("inf")
    return Health(sym, lo, hi, cond, pd, exact)


class Information:
    """A_t and B_t of the module docstring, accumulated in float64; rebuilds (C_t, W_t) exactly.

    Attributes:
        A: lam I + mu G + sum K_i^T K_i, (d_k, d_k) float64.
        B: mu (X - G W0) + sum K_i^T (V_i - K_i W0), (d_k, d_v) float64.
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        self.A = A
        self.B = B

    @classmethod
    def prior(cls, W0: torch.Tensor, lam: float, mu: float, anchor: Anchor | None) -> Information:
        """A_0 = lam I + mu G,  B_0 = mu (X - G W0)   (section 3 with no edits), in float64."""
        d_k = W0.shape[0]
        A = torch.zeros(d_k, d_k, dtype=torch.float64, device=W0.device)
        B = torch.zeros(W0.shape, dtype=torch.float64, device=W0.device)
        if anchor is not None and mu != 0.0:
            G = anchor.gram.double()
            A.add_(G, alpha=mu)
            if not anchor.cross_is_default:
                B.add_(anchor.cross.double() - G @ W0.double(), alpha=mu)  # (d_k, d_v)
        A.diagonal().add_(lam)
        return cls(A, B)

    def add(self, K: torch.Tensor, V: torch.Tensor, W0: torch.Tensor, sign: float = 1.0) -> None:
        """A += sign K^T K,  B += sign K^T (V - K W0)   (sign = -1 removes a retracted batch)."""
        K64 = K.double()
        self.A.addmm_(K64.T, K64, alpha=sign)  # (d_k, u) @ (u, d_k)
        self.B.addmm_(K64.T, V.double() - K64 @ W0.double(), alpha=sign)  # (d_k, u) @ (u, d_v)

    def rebuild(self, W0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """C = A^{-1},  W = W0 + A^{-1} B, by one Cholesky factorisation of A; in W0's dtype.

        Raises :class:`RefactorizationError` when A is not positive definite (e.g. after retracting
        more than was applied, or a prior that was singular to begin with).
        """
        # Cholesky reads the lower triangle only (A is symmetric by construction); symmetrize_ works
        # in place: no d_k x d_k temporaries beyond L and C.
        L, info = torch.linalg.cholesky_ex(self.A)
        if int(info) != 0:
            raise RefactorizationError(
                "the information matrix lam I + mu G + sum K^T K is not positive definite "
                f"(Cholesky fails at leading minor {int(info)}); C cannot be rebuilt from it"
            )
        C = symmetrize_(torch.cholesky_inverse(L))  # (d_k, d_k)
        W = W0.double() + torch.cholesky_solve(self.B, L)  # (d_k, d_v)
        return C.to(W0.dtype), W.to(W0.dtype)

    def clone(self) -> Information:
        return Information(self.A.clone(), self.B.clone())
