"""The anchor mapping (K0, V0) of docs/method.md section 2, kept as its sufficient statistics.

The anchor term mu ||K0 W - V0||_F^2 enters the normal equations only through

    G = K0^T K0   (d_k, d_k)   "anchor_gram"
    X = K0^T V0   (d_k, d_v)   "anchor_cross"

so an :class:`Anchor` stores those two (and ||V0||_F^2 when it is known, for the objective's value).
It is built either from keys (and optional values; default V0 = K0 W0) or from the statistics
themselves, which is how LLM runs give it (G = n_w E[k k^T]); both routes give the same solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._validate import as_tensor, check_columns
from .errors import AnchorError, ShapeError


@dataclass(frozen=True)
class Anchor:
    """Sufficient statistics of the anchor mapping.

    Attributes:
        gram: G = K0^T K0, symmetric positive semi-definite, (d_k, d_k).
        cross: X = K0^T V0, (d_k, d_v).
        cross_is_default: True when V0 = K0 W0 (then X = G W0 and the anchor preserves W0).
        value_sqnorm: ||V0||_F^2 when known (keys given, or default values), else None.
        n_keys: number of anchor keys when they were given, else None.
    """

    gram: torch.Tensor
    cross: torch.Tensor
    cross_is_default: bool
    value_sqnorm: float | None
    n_keys: int | None = None

    def pull(self, W0: torch.Tensor) -> torch.Tensor:
        """X - G W0: the anchor's pull away from W0 (zero when V0 = K0 W0).  # (d_k, d_v)"""
        if self.cross_is_default:
            return torch.zeros_like(W0)
        return self.cross - self.gram @ W0


def _symmetry_tolerance(G: torch.Tensor) -> float:
    # sqrt(machine epsilon), relative to the largest entry: K0^T K0 computed by any BLAS is
    # symmetric to a few ulps; a Gram that is off by more than this is a different matrix.
    return float(torch.finfo(G.dtype).eps) ** 0.5 * max(float(G.abs().max()), 1e-300)


def check_gram(G: torch.Tensor, name: str = "anchor_gram") -> torch.Tensor:
    """Check that G is square, symmetric and positive semi-definite; return its symmetric part.

    Positive semi-definiteness is checked with one Cholesky factorisation of G + tau I, with
    tau = d * eps * max(diag(G)) (the rounding error of a computed Gram); an eigenvalue below -tau
    makes it fail. The input is not modified.
    """
    d = G.shape[0]
    if G.ndim != 2 or G.shape[1] != d:
        raise ShapeError(f"{name} must be square (d_k, d_k), got shape {tuple(G.shape)}")
    asym = float((G - G.T).abs().max()) if d else 0.0
    if asym > _symmetry_tolerance(G):
        raise AnchorError(
            f"{name} is not symmetric: max |G - G^T| = {asym:.3e} "
            f"(tolerance {_symmetry_tolerance(G):.3e}); pass K0^T K0 or n * E[k k^T]"
        )
    G = 0.5 * (G + G.T)
    if d == 0:
        return G
    scale = max(float(G.diagonal().max()), 0.0)
    if float(G.diagonal().min()) < -_symmetry_tolerance(G):
        raise AnchorError(f"{name} has a negative diagonal entry, so it is not positive semi-definite")
    tau = d * float(torch.finfo(G.dtype).eps) * max(scale, float(torch.finfo(G.dtype).tiny))
    eye = torch.eye(d, dtype=G.dtype, device=G.device)
    _, info = torch.linalg.cholesky_ex(G + tau * eye)
    if int(info) != 0:
        raise AnchorError(
            f"{name} is not positive semi-definite: the Cholesky factorisation of G + {tau:.2e} I "
            f"fails at leading minor {int(info)}; a Gram matrix K0^T K0 never does"
        )
    return G


def resolve_anchor(
    W0: torch.Tensor,
    *,
    anchor_keys: Any = None,
    anchor_values: Any = None,
    anchor_gram: Any = None,
    anchor_cross: Any = None,
) -> Anchor | None:
    """Build the :class:`Anchor` from either keys (+ values) or statistics (+ cross); None if absent.

    Everything is cast to W0's dtype and device. Giving both keys and a Gram, values without keys,
    or a cross term without a Gram is ambiguous and raises :class:`AnchorError`.
    """
    d_k, d_v = W0.shape
    dtype, device = W0.dtype, W0.device
    if anchor_keys is not None and anchor_gram is not None:
        raise AnchorError("give the anchor either as anchor_keys or as anchor_gram, not both")
    if anchor_values is not None and anchor_keys is None:
        raise AnchorError("anchor_values needs anchor_keys (use anchor_cross with anchor_gram)")
    if anchor_cross is not None and anchor_gram is None:
        raise AnchorError("anchor_cross needs anchor_gram (use anchor_values with anchor_keys)")

    if anchor_keys is not None:
        K0 = as_tensor(anchor_keys, "anchor_keys", dtype=dtype, device=device)
        check_columns(K0, "anchor_keys", d_k, "d_k (W0.shape[0])")
        if anchor_values is None:
            V0 = K0 @ W0  # (n, d_v)
            default = True
        else:
            V0 = as_tensor(anchor_values, "anchor_values", dtype=dtype, device=device)
            check_columns(V0, "anchor_values", d_v, "d_v (W0.shape[1])")
            if V0.shape[0] != K0.shape[0]:
                raise ShapeError(
                    f"anchor_keys has {K0.shape[0]} rows but anchor_values has {V0.shape[0]}"
                )
            default = False
        G = K0.T @ K0  # (d_k, d_k)
        G = 0.5 * (G + G.T)
        X = K0.T @ V0  # (d_k, d_v)
        return Anchor(G, X, default, float((V0.double() ** 2).sum()), n_keys=K0.shape[0])

    if anchor_gram is not None:
        G = as_tensor(anchor_gram, "anchor_gram", dtype=dtype, device=device)
        if G.shape != (d_k, d_k):
            raise ShapeError(
                f"anchor_gram must be (d_k, d_k) = ({d_k}, {d_k}) to match W0, got {tuple(G.shape)}"
            )
        G = check_gram(G)
        if anchor_cross is None:
            X = G @ W0  # (d_k, d_v)
            sq = float((W0.double() * (G.double() @ W0.double())).sum())
            return Anchor(G, X, True, sq)
        X = as_tensor(anchor_cross, "anchor_cross", dtype=dtype, device=device)
        if X.shape != (d_k, d_v):
            raise ShapeError(
                f"anchor_cross must be (d_k, d_v) = ({d_k}, {d_v}) to match W0, got {tuple(X.shape)}"
            )
        return Anchor(G, X, False, None)
    return None
