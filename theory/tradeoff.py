"""The adherence/preservation trade-off as lam and mu vary (docs/method.md section 5; proofs in README, section 6).

For a fixed stream write J(W) = f(W) + lam g(W) + mu h(W) with f = sum_i ||K_i W - V_i||^2
(adherence: small is good), g = ||W - W0||^2 (parameter-space preservation) and
h = ||K0 W - V0||^2 (function-space preservation), and W(lam, mu) for the minimiser.

* Monotonicity (:func:`tradeoff_terms`): g(W(lam, mu)) is non-increasing in lam and
  f + mu h is non-decreasing in lam; h is non-increasing in mu and f + lam g is non-decreasing
  in mu. With mu = 0 (or lam = 0) the edits' residual f alone is non-decreasing.
* Limits: lam, mu -> 0 together (:func:`full_adherence_limit`): the edits are fitted exactly when
  the stacked keys have full row rank (least squares otherwise), by the smallest correction in
  the P-norm; lam -> inf: W -> W0 with ||W - W0||_F <= ||B||_F / lam; mu -> inf
  (:func:`anchor_pinned_limit`): K0 W = K0 W0 exactly and the edits are fitted in null(G) only,
  a soft null space (the hard one is AlphaEdit's).
"""

from __future__ import annotations

from typing import Any

import torch

from ._linalg import as64, check_weights, prior_matrix, stack, sym_eigvalsh


def tradeoff_terms(W: Any, W0: Any, keys: Any, values: Any, anchor_gram: Any = None) -> dict[str, float]:
    """f, g, h of the module docstring at W (default anchor V0 = K0 W0): the measured trade-off.

    Statement (monotonicity). For lam_1 < lam_2 at fixed mu, g(W(lam_2)) <= g(W(lam_1)) and
    (f + mu h)(W(lam_2)) >= (f + mu h)(W(lam_1)); symmetrically in mu.

    Proof. Optimality of W_1 at lam_1 and of W_2 at lam_2 gives two inequalities; adding them gives
    (lam_2 - lam_1)(g_2 - g_1) <= 0, and the first one then gives (f + mu h)_1 - (f + mu h)_2 <=
    lam_1 (g_2 - g_1) <= 0.
    """
    W, W0 = as64(W, "W"), as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    D = W - W0
    h = 0.0 if anchor_gram is None else float((D * (as64(anchor_gram, "anchor_gram") @ D)).sum())
    return {"f": float(((K @ W - V) ** 2).sum()), "g": float((D**2).sum()), "h": h}


def full_adherence_limit(W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                         anchor_gram: Any = None) -> torch.Tensor:
    """lim_{s -> 0} W(s lam, s mu) = W0 + P^{-1} K^T (K P^{-1} K^T)^+ R,   P = lam I + mu G > 0.

    Proof. W(s lam, s mu) - W0 = (s P + K^T K)^{-1} K^T R = P^{-1} K^T (s I + K P^{-1} K^T)^{-1} R
    (push-through identity), and (s I + M)^{-1} M -> M^+ M on range(M) as s -> 0 with
    K^T R in the row space of K. The limit minimises ||P^{1/2} D||_F among the least-squares fits.
    """
    lam, mu = check_weights(lam, mu)
    W0 = as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    P = prior_matrix(W0.shape[0], lam, mu, anchor_gram)
    PinvKt = torch.linalg.solve(P, K.T)  # (d_k, n)
    M = K @ PinvKt  # (n, n)
    return W0 + PinvKt @ torch.linalg.pinv(0.5 * (M + M.T), hermitian=True) @ (V - K @ W0)


def anchor_null_basis(anchor_gram: Any, rtol: float = 1e-10) -> torch.Tensor:
    """Orthonormal basis N (d_k, r) of the null space of G (eigenvalues <= rtol * lambda_max)."""
    G = as64(anchor_gram, "anchor_gram")
    ev, U = torch.linalg.eigh(0.5 * (G + G.T))
    return U[:, ev <= rtol * max(float(ev[-1]), 1e-300)]


