"""The batch oracle: docs/method.md's objective and its closed-form minimiser, solved from scratch.

    J(W) = sum_i ||K_i W - V_i||_F^2 + lam ||W - W0||_F^2 + mu ||K0 W - V0||_F^2      (section 2)
    W*   = (lam I + mu G + sum_i K_i^T K_i)^{-1} (lam W0 + mu X + sum_i K_i^T V_i)      (section 3)

:func:`batch_solve` shares no code with the recursion beyond input validation: it forms the whole
normal matrix and solves once, which is what the recursion must reproduce after every batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._validate import as_batch, as_tensor, as_weight, resolve_dtype
from .anchor import Anchor, resolve_anchor
from .errors import AnchorError, NoUniqueSolutionError, ShapeError


def _as_batches(keys: Any, values: Any, d_k: int, d_v: int, dtype, device):
    """keys/values: one stacked matrix each, or two equally long sequences of batches."""
    if isinstance(keys, Sequence) and not isinstance(keys, str):
        if not (isinstance(values, Sequence) and len(values) == len(keys)):
            raise ShapeError("keys is a list of batches, so values must be a list of the same length")
        out = []
        for i, (K, V) in enumerate(zip(keys, values, strict=True)):
            out.append(as_batch(K, V, d_k=d_k, d_v=d_v, dtype=dtype, device=device,
                                K_name=f"keys[{i}]", V_name=f"values[{i}]"))
        return out
    if keys is None and values is None:
        return []
    return [as_batch(keys, values, d_k=d_k, d_v=d_v, dtype=dtype, device=device,
                     K_name="keys", V_name="values")]


def _setup(W0, keys, values, lam, mu, anchor_keys, anchor_values, anchor_gram, anchor_cross, dtype):
    W0 = as_tensor(W0, "W0", dtype=resolve_dtype(dtype))
    lam = as_weight(lam, "lam")
    mu = as_weight(mu, "mu")
    anchor = resolve_anchor(W0, anchor_keys=anchor_keys, anchor_values=anchor_values,
                            anchor_gram=anchor_gram, anchor_cross=anchor_cross)
    if mu > 0 and anchor is None:
        raise AnchorError("mu > 0 needs an anchor: pass anchor_keys or anchor_gram")
    batches = _as_batches(keys, values, W0.shape[0], W0.shape[1], W0.dtype, W0.device)
    return W0, lam, mu, anchor, batches


def batch_solve(
    W0: Any,
    keys: Any,
    values: Any,
    *,
    lam: float = 0.0,
    mu: float = 0.0,
    anchor_keys: Any = None,
    anchor_values: Any = None,
    anchor_gram: Any = None,
    anchor_cross: Any = None,
    dtype: Any = None,
) -> torch.Tensor:
    """Minimise J(W) in closed form (docs/method.md section 3). Returns W* (d_k, d_v).

    Args:
        W0: pre-trained weight (d_k, d_v), row convention V ~ K W.
        keys, values: the edits, as one stacked (n, d_k) / (n, d_v) pair or as two lists of
            batches (``None`` for no edits).
        lam, mu, anchor_*: as for :class:`rlsedit.RLSEditor`.
        dtype: computation dtype; default follows W0.

    Solved as W* = W0 + A^{-1} (mu (X - G W0) + sum_i K_i^T (V_i - K_i W0)) with
    A = lam I + mu G + sum_i K_i^T K_i, by one Cholesky factorisation of A.

    Raises:
        NoUniqueSolutionError: A is singular (lam = 0 and too few independent keys).
    """
    W0, lam, mu, anchor, batches = _setup(W0, keys, values, lam, mu, anchor_keys, anchor_values,
                                          anchor_gram, anchor_cross, dtype)
    d_k = W0.shape[0]
    A = torch.zeros(d_k, d_k, dtype=W0.dtype, device=W0.device)  # normal matrix
    B = torch.zeros_like(W0)  # right-hand side, relative to W0
    A.diagonal().add_(lam)
    if anchor is not None and mu != 0.0:
        A.add_(anchor.gram, alpha=mu)
        if not anchor.cross_is_default:
            B.add_(anchor.pull(W0), alpha=mu)
    for K, V in batches:
        A.addmm_(K.T, K)  # (d_k, u) @ (u, d_k)
        B.addmm_(K.T, V - K @ W0)  # (d_k, u) @ (u, d_v)
    A = 0.5 * (A + A.T)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        raise NoUniqueSolutionError(
            "lam I + mu G + sum K_i^T K_i is singular (Cholesky fails at leading minor "
            f"{int(info)}): with lam = {lam} the keys and anchor do not determine W uniquely"
        )
    return W0 + torch.cholesky_solve(B, L)


@dataclass(frozen=True)
class ObjectiveValue:
    """J(W) and its three terms (all in float64).

    ``anchor_exact`` is False only when the anchor was given as statistics with a custom
    ``anchor_cross`` (||V0||^2 unknown): the anchor term is then ||K0 W - P V0||^2, where P projects
    on the column space of K0; it differs from ||K0 W - V0||^2 by a constant independent of W.
    """

    total: float
    edits: float
    weights: float
    anchor: float
    anchor_exact: bool = True


def anchor_residual(W: torch.Tensor, W0: torch.Tensor, anchor: Anchor) -> tuple[float, bool]:
    """||K0 W - V0||_F^2 from the statistics (float64): returns (value, exact)."""
    W, W0 = W.double(), W0.double()
    G, X = anchor.gram.double(), anchor.cross.double()
    D = W - W0
    if anchor.cross_is_default:
        return float((D * (G @ D)).sum()), True  # ||K0 (W - W0)||^2 = tr(D^T G D)
    quad = float((W * (G @ W)).sum()) - 2.0 * float((W * X).sum())
    if anchor.value_sqnorm is not None:
        return max(quad + anchor.value_sqnorm, 0.0), True
    projected = float((X * (torch.linalg.pinv(G, hermitian=True) @ X)).sum())  # ||P V0||^2
    return max(quad + projected, 0.0), False


def objective(
    W: Any,
    W0: Any,
    keys: Any = None,
    values: Any = None,
    *,
    lam: float = 0.0,
    mu: float = 0.0,
    anchor_keys: Any = None,
    anchor_values: Any = None,
    anchor_gram: Any = None,
    anchor_cross: Any = None,
) -> ObjectiveValue:
    """Evaluate J(W) = edits + lam * ||W - W0||^2 + mu * anchor residual (docs/method.md section 2).

    The returned ``weights`` and ``anchor`` terms include their factors lam and mu; the anchor
    residual without mu is :func:`anchor_residual`. Everything is accumulated in float64.
    """
    W0, lam, mu, anchor, batches = _setup(W0, keys, values, lam, mu, anchor_keys, anchor_values,
                                          anchor_gram, anchor_cross, torch.float64)
    W = as_tensor(W, "W", dtype=torch.float64, device=W0.device)
    if W.shape != W0.shape:
        raise ShapeError(f"W has shape {tuple(W.shape)} but W0 has {tuple(W0.shape)}")
    edits = sum(float(((K @ W - V) ** 2).sum()) for K, V in batches)
    weights = lam * float(((W - W0) ** 2).sum())
    anchor_term, exact = (0.0, True) if anchor is None else anchor_residual(W, W0, anchor)
    anchor_term *= mu
    return ObjectiveValue(edits + weights + anchor_term, edits, weights, anchor_term, exact)
