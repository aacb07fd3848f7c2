"""Streams on which the bounds of :mod:`theory.bounds` are tight (ratio measured / bound = 1, or -> 1).

Each function returns a :class:`TightStream` (float64 tensors). The tests check each claim, and
the bounds experiment records their ratios next to those of random streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DTYPE = torch.float64


@dataclass(frozen=True)
class TightStream:
    """A stream of batches, the editor's parameters, and which bound it makes tight."""

    bound: str
    W0: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lam: float
    mu: float
    anchor_gram: torch.Tensor | None
    comparator: torch.Tensor | None = None  # W* for the comparator and cohort bounds


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orthonormal_rows(u: int, d: int, g: torch.Generator) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(d, u, generator=g, dtype=DTYPE))
    return Q.T  # (u, d), Q Q^T = I


def _anchor_metric(d_k: int, lam: float, mu: float, g: torch.Generator):
    """A random anchor gram G = K0^T K0 (K0: 2 d_k x d_k) and P^{1/2}, P^{-1/2} of P = lam I + mu G."""
    K0 = torch.randn(2 * d_k, d_k, generator=g, dtype=DTYPE)
    G = K0.T @ K0
    ev, U = torch.linalg.eigh(lam * torch.eye(d_k, dtype=DTYPE) + mu * G)
    return G, (U * ev.sqrt()) @ U.T, (U / ev.sqrt()) @ U.T


def quarter_tight_stream(d_k: int = 8, d_v: int = 3, u: int = 3, lam: float = 0.5, mu: float = 2.0,
                         seed: int = 0) -> TightStream:
    """K = Q P^{1/2} with orthonormal rows Q: every singular value of K P^{-1/2} is 1, so the
    quarter energy bound lam||W_t - W0||^2 + mu||K0 (W_t - W0)||^2 <= E_t / 4 is an equality."""
    g = _gen(seed)
    G, P_half, _ = _anchor_metric(d_k, lam, mu, g)
    K = _orthonormal_rows(u, d_k, g) @ P_half  # (u, d_k)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    V = K @ W0 + torch.randn(u, d_v, generator=g, dtype=DTYPE)
    return TightStream("quarter_energy", W0, [K], [V], lam, mu, G)


def energy_tight_stream(d_k: int = 8, d_v: int = 3, lam: float = 1e6, seed: int = 0) -> TightStream:
    """Regulariser far stronger than the keys: J_t(W_t) / J_t(W0) = 1 - O(||K||^2 / lam)."""
    g = _gen(seed)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    keys = [torch.randn(2, d_k, generator=g, dtype=DTYPE) for _ in range(3)]
    values = [torch.randn(2, d_v, generator=g, dtype=DTYPE) for _ in range(3)]
    return TightStream("energy", W0, keys, values, lam, 0.0, None)


def spectral_tight_stream(d_k: int = 6, d_v: int = 2, lam: float = 0.1, mu: float = 1.0,
                          seed: int = 0) -> TightStream:
    """Anchor Gram G = diag(g_1 < g_2 <= ...) and keys along e_1 with ||k||^2 <= mu (g_2 - g_1):
    e_1 stays A_t's smallest eigenvector, so ||W_t - W0||_2 = ||C_t||_2 ||B_t||_2 exactly."""
    g = _gen(seed)
    G = torch.diag(torch.tensor([1.0] + [10.0 + i for i in range(d_k - 1)], dtype=DTYPE))
    e1 = torch.zeros(1, d_k, dtype=DTYPE)
    e1[0, 0] = 1.0
    budget = mu * (10.0 - 1.0)  # total key energy allowed along e_1
    a = (budget / 3.0) ** 0.5  # three keys of squared norm budget/3
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    keys = [a * e1 for _ in range(3)]
    values = [torch.randn(1, d_v, generator=g, dtype=DTYPE) for _ in range(3)]
    return TightStream("spectral", W0, keys, values, lam, mu, G)


def single_edit_stream(d_k: int = 6, d_v: int = 3, n: int = 5, lam: float = 0.3, seed: int = 0) -> TightStream:
    """Batches of one edit (u = 1): the per-step bound and both soft-write bounds are equalities,
    and (u < d_k) the Loewner ratio is exactly 1."""
    g = _gen(seed)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    keys = [torch.randn(1, d_k, generator=g, dtype=DTYPE) for _ in range(n)]
    values = [torch.randn(1, d_v, generator=g, dtype=DTYPE) for _ in range(n)]
    return TightStream("step", W0, keys, values, lam, 0.0, None)


def retention_tight_stream(d_k: int = 4, d_v: int = 2, lam: float = 1e-6, seed: int = 0) -> TightStream:
    """Two conflicting edits of one key (values v + a and v - a), lam small.

    No W fits both: the edits keep a residual of at least 2 ||a||^2 whatever the editor does, and
    RLSEdit's is 2 ||a||^2 + O(lam). So F_t(W_t) / min J_t = 1 - Omega(W_t) / J_t(W_t) = 1 - O(lam):
    the retention bound (and the comparator bound with W* the least-squares fit, the comparator)
    cannot be improved by a constant factor.
    """
    g = _gen(seed)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    k = torch.randn(1, d_k, generator=g, dtype=DTYPE)
    a = torch.randn(1, d_v, generator=g, dtype=DTYPE)
    shift = torch.randn(1, d_v, generator=g, dtype=DTYPE)
    V1, V2 = k @ W0 + shift + a, k @ W0 + shift - a
    W_ls = W0 + k.T @ shift / float(k @ k.T)  # k^T W_ls = k^T W0 + shift, the mean of the two values
    return TightStream("retention", W0, [k, k.clone()], [V1, V2], lam, 0.0, None, W_ls)