def anchor_pinned_limit(W0: Any, keys: Any, values: Any, *, lam: float, anchor_gram: Any,
                        rtol: float = 1e-10) -> torch.Tensor:
    """lim_{mu -> inf} W(lam, mu) = W0 + N (N^T (lam I + K^T K) N)^{-1} N^T K^T R (default anchor).

    Statement. With N a basis of null(G), the limit minimises f + lam g subject to G (W - W0) = 0:
    the anchor's key span is pinned exactly, the rest is left to the edits (a soft null space:
    within null(G) the edits still compete with lam and with each other). Needs
    N^T (lam I + K^T K) N > 0 (lam > 0, or keys that span null(G)).

    Proof. Penalty method for a convex quadratic: the minimiser of f + lam g + mu h converges to
    the constrained minimiser of f + lam g on {h = 0} as mu -> inf, at rate O(1/mu).
    """
    lam, _ = check_weights(lam, 0.0)
    W0 = as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    N = anchor_null_basis(anchor_gram, rtol)  # (d_k, r)
    if N.shape[1] == 0:
        return W0.clone()
    KN = K @ N  # (n, r)
    M = lam * torch.eye(N.shape[1], dtype=W0.dtype) + KN.T @ KN
    Y = torch.linalg.solve(M, KN.T @ (V - K @ W0))  # (r, d_v)
    return W0 + N @ Y


def weight_pull_bound(W0: Any, keys: Any, values: Any, *, lam: float, mu: float = 0.0,
                      anchor_gram: Any = None) -> float:
    """||W(lam, mu) - W0||_F <= ||B||_F / lambda_min(lam I + mu G + K^T K) <= ||B||_F / lam: W -> W0 as lam -> inf."""
    lam, mu = check_weights(lam, mu)
    W0 = as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    A = prior_matrix(W0.shape[0], lam, mu, anchor_gram) + K.T @ K
    return float(torch.linalg.vector_norm(K.T @ (V - K @ W0))) / float(sym_eigvalsh(A)[0])


def anchor_pinned_first_order(W0: Any, keys: Any, values: Any, *, lam: float, anchor_gram: Any,
                              rtol: float = 1e-10) -> torch.Tensor:
    """D1 with W(lam, mu) = W_pin + D1 / mu + O(1/mu^2) as mu -> inf (default anchor): the exact O(1/mu) rate.

    Statement. Let H = lam I + K^T K, r = K^T R (R = V - K W0), G = U Gamma U^T with U a basis of
    range(G) and N of null(G), and D_pin = W_pin - W0 = N (N^T H N)^{-1} N^T r. Then
    mu (W(lam, mu) - W_pin) -> D1 = U b + N a, with

        b = Gamma^{-1} U^T (r - H D_pin),     a = -(N^T H N)^{-1} N^T H U b.

    Proof (README, section 6). The minimiser solves (H + mu G) D = r. Put D = D0 + D1 / mu + D2 / mu^2
    + ... and match powers of mu: G D0 = 0 (D0 in null(G)); H D0 + G D1 = r, whose null(G) part
    gives D0 = D_pin and whose range part gives U^T D1 = b; H D1 + G D2 = 0, whose null(G) part gives
    N^T H D1 = 0, i.e. a. The series converges for mu > ||H|| / lambda_min+(G) (a Neumann series).
    """
    lam, _ = check_weights(lam, 0.0)
    W0 = as64(W0, "W0")
    K, V = stack(keys, values, *W0.shape)
    G = as64(anchor_gram, "anchor_gram")
    ev, Q = torch.linalg.eigh(0.5 * (G + G.T))
    null = ev <= rtol * max(float(ev[-1]), 1e-300)
    N, U, gamma = Q[:, null], Q[:, ~null], ev[~null]  # (d_k, r), (d_k, d_k - r), (d_k - r,)
    H = lam * torch.eye(W0.shape[0], dtype=W0.dtype) + K.T @ K  # (d_k, d_k)
    r = K.T @ (V - K @ W0)  # (d_k, d_v)
    NHN = N.T @ H @ N
    D0 = N @ torch.linalg.solve(NHN, N.T @ r) if N.shape[1] else torch.zeros_like(W0)
    b = (U.T @ (r - H @ D0)) / gamma[:, None]  # (d_k - r, d_v)
    a = -torch.linalg.solve(NHN, N.T @ H @ U @ b) if N.shape[1] else torch.zeros(0, W0.shape[1], dtype=W0.dtype)
    return U @ b + N @ a
