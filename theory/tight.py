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


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orthonormal_rows(u: int, d: int, g: torch.Generator) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(d, u, generator=g, dtype=DTYPE))
    return Q.T  # (u, d), Q Q^T = I


def quarter_tight_stream(d_k: int = 8, d_v: int = 3, u: int = 3, lam: float = 0.5, mu: float = 2.0,
                         seed: int = 0) -> TightStream:
    """K = Q P^{1/2} with orthonormal rows Q: every singular value of K P^{-1/2} is 1, so the
    quarter energy bound lam||W_t - W0||^2 + mu||K0 (W_t - W0)||^2 <= E_t / 4 is an equality."""
    g = _gen(seed)
    K0 = torch.randn(2 * d_k, d_k, generator=g, dtype=DTYPE)
    G = K0.T @ K0
    P = lam * torch.eye(d_k, dtype=DTYPE) + mu * G
    ev, U = torch.linalg.eigh(P)
    P_half = (U * ev.sqrt()) @ U.T
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


ALL_TIGHT = {
    "quarter_energy": quarter_tight_stream,
    "energy": energy_tight_stream,
    "spectral": spectral_tight_stream,
    "step": single_edit_stream,
}
