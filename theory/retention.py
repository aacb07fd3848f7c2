"""Retention of earlier edits: comparator bounds, the innovation identities and a regret bound.

Notation as in :mod:`theory.bounds` (row convention, default anchor V0 = K0 W0 unless said so;
proofs in ``theory/README.md``, sections 7-9). For the stacked edits K (n, d_k), V (n, d_v) of the
first t batches and any matrix W:

    F_t(W)     = sum_{i<=t} ||K_i W - V_i||_F^2          the edits' residual (what retention measures)
    Omega(W)   = lam ||W - W0||_F^2 + mu ||K0 (W - W0)||_F^2
    J_t(W)     = F_t(W) + Omega(W),   W_t = argmin J_t,   P = lam I + mu G,   A_t = P + K^T K

* Comparator form (:func:`comparator_bound`): F_t(W_t) <= J_t(W_t) <= J_t(W*) for every W*. With
  W* the map that generated a realisable stream (V = K W* + N) the right side is
  Omega(W*) + ||N||_F^2: with no noise it does not grow with t, so neither does the residual of all
  edits so far, nor that of any early cohort.
* Quarter comparator (:func:`quarter_comparator_bound`): ||K W_t - V||_F <= sqrt(Omega(W*))/2 +
  ||K W* - V||_F for every W*.
* Cohort (:func:`cohort_retention_bound`): for the rows c of an early cohort,
  ||K_c W_t - V_c||_F <= ||K_c W* - V_c||_F + ||K_c C_t^{1/2}||_2 ||C_t^{1/2} (b_t - A_t W*)||_F.
  For a noise-free realisable stream the right side is non-increasing in t.
* Innovations (:func:`innovation`): J_t(W_t) = J_0(W_0) + sum_i tr(E_i^T S_i^{-1} E_i), E_i the
  residual of batch i before it, S_i = I + K_i C_{i-1} K_i^T; and sum_i log det S_i =
  log det(A_t A_0^{-1}).
* Regret (:func:`regret_bound`): sum_i ||E_i||_F^2 <= J_t(W*) - J_0(W_0) + Y^2 log det(A_t A_0^{-1})
  for every W*, Y = max_i ||E_i||_2: a bound of the Vovk-Azoury-Warmuth type on the pre-update
  (prediction) residuals, logarithmic in t for bounded keys.
* Baselines (:func:`objective_gap`): J_t(W) - J_t(W_t) = tr(D^T A_t D) >= 0, D = W - W_t, for any W
  (MEMIT's, AlphaEdit's, ROME's, FT's).

All arithmetic is float64; every function returns a float.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._linalg import as64, check_weights, stack, sym_eigvalsh
from .limits import limit_residual


def edit_residual(W: Any, keys: Any, values: Any) -> float:
    """F_t(W) = sum_i ||K_i W - V_i||_F^2, from the stream and W alone."""
    W = as64(W, "W")
    K, V = stack(keys, values, *W.shape)
    return float(((K @ W - V) ** 2).sum())


def regulariser(W: Any, W0: Any, *, lam: float, mu: float = 0.0, anchor_gram: Any = None) -> float:
    """Omega(W) = lam ||W - W0||_F^2 + mu tr((W - W0)^T G (W - W0)) (default anchor)."""
    lam, mu = check_weights(lam, mu)
    D = as64(W, "W") - as64(W0, "W0")
    out = lam * float((D**2).sum())
    if anchor_gram is not None and mu != 0.0:
        out += mu * float((D * (as64(anchor_gram, "anchor_gram") @ D)).sum())
    return out


def objective_value(W: Any, W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                    anchor_gram: Any = None) -> float:
    """J_t(W) = F_t(W) + Omega(W) (default anchor), evaluated directly from the residuals."""
    return edit_residual(W, keys, values) + regulariser(W, W0, lam=lam, mu=mu, anchor_gram=anchor_gram)


def comparator_bound(W_star: Any, W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                     anchor_gram: Any = None) -> float:
    """Comparator form of retention: F_t(W_t) <= J_t(W*), for every matrix W*.

    Statement. W_t minimises J_t = F_t + Omega and Omega >= 0, so F_t(W_t) <= J_t(W_t) <= J_t(W*).
    Returns J_t(W*). With W* = W_t (the minimiser) this is the tightest such bound, min J_t
    ("the RLS retention bound"): an editor whose edits keep more residual than the whole of
    RLSEdit's objective (regulariser included) has forgotten more than RLSEdit can.

    Realisable streams. If V_i = K_i W* + N_i, then J_t(W*) = Omega(W*) + sum ||N_i||^2; with no
    noise it does not depend on t: the residual of all edits so far, hence of any early cohort,
    stays below Omega(W*) however many edits follow.

    Tightness. F_t(W_t) / min J_t = 1 - Omega(W_t) / J_t(W_t) -> 1 when the regulariser's share
    vanishes, e.g. two conflicting edits of one key with lam -> 0
    (:func:`theory.tight.retention_tight_stream`).
    """
    return objective_value(W_star, W0, keys, values, lam=lam, mu=mu, anchor_gram=anchor_gram)


def quarter_comparator_bound(W_star: Any, W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                             anchor_gram: Any = None) -> float:
    """(sqrt(Omega(W*)) / 2 + ||K W* - V||_F)^2 >= F_t(W_t), for every W* (default anchor, P > 0).

    Statement. ||K W_t - V||_F <= sqrt(Omega(W*)) / 2 + ||K W* - V||_F. Returns the square of the
    right side, to compare with F_t(W_t).

    Proof (README, section 7). K W_t - V = -(I + K P^{-1} K^T)^{-1} R with R = V - K W0 (push-
    through). Split R = K (W* - W0) + (V - K W*). With Kt = K P^{-1/2} the first part is mapped by
    (I + Kt Kt^T)^{-1} Kt, of norm max s / (1 + s^2) <= 1/2, applied to P^{1/2} (W* - W0) (norm
    sqrt(Omega(W*))); the second by (I + Kt Kt^T)^{-1}, of norm <= 1.

    Tightness. Equality for a noise-free realisable stream with K = Q P^{1/2}, Q Q^T = I and
    W* - W0 = P^{-1/2} Q^T Z (every singular value of Kt that meets the edits is 1):
    :func:`theory.tight.quarter_comparator_tight_stream`. For noise-free streams it is four times
    sharper than :func:`comparator_bound`.
    """
    omega = regulariser(W_star, W0, lam=lam, mu=mu, anchor_gram=anchor_gram)
    return (0.5 * math.sqrt(omega) + math.sqrt(edit_residual(W_star, keys, values))) ** 2


def cohort_retention_bound(C_t: Any, cohort_keys: Any, cohort_values: Any, W_star: Any, W0: Any, keys: Any,
                           values: Any, *, lam: float, mu: float = 0.0, anchor_gram: Any = None) -> float:
    """Residual of an early cohort after t batches: for every W*,

        ||K_c W_t - V_c||_F <= ||K_c W* - V_c||_F + sqrt(lambda_max(K_c C_t K_c^T)) sqrt(tr(g^T C_t g)),

    with g = b_t - A_t W* = lam (W0 - W*) + mu G (W0 - W*) + sum_i K_i^T (V_i - K_i W*) computed
    from the data (``keys``, ``values``: the whole stream so far; the cohort's rows among them).
    Returns the square of the right side.

    Proof (README, section 8). A_t W_t = b_t, so K_c (W_t - W*) = (K_c C_t^{1/2}) (C_t^{1/2} g), and
    ||X Y||_F <= ||X||_2 ||Y||_F; then the triangle inequality.

    Retention. For a noise-free realisable stream (V = K W*), g = P (W0 - W*) is fixed and
    C_t <= C_{t-1} (Loewner), so both factors are non-increasing in t: the bound on the early
    cohort's residual never grows as later edits arrive, and it shrinks as later keys cover the
    cohort's directions. (With noise, tr(g^T C_t g) has expectation at most
    Omega(W*) + sigma^2 d_v tr(K^T K C_t) <= Omega(W*) + sigma^2 d_v d_k: still bounded.)

    Tightness. Equality for one edit (u = 1) with W* - W0 = P^{-1} k w^T and V = k^T W*
    (:func:`theory.tight.cohort_tight_stream`).
    """
    C_t = as64(C_t, "C_t")
    W_star = as64(W_star, "W_star")
    Kc, Vc = stack(cohort_keys, cohort_values, *W_star.shape)
    g = limit_residual(W_star, W0, keys, values, lam=lam, mu=mu, anchor_gram=anchor_gram)  # (d_k, d_v)
    head = float(torch.linalg.vector_norm(Kc @ W_star - Vc))
    if Kc.shape[0] == 0:
        return head**2
    top = max(float(sym_eigvalsh(Kc @ C_t @ Kc.T)[-1]), 0.0)
    energy = max(float((g * (C_t @ g)).sum()), 0.0)
    return (head + math.sqrt(top * energy)) ** 2


def innovation(C_prev: Any, K: Any, E: Any) -> float:
    """tr(E^T S^{-1} E), S = I + K C_{t-1} K^T: the increase J_t(W_t) - J_{t-1}(W_{t-1}).

    Statement (innovation identity). With E_i = V_i - K_i W_{i-1} the residual of batch i before it,
    J_t(W_t) = J_0(W_0) + sum_{i<=t} tr(E_i^T S_i^{-1} E_i).

    Proof. J_t(W) = J_{t-1}(W_{t-1}) + tr(D^T A_{t-1} D) + ||E - K D||_F^2 with D = W - W_{t-1}
    (equation 0.1 of the README); its minimum over D is tr(E^T (I + K C_{t-1} K^T)^{-1} E).
    """
    C_prev, K, E = as64(C_prev, "C_prev"), as64(K, "K"), as64(E, "E")
    S = torch.eye(K.shape[0], dtype=C_prev.dtype) + K @ C_prev @ K.T  # (u, u)
    L = torch.linalg.cholesky(0.5 * (S + S.T))
    Y = torch.linalg.solve_triangular(L, E, upper=False)  # L^{-1} E
    return float((Y**2).sum())


def logdet_S(C_prev: Any, K: Any) -> float:
    """log det(I + K C_{t-1} K^T) = log det A_t - log det A_{t-1} (matrix determinant lemma)."""
    C_prev, K = as64(C_prev, "C_prev"), as64(K, "K")
    S = torch.eye(K.shape[0], dtype=C_prev.dtype) + K @ C_prev @ K.T
    return float(torch.logdet(0.5 * (S + S.T)))


def regret_bound(J_t: float, J_0: float, y2_max: float, logdet_ratio: float) -> float:
    """J_t - J_0 + Y^2 log det(A_t A_0^{-1}): a bound on sum_i ||E_i||_F^2, the pre-update residuals.

    Statement. For every W*, with Y^2 = max_i ||E_i||_2^2 (spectral norm) along the minimisers'
    trajectory,

        sum_{i<=t} ||V_i - K_i W_{i-1}||_F^2  <=  J_t(W*) - J_0(W_0) + Y^2 log det(A_t A_0^{-1}),

    so the regret against any fixed W*, sum_i ||E_i||^2 - F_t(W*), is at most
    Omega(W*) + Y^2 log det(A_t A_0^{-1}) (default anchor: J_0(W_0) = 0). For keys with
    ||k|| <= X, log det(A_t A_0^{-1}) <= d_k log(1 + t u X^2 ||C_0||_2 / d_k): logarithmic in t, the
    bound of Vovk (2001) and Azoury and Warmuth (2001) for online ridge regression.

    Proof (README, section 9). ||E||_F^2 - tr(E^T S^{-1} E) = tr(E^T (I - S^{-1}) E) <=
    ||E||_2^2 tr(I - S^{-1}) and tr(I - S^{-1}) = sum_j s_j / (1 + s_j) <= sum_j log(1 + s_j) =
    log det S (s_j the eigenvalues of K C K^T). Sum over i, use the innovation identity and
    sum_i log det S_i = log det(A_t A_0^{-1}), then J_t(W_t) <= J_t(W*).

    Pass J_t = J_t(W*) (the tightest: min J_t), J_0 = J_0(W_0), y2_max and logdet_ratio.

    Tightness. s / (1 + s) <= log(1 + s) is sharp as s -> 0: one small key gives the ratio
    1 - O(s^2) (:func:`theory.tight.regret_tight_stream`).
    """
    if logdet_ratio < 0.0 and logdet_ratio > -1e-9:
        logdet_ratio = 0.0
    return float(J_t) - float(J_0) + float(y2_max) * float(logdet_ratio)


def objective_gap(W: Any, W_ref: Any, A_t: Any) -> float:
    """tr(D^T A_t D), D = W - W_ref: equals J_t(W) - J_t(W_ref) when W_ref minimises J_t.

    Statement. J_t is a quadratic with Hessian 2 A_t and gradient 2 (A_t W_t - b_t) = 0 at its
    minimiser, so J_t(W) - J_t(W_t) = tr((W - W_t)^T A_t (W - W_t)) >= 0 for any W: every
    baseline's weight (MEMIT, AlphaEdit, ROME, FT) scores at least RLSEdit's on RLSEdit's objective,
    and by exactly this much. If W_ref is not the minimiser, the identity is off by
    2 tr(D^T (A_t W_ref - b_t)), first order in W_ref's error.
    """
    D = as64(W, "W") - as64(W_ref, "W_ref")
    return float((D * (as64(A_t, "A_t") @ D)).sum())
