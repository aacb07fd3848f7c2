"""Small float64 helpers shared by the theory functions (no solver math lives here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

DTYPE = torch.float64


def as64(x: Any, name: str) -> torch.Tensor:
    """``x`` as a float64 torch tensor (a copy when the dtype changes; inputs are never modified)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to(DTYPE)
    else:
        t = torch.as_tensor(x, dtype=DTYPE)
    # one reduction first (NaN and inf propagate into the sum); the element-wise test only when it
    # is not finite, so that a sum that merely overflows is not mistaken for a non-finite entry
    if not math.isfinite(float(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has non-finite entries")
    return t


def stack(keys: Any, values: Any, d_k: int, d_v: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a stream (one matrix each, or two equally long lists of batches) into K (n, d_k), V (n, d_v).

    The objective is a sum over rows, so every statement below depends on the stream only through
    its stacked rows; the batching matters only for the per-step results.
    """
    if keys is None and values is None:
        return torch.zeros(0, d_k, dtype=DTYPE), torch.zeros(0, d_v, dtype=DTYPE)
    if isinstance(keys, Sequence) and not isinstance(keys, str):
        if not (isinstance(values, Sequence) and len(values) == len(keys)):
            raise ValueError("keys is a list of batches, so values must be a list of the same length")
        if len(keys) == 0:
            return torch.zeros(0, d_k, dtype=DTYPE), torch.zeros(0, d_v, dtype=DTYPE)
        K = torch.cat([as64(k, "keys").reshape(-1, d_k) for k in keys])
        V = torch.cat([as64(v, "values").reshape(-1, d_v) for v in values])
    else:
        K, V = as64(keys, "keys"), as64(values, "values")
    if K.ndim != 2 or K.shape[1] != d_k:
        raise ValueError(f"keys must have d_k = {d_k} columns, got shape {tuple(K.shape)}")
    if V.ndim != 2 or V.shape[1] != d_v or V.shape[0] != K.shape[0]:
        raise ValueError(f"values must be ({K.shape[0]}, {d_v}), got shape {tuple(V.shape)}")
    return K, V


def spectral_norm(M: torch.Tensor) -> float:
    """||M||_2, the largest singular value (0 for an empty matrix)."""
    if M.numel() == 0:
        return 0.0
    return float(torch.linalg.matrix_norm(M, ord=2))


def sym_eigvalsh(M: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending) of the symmetric part of M."""
    return torch.linalg.eigvalsh(0.5 * (M + M.T))


def prior_matrix(d_k: int, lam: float, mu: float, anchor_gram: Any) -> torch.Tensor:
    """P = lam I + mu G, the regularisers' part of the normal matrix (docs/method.md section 3)."""
    P = lam * torch.eye(d_k, dtype=DTYPE)
    if anchor_gram is not None and mu != 0.0:
        P = P + mu * as64(anchor_gram, "anchor_gram")
    return 0.5 * (P + P.T)


def check_weights(lam: float, mu: float) -> tuple[float, float]:
    lam, mu = float(lam), float(mu)
    if not (lam >= 0.0 and mu >= 0.0):
        raise ValueError(f"lam and mu must be >= 0, got lam={lam}, mu={mu}")
    return lam, mu
