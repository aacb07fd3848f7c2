"""Deviation bounds of RLSEdit (docs/method.md section 5), each a function of the stream and the parameters.

Notation (row convention, V ~ K W; proofs in ``theory/README.md``):

    A_t = lam I + mu G + sum_{i<=t} K_i^T K_i,   C_t = A_t^{-1},   P = lam I + mu G   (G = K0^T K0)
    R_i = V_i - K_i W0      the edits' residuals at the pre-trained weight
    E_t = sum_i ||R_i||_F^2  the edits' energy at W0;   r_0 = ||K0 W0 - V0||_F^2
    B_t = sum_i K_i^T R_i + mu (X - G W0)   (X = K0^T V0; the second term is 0 when V0 = K0 W0)
    W_t = W0 + C_t B_t      the minimiser of J_t (docs/method.md section 3)

Every function returns the bound (a float); the quantity it bounds is computed by the matching
``measured_*`` helper or by the caller from the editor's state, so an experiment can report
measured / bound. All arithmetic is float64.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._linalg import as64, check_weights, prior_matrix, spectral_norm, stack, sym_eigvalsh


def edit_energy(W0: Any, keys: Any, values: Any) -> float:
    """E_t = sum_i ||K_i W0 - V_i||_F^2: how far the pre-trained map is from every edit."""
    W0 = as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    return float(((K @ W0 - V) ** 2).sum())


def energy_bound(W0: Any, keys: Any, values: Any, *, mu: float = 0.0, anchor_r0: float = 0.0) -> float:
    """Energy bound: the minimum of J_t is at most its value at W0.

    Statement. For any lam, mu >= 0 for which W_t (the minimiser of J_t) exists,

        lam ||W_t - W0||_F^2 + mu ||K0 W_t - V0||_F^2 + sum_i ||K_i W_t - V_i||_F^2  <=  E_t + mu r_0

    with r_0 = ||K0 W0 - V0||_F^2 (``anchor_r0``; 0 for the default anchor V0 = K0 W0). Returns
    E_t + mu r_0. No assumption on the stream.

    Proof. The left side is J_t(W_t) and the right side is J_t(W0); W_t minimises J_t.

    Tightness. J_t(W0) - J_t(W_t) = tr(B_t^T C_t B_t) (README, section 1), so the ratio tends to 1
    when the regularisers dominate the keys (lam -> inf with the stream fixed: ratio 1 - O(1/lam));
    :func:`theory.tight.energy_tight_stream` builds such a stream. It is an equality only when
    W0 already minimises J_t.
    """
    _, mu = check_weights(0.0, mu)
    return edit_energy(W0, keys, values) + mu * float(anchor_r0)


def weight_distance_bound(W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                          anchor_r0: float = 0.0) -> float:
    """||W_t - W0||_F <= sqrt((E_t + mu r_0) / lam)  (lam > 0), from :func:`energy_bound`.

    Drop the two other non-negative terms of the energy bound. Never tight: the sharper
    :func:`quarter_weight_distance_bound` (default anchor) is at most half of it.
    """
    lam, mu = check_weights(lam, mu)
    if lam <= 0.0:
        return math.inf
    return math.sqrt(energy_bound(W0, keys, values, mu=mu, anchor_r0=anchor_r0) / lam)


def anchor_residual_bound(W0: Any, keys: Any, values: Any, *, mu: float, anchor_r0: float = 0.0) -> float:
    """||K0 W_t - V0||_F^2 <= (E_t + mu r_0) / mu  (mu > 0), from :func:`energy_bound`."""
    _, mu = check_weights(0.0, mu)
    if mu <= 0.0:
        return math.inf
    return energy_bound(W0, keys, values, mu=mu, anchor_r0=anchor_r0) / mu


def quarter_energy_bound(W0: Any, keys: Any, values: Any) -> float:
    """Sharper energy bound on the regularisers alone (default anchor, V0 = K0 W0):

        lam ||W_t - W0||_F^2 + mu ||K0 (W_t - W0)||_F^2  <=  E_t / 4.

    Assumptions: P = lam I + mu G positive definite, V0 = K0 W0. Returns E_t / 4.

    Proof (README, section 2). With D = W_t - W0 = (P + K^T K)^{-1} K^T R (K, R the stacked keys and
    residuals) and Kt = K P^{-1/2}, the left side is tr(R^T Kt (I + Kt^T Kt)^{-2} Kt^T R); the
    matrix Kt (I + Kt^T Kt)^{-2} Kt^T has eigenvalues s^2 / (1 + s^2)^2 <= 1/4 (s the singular
    values of Kt), so the left side is at most ||R||_F^2 / 4 = E_t / 4.

    Tightness. Equality when every singular value of K P^{-1/2} is 1, e.g. K = Q P^{1/2} with Q
    having orthonormal rows (:func:`theory.tight.quarter_tight_stream`).
    """
    return 0.25 * edit_energy(W0, keys, values)


def quarter_weight_distance_bound(W0: Any, keys: Any, values: Any, *, lam: float) -> float:
    """||W_t - W0||_F <= sqrt(E_t / (4 lam)), from :func:`quarter_energy_bound` (lam > 0)."""
    lam, _ = check_weights(lam, 0.0)
    if lam <= 0.0:
        return math.inf
    return math.sqrt(quarter_energy_bound(W0, keys, values) / lam)


def quarter_anchor_residual_bound(W0: Any, keys: Any, values: Any, *, mu: float) -> float:
    """||K0 (W_t - W0)||_F^2 <= E_t / (4 mu), from :func:`quarter_energy_bound` (mu > 0)."""
    _, mu = check_weights(0.0, mu)
    if mu <= 0.0:
        return math.inf
    return quarter_energy_bound(W0, keys, values) / mu


def drive(W0: Any, keys: Any, values: Any, *, mu: float = 0.0, anchor_gram: Any = None,
          anchor_cross: Any = None) -> torch.Tensor:
    """B_t = sum_i K_i^T (V_i - K_i W0) + mu (X - G W0), the right-hand side relative to W0. (d_k, d_v)"""
    W0 = as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    B = K.T @ (V - K @ W0)  # (d_k, n) @ (n, d_v)
    if anchor_cross is not None and mu != 0.0:
        B = B + mu * (as64(anchor_cross, "anchor_cross") - as64(anchor_gram, "anchor_gram") @ W0)
    return B


def spectral_bound(C_t: Any, W0: Any, keys: Any, values: Any, *, mu: float = 0.0, anchor_gram: Any = None,
                   anchor_cross: Any = None) -> float:
    """Spectral bound: ||W_t - W0||_2 <= ||C_t||_2 ||B_t||_2.

    Statement. For the minimiser W_t = W0 + C_t B_t (any stream, any lam, mu with A_t invertible).
    Returns ||C_t||_2 ||B_t||_2 with the given C_t (the editor's, or computed from scratch).

    Proof. Submultiplicativity of the operator norm.

    Tightness. Equality when the top left singular vectors of B_t lie in the eigenspace of C_t's
    largest eigenvalue: e.g. the keys point along the anchor's weakest direction e_1 of G and
    ||k||^2 <= mu (g_2 - g_1), so that e_1 stays the smallest eigenvector of A_t
    (:func:`theory.tight.spectral_tight_stream`).
    """
    C_t = as64(C_t, "C_t")
    return spectral_norm(C_t) * spectral_norm(drive(W0, keys, values, mu=mu, anchor_gram=anchor_gram,
                                                    anchor_cross=anchor_cross))


def prior_inverse_norm(d_k: int, *, lam: float, mu: float, anchor_gram: Any = None) -> float:
    """||C_0||_2 = 1 / lambda_min(lam I + mu G): the bound ||C_t||_2 <= ||C_0||_2.

    Proof. A_t = A_0 + sum K_i^T K_i >= A_0 in the Loewner order, so lambda_min(A_t) >= lambda_min(A_0).
    Tight whenever the edit keys leave an eigenvector of A_0 with the smallest eigenvalue untouched
    (any stream whose keys span fewer than d_k directions orthogonal to it; e.g. lam I, mu = 0,
    u_total < d_k: then ||C_t||_2 = 1/lam exactly).
    """
    lam, mu = check_weights(lam, mu)
    smallest = float(sym_eigvalsh(prior_matrix(d_k, lam, mu, anchor_gram))[0])
    return math.inf if smallest <= 0.0 else 1.0 / smallest


def step_bound(C_t: Any, K: Any, residual_before: Any) -> float:
    """Per-step bound: ||W_t - W_{t-1}||_F <= ||C_t K_t^T||_2 ||V_t - K_t W_{t-1}||_F.

    Statement. For the recursion's step with C_t the inverse *after* the batch and
    E = V_t - K_t W_{t-1} (``residual_before``: the matrix, or its Frobenius norm as a float).

    Proof. W_t - W_{t-1} = C_t K_t^T E (README, section 3: the Woodbury step F S^{-1} equals
    C_t K_t^T), and ||M E||_F <= ||M||_2 ||E||_F.

    Tightness. Exact for every single-edit batch (u = 1): C_t k is a vector and
    ||c e^T||_F = ||c|| ||e||.
    """
    C_t, K = as64(C_t, "C_t"), as64(K, "K")
    return step_bound_from_gain(C_t @ K.T, residual_before)


def step_bound_from_gain(gain: Any, residual_before: Any) -> float:
    """:func:`step_bound` from the gain C_t K_t^T (d_k, u) itself (for layers too large to copy C_t)."""
    e = float(residual_before) if isinstance(residual_before, float | int) else float(
        torch.linalg.vector_norm(as64(residual_before, "residual_before")))
    return spectral_norm(as64(gain, "gain")) * e


def soft_write_interval(C_prev: Any, K: Any, residual_before: float) -> tuple[float, float]:
    """Soft-write shrinkage of the current batch:

        ||E||_F / (1 + lambda_max(M))  <=  ||V_t - K_t W_t||_F  <=  ||E||_F / (1 + lambda_min(M)),
        M = K_t C_{t-1} K_t^T

    with E = V_t - K_t W_{t-1}. Returns (lower, upper).

    Proof. V_t - K_t W_t = S^{-1} E with S = I + K C_{t-1} K^T (README, section 3), and the
    eigenvalues of S^{-1} lie in [1/(1+lambda_max), 1/(1+lambda_min)]. Since S >= I the residual
    never grows: an edit is written only partly where C_{t-1} is small along its key (earlier edits
    or the anchor constrain it).

    Tightness. Both sides are equalities for u = 1: the written fraction is exactly
    k^T C k / (1 + k^T C k).
    """
    K = as64(K, "K")
    return soft_write_interval_from_gram(K @ as64(C_prev, "C_prev") @ K.T, residual_before)


def soft_write_interval_from_gram(KCK: Any, residual_before: float) -> tuple[float, float]:
    """:func:`soft_write_interval` from K C_{t-1} K^T (u, u) itself (for layers too large to copy C)."""
    ev = sym_eigvalsh(as64(KCK, "KCK"))  # (u,)
    e = float(residual_before)
    return e / (1.0 + float(ev[-1])), e / (1.0 + max(float(ev[0]), 0.0))


def loewner_ratio(C_prev: Any, C_next: Any) -> float:
    """Loewner monotonicity: C_t <= C_{t-1}, measured as lambda_max(C_{t-1}^{-1/2} C_t C_{t-1}^{-1/2}) <= 1.

    Statement. For any batch, C_{t-1} - C_t = C_{t-1} K^T S^{-1} K C_{t-1} is positive semi-definite
    of rank <= u; hence C_t <= C_{t-1} <= ... <= C_0 and 0 < C_t. Equivalently the generalised
    eigenvalues of (C_t, C_{t-1}) are 1 / (1 + s_i^2) (s_i the singular values of K C_{t-1}^{1/2})
    and 1 (multiplicity d_k - u). Returns the largest one (<= 1; the "measured / bound" ratio).

    Proof. Woodbury (README, section 4).

    Tightness. The ratio is exactly 1 whenever u < d_k: the order cannot be improved in the
    directions the batch does not touch.
    """
    C_prev, C_next = as64(C_prev, "C_prev"), as64(C_next, "C_next")
    L = torch.linalg.cholesky(0.5 * (C_prev + C_prev.T))
    M = torch.linalg.solve_triangular(L, C_next, upper=False)  # L^{-1} C_t
    M = torch.linalg.solve_triangular(L, M.T, upper=False)  # L^{-1} C_t L^{-T}
    return float(sym_eigvalsh(M)[-1])


def loewner_gap_rank(C_prev: Any, C_next: Any, rtol: float = 1e-9) -> int:
    """Numerical rank of C_{t-1} - C_t (<= u by the statement of :func:`loewner_ratio`)."""
    D = as64(C_prev, "C_prev") - as64(C_next, "C_next")
    ev = sym_eigvalsh(D)
    scale = max(float(ev.abs().max()), 1e-300)
    return int((ev > rtol * scale).sum())