def quarter_comparator_tight_stream(d_k: int = 8, d_v: int = 3, u: int = 3, lam: float = 0.5, mu: float = 2.0,
                                    seed: int = 0) -> TightStream:
    """Noise-free realisable stream V = K W* with K = Q P^{1/2} (Q Q^T = I) and
    W* - W0 = P^{-1/2} Q^T Z: every singular value of K P^{-1/2} that meets the edits is 1, so
    ||K W_t - V||_F = sqrt(Omega(W*)) / 2 exactly (the quarter comparator bound is an equality)."""
    g = _gen(seed)
    G, P_half, P_mhalf = _anchor_metric(d_k, lam, mu, g)
    Q = _orthonormal_rows(u, d_k, g)
    K = Q @ P_half  # (u, d_k)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    W_star = W0 + P_mhalf @ Q.T @ torch.randn(u, d_v, generator=g, dtype=DTYPE)
    return TightStream("comparator_quarter", W0, [K], [K @ W_star], lam, mu, G, W_star)


def cohort_tight_stream(d_k: int = 6, d_v: int = 3, lam: float = 0.7, mu: float = 1.5, seed: int = 0) -> TightStream:
    """One edit k (u = 1) of a noise-free realisable stream with W* - W0 = P^{-1} k w^T: then
    b_t - A_t W* = -k w^T, and both inequalities of the cohort bound are equalities:
    ||k^T (W_t - W*)|| = (k^T C_t k) ||w|| = sqrt(k^T C_t k) sqrt(tr(g^T C_t g))."""
    g = _gen(seed)
    K0 = torch.randn(d_k, d_k, generator=g, dtype=DTYPE)
    G = K0.T @ K0
    P = lam * torch.eye(d_k, dtype=DTYPE) + mu * G
    k = torch.randn(1, d_k, generator=g, dtype=DTYPE)
    w = torch.randn(1, d_v, generator=g, dtype=DTYPE)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    W_star = W0 + torch.linalg.solve(P, k.T) @ w
    return TightStream("retention_cohort", W0, [k], [k @ W_star], lam, mu, G, W_star)


def regret_tight_stream(d_k: int = 4, d_v: int = 2, lam: float = 1.0, scale: float = 1e-3,
                        seed: int = 0) -> TightStream:
    """One small key (k^T C_0 k = s ~ scale^2): the regret bound's only inequality,
    s / (1 + s) <= log(1 + s), is sharp as s -> 0, and the ratio is 1 - O(s^2)."""
    g = _gen(seed)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    k = scale * torch.randn(1, d_k, generator=g, dtype=DTYPE)
    V = k @ W0 + torch.randn(1, d_v, generator=g, dtype=DTYPE)
    return TightStream("regret", W0, [k], [V], lam, 0.0, None)


ALL_TIGHT = {
    "quarter_energy": quarter_tight_stream,
    "energy": energy_tight_stream,
    "spectral": spectral_tight_stream,
    "step": single_edit_stream,
    "retention": retention_tight_stream,
    "comparator_quarter": quarter_comparator_tight_stream,
    "retention_cohort": cohort_tight_stream,
    "regret": regret_tight_stream,
}


@dataclass(frozen=True)
class BreakStream:
    """A stream on which some baselines keep the edits worse than the RLS retention bound allows:
    F_t(W_baseline) > min J_t. ``alphaedit_threshold`` is the absolute eigenvalue threshold of
    AlphaEdit's null-space projector for this anchor."""

    W0: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lam: float
    mu: float
    anchor_gram: torch.Tensor
    alphaedit_threshold: float


def retention_break_stream(d_k: int = 4, d_v: int = 2, lam: float = 1e-3, mu: float = 1e-2,
                           seed: int = 0) -> BreakStream:
    """Three batches that break the RLS retention bound for MEMIT, ROME and AlphaEdit.

    The anchor Gram G = diag(0, 0, n, n) has the null space span(e_1, e_2). Batches 1 and 2 write
    two conflicting values v + a, v - a to the key 3 e_1 (in the null space); batch 3 writes a
    value to the key 3 e_3, in the anchor's span. RLSEdit keeps both conflicting edits at their
    mean (residual 2 ||a||^2) and writes batch 3 almost fully (mu is small), so
    min J_t ~ 2 ||a||^2. MEMIT and ROME forget batch 1 for batch 2 (residual ~ 4 ||a||^2: ratio ~ 2);
    AlphaEdit keeps the mean but cannot write in the anchor's span at all, so batch 3's whole
    residual stays (ratio ~ 1 + ||b||^2 / (2 ||a||^2)).
    """
    g = _gen(seed)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=DTYPE)
    G = torch.diag(torch.tensor([0.0, 0.0] + [100.0] * (d_k - 2), dtype=DTYPE))
    k1 = torch.zeros(1, d_k, dtype=DTYPE)
    k1[0, 0] = 3.0
    k3 = torch.zeros(1, d_k, dtype=DTYPE)
    k3[0, 2] = 3.0
    a = torch.randn(1, d_v, generator=g, dtype=DTYPE)
    a = a / torch.linalg.vector_norm(a)
    b = torch.randn(1, d_v, generator=g, dtype=DTYPE)
    b = b / torch.linalg.vector_norm(b)
    keys = [k1, k1.clone(), k3]
    values = [k1 @ W0 + a, k1 @ W0 - a, k3 @ W0 + 2.0 * b]
    return BreakStream(W0, keys, values, lam, mu, G, alphaedit_threshold=1.0)
