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


def sandwich_constant(M: Any, Sigma_KK: Any, Delta: Any, noise_var: float, quartic: Any) -> float:
    """The exact constant of the rate: t E||W_t - W_lim||_F^2 -> c* = tr(M^{-1} Q M^{-1}).

    Statement. Rows i.i.d. with v = W_eff^T k + sigma eps (eps ~ N(0, I) independent of k; W_eff =
    W_true for "truth" values, 0 for values independent of the keys), finite fourth moments of k.
    Let W_lim be the limit, Delta = W_eff - W_lim, xi = k r^T - E[k r^T] with r = v - W_lim^T k, and
    Q = E[xi xi^T] (d_k, d_k). Then

        scaled regularisers (lam = t lam_bar, mu = t mu_bar): M = Sigma_KK + lam_bar I + mu_bar G;
        fixed lam, mu:                                      M = Sigma_KK (W_lim = W_ls)

    and t E||W_t - W_lim||_F^2 -> c* = tr(M^{-1} Q M^{-1}) = E[(k^T A k)(k^T B k)] - tr(Delta^T Sigma A
    Sigma Delta) + sigma^2 d_v tr(A Sigma), with A = M^{-2}, B = Delta Delta^T, Sigma = Sigma_KK.

    Proof (README, section 5, equation 5.3). W_t - W_lim = (A_t / t)^{-1} (1/t) sum_i xi_i (+ a bias
    C_t P (W0 - W_ls) of order 1/t in the fixed case); A_t / t -> M a.s. and (1/sqrt t) sum xi_i
    -> N(0, Q) (central limit theorem), so sqrt(t) (W_t - W_lim) -> M^{-1} Z in distribution, and
    E||M^{-1} Z||^2 = tr(M^{-1} Q M^{-1}) (with uniform integrability: the limit holds for the
    moments, not only the distribution; finite eighth moments of k suffice). Expanding
    E tr(xi^T A xi) with r = Delta^T k + sigma eps gives the closed form.

    ``quartic`` is E[(k^T A k)(k^T B k)] for the key distribution: :func:`gaussian_quartic` for
    Gaussian keys (times the kurtosis factor (nu - 2)/(nu - 4) for Student-t keys), or a mean over a
    finite pool. The a-priori bound sigma_xi^2 / nu^2 of :func:`scaled_limit_rms_bound` is at least
    c*, since ||M^{-1}||_2 <= 1 / nu.
    """
    M, S, Delta = as64(M, "M"), as64(Sigma_KK, "Sigma_KK"), as64(Delta, "Delta")
    Minv = torch.linalg.inv(0.5 * (M + M.T))
    A = Minv @ Minv
    d_v = Delta.shape[1]
    mean_part = float(torch.trace(Delta.T @ S @ A @ S @ Delta))
    return float(quartic) - mean_part + float(noise_var) * d_v * float(torch.trace(A @ S))


def gaussian_quartic(A: Any, B: Any, Sigma: Any) -> float:
    """E[(k^T A k)(k^T B k)] for k ~ N(0, Sigma) and symmetric A, B: tr(A S) tr(B S) + 2 tr(A S B S)."""
    A, B, S = as64(A, "A"), as64(B, "B"), as64(Sigma, "Sigma")
    AS, BS = A @ S, B @ S
    return float(torch.trace(AS) * torch.trace(BS) + 2.0 * torch.trace(AS @ BS))


def sandwich_constant_from_rows(M: Any, W_lim: Any, keys: Any, values: Any, Sigma_KK: Any, Sigma_KV: Any) -> float:
    """Plug-in estimate of c* = E ||M^{-1} xi||_F^2 from rows drawn independently of the stream checked
    (xi = k (v - W_lim^T k)^T - (Sigma_KV - Sigma_KK W_lim)): the cross-check of
    :func:`sandwich_constant` for any key distribution."""
    M, W_lim = as64(M, "M"), as64(W_lim, "W_lim")
    K, V = stack(keys, values, *W_lim.shape)
    m = as64(Sigma_KV, "Sigma_KV") - as64(Sigma_KK, "Sigma_KK") @ W_lim  # (d_k, d_v)
    Minv = torch.linalg.inv(0.5 * (M + M.T))
    a = K @ Minv  # rows M^{-1} k   (M symmetric)
    R = V - K @ W_lim  # (n, d_v)
    Mm = Minv @ m  # (d_k, d_v)
    # ||M^{-1} k r^T - M^{-1} m||^2 = ||M^{-1}k||^2 ||r||^2 - 2 (M^{-1}k)^T (M^{-1} m) r + ||M^{-1} m||^2
    per_row = (a**2).sum(1) * (R**2).sum(1) - 2.0 * ((a @ Mm) * R).sum(1) + float((Mm**2).sum())
    return float(per_row.mean())


def bootstrap_loglog_slope(t: Any, sq_err: Any, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                           power: float = 0.5) -> dict[str, float]:
    """Slope of log(mean_s sq_err[s, j]^power) against log t_j, with a percentile bootstrap interval
    over the streams s (rows of ``sq_err``, shape (n_streams, n_t)); power 0.5 gives the RMS error's
    slope (theory: -1/2). Every stream is one independent draw of the same problem, so resampling
    the streams is resampling the experiment."""
    E = torch.as_tensor(sq_err, dtype=torch.float64)
    if E.ndim != 2 or E.shape[0] < 2 or E.shape[1] < 2:
        raise ValueError(f"sq_err must be (n_streams >= 2, n_t >= 2), got shape {tuple(E.shape)}")
    x = torch.log(as64(t, "t"))
    x = x - x.mean()
    g = torch.Generator().manual_seed(seed)

    def slope(rows: torch.Tensor) -> torch.Tensor:  # (b, n_t) means -> (b,) slopes
        y = power * torch.log(rows)
        y = y - y.mean(dim=1, keepdim=True)
        return (y * x).sum(1) / (x * x).sum()

    point = float(slope(E.mean(0, keepdim=True))[0])
    idx = torch.randint(0, E.shape[0], (n_boot, E.shape[0]), generator=g)
    boots = slope(E[idx].mean(1))
    lo, hi = torch.quantile(boots, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return {"slope": point, "lo": float(lo), "hi": float(hi)}


def bootstrap_mean_interval(samples: Any, *, scale: float = 1.0, n_boot: int = 2000, level: float = 0.95,
                            seed: int = 0) -> dict[str, float]:
    """scale * mean(samples) with a percentile bootstrap interval (e.g. t E||W_t - W_lim||^2 / c*)."""
    x = torch.as_tensor(samples, dtype=torch.float64).reshape(-1)
    g = torch.Generator().manual_seed(seed)
    boots = x[torch.randint(0, len(x), (n_boot, len(x)), generator=g)].mean(1) * scale
    lo, hi = torch.quantile(boots, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return {"value": float(x.mean()) * scale, "lo": float(lo), "hi": float(hi)}
