"""Random least-squares problems with controlled conditioning, and the tolerance table.

Matrices are built from a drawn spectrum: M = U diag(s) V^T with Haar-random U, V and singular
values log-spaced over a drawn condition number, so a test knows how hard its problem is.
Randomness inside a problem comes from a numpy Generator seeded by hypothesis, so that failures
shrink to a seed and a few sizes instead of to thousands of floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

# Relative tolerance on ||W_recursive - W_exact||_F / ||W_exact||_F, per unit of kappa, the largest
# condition number of the normal matrices A_0..A_t along the stream: the forward error of a stable
# solver is O(eps * kappa). The factor 1000 covers the dimension and the number of steps here
# (d_k <= 12, <= 30 rows): over 300 random problems per dtype the observed error / (eps * kappa)
# had median 0.3 and maximum 121 (float64) and 199 (float32).
TOL_PER_KAPPA = {torch.float64: 1000 * np.finfo(np.float64).eps, torch.float32: 1000 * np.finfo(np.float32).eps}
# Largest condition number of the *keys* the strategies draw, and smallest lam, per dtype. float32
# problems are kept better conditioned so that their tolerance stays meaningful; the ill-conditioned
# cases (kappa up to ~1e6) are exercised in float64.
MAX_LOG10_COND = {torch.float64: 6.0, torch.float32: 1.0}
MIN_LOG10_LAM = {torch.float64: -2.0, torch.float32: -1.0}
# A tolerance above this would make the comparison vacuous: such examples are rejected.
MAX_REL_TOL = 0.05


def tolerance(dtype: torch.dtype, kappa: float) -> float:
    return float(max(TOL_PER_KAPPA[dtype] * kappa, 10 * TOL_PER_KAPPA[dtype]))


def rel_tol(dtype: torch.dtype, kappa: float) -> float:
    """The tolerance for a problem of condition kappa; rejects the example if it would be vacuous."""
    tol = tolerance(dtype, kappa)
    assume(tol <= MAX_REL_TOL)
    return tol


def spectral_matrix(rng: np.random.Generator, n: int, d: int, log10_cond: float, scale: float = 1.0):
    """An (n, d) matrix whose min(n, d) singular values are log-spaced from scale down to scale/10^c."""
    r = min(n, d)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((d, r)))
    s = scale * np.logspace(0.0, -log10_cond, r) if r > 1 else np.array([scale])
    return (U * s) @ V.T


@dataclass
class Problem:
    """A stream of batches plus the regularisers; all arrays float64 numpy."""

    W0: np.ndarray
    batches: list[tuple[np.ndarray, np.ndarray]]
    lam: float
    mu: float
    K0: np.ndarray | None
    V0: np.ndarray | None  # None: default V0 = K0 W0
    extra: dict = field(default_factory=dict)

    @property
    def d_k(self) -> int:
        return self.W0.shape[0]

    def anchor_kwargs(self, form: str = "keys") -> dict:
        if self.K0 is None:
            return {}
        if form == "keys":
            kw = {"anchor_keys": self.K0}
            if self.V0 is not None:
                kw["anchor_values"] = self.V0
            return kw
        kw = {"anchor_gram": self.K0.T @ self.K0}
        if self.V0 is not None:
            kw["anchor_cross"] = self.K0.T @ self.V0
        return kw

    def normal_matrix(self, upto: int | None = None) -> np.ndarray:
        A = self.lam * np.eye(self.d_k)
        if self.K0 is not None:
            A = A + self.mu * self.K0.T @ self.K0
        for K, _ in self.batches[:upto]:
            A = A + K.T @ K
        return A

    def kappa(self, upto: int | None = None) -> float:
        """Largest condition number of A_0, ..., A_upto: the recursion's error carries the worst
        prefix (C_0 is formed once, from A_0 alone)."""
        last = len(self.batches) if upto is None else upto
        return max(float(np.linalg.cond(self.normal_matrix(i))) for i in range(last + 1))


@st.composite
def problems(draw, dtype=torch.float64, min_batches=1, max_batches=6, max_u=5, anchor=None,
             custom_values=None, allow_lam_zero=True):
    """Draw a well-posed problem (lam I + mu G positive definite) with bounded conditioning."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    d_k = draw(st.integers(1, 12))
    d_v = draw(st.integers(1, 5))
    n_batches = draw(st.integers(min_batches, max_batches))
    sizes = [draw(st.integers(1, max_u)) for _ in range(n_batches)]
    log_cond = draw(st.floats(0.0, MAX_LOG10_COND[dtype]))
    use_anchor = draw(st.booleans()) if anchor is None else anchor
    lam_zero = allow_lam_zero and use_anchor and draw(st.booleans())
    lam = 0.0 if lam_zero else 10 ** draw(st.floats(MIN_LOG10_LAM[dtype], 1.0))
    mu = 10 ** draw(st.floats(-2.0, 1.0)) if use_anchor else 0.0
    W0 = rng.standard_normal((d_k, d_v))
    K0 = V0 = None
    if use_anchor:
        n0 = d_k + draw(st.integers(0, 8)) if lam_zero else draw(st.integers(1, 2 * d_k + 2))
        K0 = spectral_matrix(rng, n0, d_k, log_cond / 2, scale=1.0)
        wants_values = draw(st.booleans()) if custom_values is None else custom_values
        if wants_values:
            V0 = K0 @ W0 + 0.3 * rng.standard_normal((n0, d_v))
    batches = []
    for u in sizes:
        K = spectral_matrix(rng, u, d_k, log_cond, scale=10 ** rng.uniform(-0.5, 0.5))
        V = rng.standard_normal((u, d_v))
        batches.append((K, V))
    to = np.float32 if dtype == torch.float32 else np.float64
    # Round the data to the test dtype once, so that float32 runs and float64 oracles see the
    # same numbers and only the arithmetic differs.
    W0 = W0.astype(to).astype(np.float64)
    batches = [(K.astype(to).astype(np.float64), V.astype(to).astype(np.float64)) for K, V in batches]
    if K0 is not None:
        K0 = K0.astype(to).astype(np.float64)
        V0 = None if V0 is None else V0.astype(to).astype(np.float64)
    return Problem(W0, batches, lam, mu, K0, V0, {"seed": seed})


