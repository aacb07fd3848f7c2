"""The many-edits limit (docs/method.md section 5) and its convergence rate.

Setting. Edit rows (k, v) are i.i.d. with second moments Sigma_KK = E[k k^T] (d_k, d_k) and
Sigma_KV = E[k v^T] (d_k, d_v); t counts edit *rows* (the objective is a sum over rows, so how the
rows are batched does not matter). W_t is the minimiser of J_t after t rows. Proofs in
``theory/README.md``, section 5.

* Scaled regularisers, lam = t lam_bar and mu = t mu_bar: W_t -> W_inf almost surely, with

      W_inf = (Sigma_KK + lam_bar I + mu_bar G)^{-1} (Sigma_KV + lam_bar W0 + mu_bar X)

  the ridge-regularised population minimiser (:func:`ridge_population_limit`); it exists whenever
  lam_bar I + mu_bar G + Sigma_KK is positive definite.
* Fixed lam and mu: the regularisers fade like 1/t and W_t -> W_ls, the population least-squares
  fit Sigma_KK^{-1} Sigma_KV (:func:`least_squares_limit`, needs Sigma_KK positive definite).

Rate. Both cases obey the exact identity W_t - W_lim = C_t (b_t - A_t W_lim), which gives the
a-posteriori bound :func:`limit_error_bound`; with scaled regularisers it gives the a-priori bound
E ||W_t - W_inf||_F^2 <= sigma^2 / (t nu^2) (:func:`scaled_limit_rms_bound`): the error falls like
t^{-1/2}. With fixed regularisers the error is O_p(t^{-1/2}) + O(1/t) (noise + fading bias).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._linalg import as64, check_weights, prior_matrix, spectral_norm, stack, sym_eigvalsh


class NoLimitError(ValueError):
    """The limit does not exist or is not unique for these moments and weights."""


def _solve_pd(A: torch.Tensor, B: torch.Tensor, what: str) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(0.5 * (A + A.T))
    if int(info) != 0:
        raise NoLimitError(f"{what} is not positive definite: the limit is not unique")
    return torch.cholesky_solve(B, L)


def ridge_population_limit(Sigma_KK: Any, Sigma_KV: Any, W0: Any, *, lam_bar: float, mu_bar: float = 0.0,
                           anchor_gram: Any = None, anchor_cross: Any = None) -> torch.Tensor:
    """W_inf = (Sigma_KK + lam_bar I + mu_bar G)^{-1} (Sigma_KV + lam_bar W0 + mu_bar X).

    Statement. Let rows be i.i.d. with finite second moments and lam = t lam_bar, mu = t mu_bar. Then
    J_t(W) / t -> J_bar(W) = E||k^T W - v^T||^2 + lam_bar ||W - W0||^2 + mu_bar ||K0 W - V0||^2
    pointwise a.s.; J_bar is strictly convex when M = Sigma_KK + lam_bar I + mu_bar G > 0, with
    unique minimiser W_inf above; and W_t -> W_inf a.s.

    Proof (README 5). W_t = (A_t / t)^{-1} (b_t / t) with A_t / t -> M and b_t / t -> Sigma_KV +
    lam_bar W0 + mu_bar X a.s. (strong law of large numbers); inversion is continuous at M > 0.
    X defaults to G W0 (the anchor preserves W0).
    """
    lam_bar, mu_bar = check_weights(lam_bar, mu_bar)
    S_kk, S_kv, W0 = as64(Sigma_KK, "Sigma_KK"), as64(Sigma_KV, "Sigma_KV"), as64(W0, "W0")
    d_k = W0.shape[0]
    M = S_kk + prior_matrix(d_k, lam_bar, mu_bar, anchor_gram)
    rhs = S_kv + lam_bar * W0
    if anchor_gram is not None and mu_bar != 0.0:
        X = as64(anchor_gram, "anchor_gram") @ W0 if anchor_cross is None else as64(anchor_cross, "anchor_cross")
        rhs = rhs + mu_bar * X
    return _solve_pd(M, rhs, "Sigma_KK + lam_bar I + mu_bar G")


def least_squares_limit(Sigma_KK: Any, Sigma_KV: Any) -> torch.Tensor:
    """W_ls = Sigma_KK^{-1} Sigma_KV: the limit with fixed lam, mu (Sigma_KK positive definite).

    Statement. With lam, mu fixed, A_t / t = Sigma_hat + (lam I + mu G) / t -> Sigma_KK, so W_t ->
    W_ls a.s.: the regularisers' influence fades like 1/t and preservation is traded away. (This is
    :func:`ridge_population_limit` with lam_bar = mu_bar = 0.)
    """
    return _solve_pd(as64(Sigma_KK, "Sigma_KK"), as64(Sigma_KV, "Sigma_KV"), "Sigma_KK")


def limit_residual(W_lim: Any, W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                   anchor_gram: Any = None, anchor_cross: Any = None) -> torch.Tensor:
    """b_t - A_t W_lim = sum_i K_i^T (V_i - K_i W_lim) + lam (W0 - W_lim) + mu (X - G W_lim), from the data."""
    lam, mu = check_weights(lam, mu)
    W_lim, W0 = as64(W_lim, "W_lim"), as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    Rm = K.T @ (V - K @ W_lim) + lam * (W0 - W_lim)  # (d_k, d_v)
    if anchor_gram is not None and mu != 0.0:
        G = as64(anchor_gram, "anchor_gram")
        X = G @ W0 if anchor_cross is None else as64(anchor_cross, "anchor_cross")
        Rm = Rm + mu * (X - G @ W_lim)
    return Rm


def limit_error_bound(C_t: Any, W_lim: Any, W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                      anchor_gram: Any = None, anchor_cross: Any = None) -> float:
    """A-posteriori bound: ||W_t - W_lim||_F <= ||C_t||_2 ||b_t - A_t W_lim||_F, for *any* matrix W_lim.

    Proof. A_t W_t = b_t, so W_t - W_lim = C_t (b_t - A_t W_lim); then ||C M||_F <= ||C||_2 ||M||_F.
    The residual is computed from the data (:func:`limit_residual`), not from W_t. With W_lim the
    population limit, b_t - A_t W_lim is a sum of t i.i.d. zero-mean terms (scaled regularisers) or
    that plus the fading bias lam (W0 - W_ls) + mu (X - G W_ls) (fixed ones).

    Tightness. Equality when b_t - A_t W_lim has rank one along C_t's top eigenvector (e.g. t = 0
    with lam I and W_lim = W0 + e_1 w^T: W_t - W_lim = -e_1 w^T and the bound is ||e_1 w^T||).
    """
    res = limit_residual(W_lim, W0, keys, values, lam=lam, mu=mu, anchor_gram=anchor_gram,
                         anchor_cross=anchor_cross)
    return spectral_norm(as64(C_t, "C_t")) * float(torch.linalg.vector_norm(res))


def noise_level(W_inf: Any, keys: Any, values: Any, Sigma_KK: Any, Sigma_KV: Any) -> float:
    """sigma^2 = E ||k (v - W_inf^T k)^T - (Sigma_KV - Sigma_KK W_inf)||_F^2, estimated from the given rows.

    Pass rows drawn independently of the stream being checked (a separate seed): only this
    constant is estimated, never the limit itself.
    """
    W_inf = as64(W_inf, "W_inf")
    K, V = stack(keys, values, *W_inf.shape)
    m = as64(Sigma_KV, "Sigma_KV") - as64(Sigma_KK, "Sigma_KK") @ W_inf  # (d_k, d_v)
    Rr = V - K @ W_inf  # (n, d_v)
    # ||k r^T - m||^2 = ||k||^2 ||r||^2 - 2 k^T m r + ||m||^2, row by row
    per_row = (K**2).sum(1) * (Rr**2).sum(1) - 2.0 * ((K @ m) * Rr).sum(1) + float((m**2).sum())
    return float(per_row.mean())


def scaled_limit_rms_bound(t: int, sigma2: float, *, lam_bar: float, mu_bar: float = 0.0,
                           anchor_gram: Any = None, d_k: int | None = None) -> float:
    """Rate with scaled regularisers: sqrt(E ||W_t - W_inf||_F^2) <= sigma / (nu sqrt(t)).

    Statement. Rows i.i.d. with finite fourth moments, lam = t lam_bar, mu = t mu_bar,
    nu = lambda_min(lam_bar I + mu_bar G) > 0, sigma^2 from :func:`noise_level`. Then
    E ||W_t - W_inf||_F^2 <= sigma^2 / (t nu^2).

    Proof. W_t - W_inf = C_t sum_{i<=t} xi_i with xi_i = k_i (v_i - W_inf^T k_i)^T - E[.] i.i.d.
    zero-mean (the population normal equations cancel the regularisers' terms), so
    E ||sum xi||^2 = t sigma^2; and A_t >= t (lam_bar I + mu_bar G) gives ||C_t||_2 <= 1/(t nu)
    deterministically.
    """
    lam_bar, mu_bar = check_weights(lam_bar, mu_bar)
    if d_k is None:
        if anchor_gram is None:
            raise ValueError("give d_k or anchor_gram")
        d_k = as64(anchor_gram, "anchor_gram").shape[0]
    nu = float(sym_eigvalsh(prior_matrix(d_k, lam_bar, mu_bar, anchor_gram))[0])
    if nu <= 0.0 or t <= 0:
        return math.inf
    return math.sqrt(sigma2 / t) / nu


def fit_loglog_slope(t: Any, err: Any) -> float:
    """Least-squares slope of log(err) against log(t) (the convergence exponent; -1/2 expected)."""
    x = torch.log(as64(t, "t"))
    y = torch.log(as64(err, "err"))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())