def t(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(x).to(dtype)


def rel_err(A: torch.Tensor, B: torch.Tensor, ref_scale: torch.Tensor) -> float:
    """||A - B||_F / max(||ref_scale||_F, tiny), in float64."""
    num = float(torch.linalg.vector_norm(A.double() - B.double()))
    den = float(torch.linalg.vector_norm(ref_scale.double()))
    return num / max(den, 1e-300)


def snapshot(ed) -> dict:
    """A deep copy of an editor's state dict, to compare with after a call that must not change it."""
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in ed.state_dict().items()}


def assert_unchanged(ed, before: dict) -> None:
    """The editor's state equals ``before`` bitwise (tensors) and exactly (scalars)."""
    after = ed.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v) if isinstance(v, torch.Tensor) else after[k] == v, k


def retraction_kappa(p: Problem, drop: int) -> float:
    """The condition number that scales the error of retracting batch ``drop`` after all of ``p``'s.

    The retracted state is the solution of A_kept = A_t - K^T K from data (C_t, W_t) that already
    carry the stream's rounding (relative eps * kappa_stream), so the condition numbers multiply
    (kappa_stream * cond(A_kept)). On top, T = I - K C_t K^T = S^{-1} is formed by cancellation
    (K C_t K^T = I - S^{-1} is close to I when S is large): its relative error is ||S|| times C_t's,
    and the step divides by T, so the amplification is ||S||^2 (>= cond(S) ||S||, as S >= I).
    cond(S) alone misses it when u = 1 (a hypothesis-found float32 case: d_k = 1, ||S|| = 57, error
    1.3e4 eps where cond(S) = 1).
    """
    K, _ = p.batches[drop]
    A_kept = p.normal_matrix() - K.T @ K
    S = np.eye(K.shape[0]) + K @ np.linalg.solve(A_kept, K.T)
    return p.kappa() * float(np.linalg.cond(A_kept)) * float(np.linalg.norm(S, 2)) ** 2
