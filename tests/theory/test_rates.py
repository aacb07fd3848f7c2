"""Sharp rates: one fixed problem, many independent row streams of it. The exact constant of
t E||W_t - W_lim||^2 (theory.sandwich_constant) against a plug-in estimate and against Monte
Carlo (the ratio's bootstrap interval contains 1), the RMS slope's bootstrap interval contains -1/2
and excludes wrong slopes, and a wrongly regularised solver is caught by the same test. The O(1/mu)
anchor-pinned rate with its exact first-order term."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rlsedit
import theory
from simulations.streams import make_stream
from theory.limits import (
    bootstrap_loglog_slope,
    bootstrap_mean_interval,
    gaussian_quartic,
    ridge_population_limit,
    sandwich_constant,
    sandwich_constant_from_rows,
)

LAM_BAR, MU_BAR = 0.1, 0.01


def _problem(kind, seed=1, d_k=4, d_v=2):
    s = make_stream(kind=kind, d_k=d_k, d_v=d_v, u=10, noise=0.5, seed=seed, n_anchor=1.0, rho=0.7, dof=10.0,
                    pool=8)
    S, X = s.moments()
    W_inf = ridge_population_limit(S, X, s.W0, lam_bar=LAM_BAR, mu_bar=MU_BAR, anchor_gram=s.anchor_gram)
    M = S + LAM_BAR * torch.eye(d_k, dtype=torch.float64) + MU_BAR * s.anchor_gram
    W_eff, var = s.value_model()
    Delta = W_eff - W_inf
    Minv = torch.linalg.inv(M)
    c = sandwich_constant(M, S, Delta, var, s.quartic_moment((Minv @ Minv).numpy(), (Delta @ Delta.T).numpy()))
    return s, S, X, W_inf, M, c


@pytest.mark.parametrize("kind", ["isotropic", "powerlaw", "heavytail", "anchored", "conflicting", "lowrank"])
def test_closed_form_constant_matches_a_plugin_estimate(kind):
    s, S, X, W_inf, M, c = _problem(kind)
    K, V = s.rows(100_000, stream=7)
    Minv = torch.linalg.inv(M)
    m = X - S @ W_inf
    per_row = (((K @ Minv).unsqueeze(2) * (V - K @ W_inf).unsqueeze(1) - (Minv @ m)) ** 2).sum((1, 2))
    se = float(per_row.std()) / math.sqrt(len(per_row))
    assert sandwich_constant_from_rows(M, W_inf, K, V, S, X) == pytest.approx(float(per_row.mean()), rel=1e-10)
    assert abs(float(per_row.mean()) - c) <= 6 * se


def test_gaussian_quartic_against_monte_carlo():
    rng = np.random.default_rng(0)
    L = rng.standard_normal((3, 3))
    S = L @ L.T
    A, B = np.diag([1.0, 2.0, 0.5]), np.ones((3, 3))
    k = rng.multivariate_normal(np.zeros(3), S, size=400_000)
    v = np.einsum("ij,jk,ik->i", k, A, k) * np.einsum("ij,jk,ik->i", k, B, k)
    assert abs(v.mean() - gaussian_quartic(A, B, S)) <= 6 * v.std() / math.sqrt(len(v))


def _monte_carlo(s, W_inf, ts, n_streams, scaled=True):
    """Squared errors (n_streams, len(ts)) of the scaled-regulariser minimiser, one fixed problem."""
    W0, G = s.W0, s.anchor_gram
    eye = torch.eye(W0.shape[0], dtype=torch.float64)
    out = np.zeros((n_streams, len(ts)))
    for i in range(n_streams):
        K, V = s.rows(ts[-1], stream=1000 + i)
        for j, t in enumerate(ts):
            Kt, Vt = K[:t], V[:t]
            lam, mu = (t * LAM_BAR, t * MU_BAR) if scaled else (LAM_BAR, MU_BAR)  # the mutant: fixed weights
            A = lam * eye + mu * G + Kt.T @ Kt
            W = W0 + torch.linalg.solve(A, Kt.T @ (Vt - Kt @ W0))
            out[i, j] = float(((W - W_inf) ** 2).sum())
    return out


@pytest.mark.parametrize("kind", ["isotropic", "heavytail"])
def test_rate_has_the_exact_constant_and_slope(kind):
    s, S, X, W_inf, _, c = _problem(kind)
    ts = [50, 100, 200, 400, 800, 1600]
    E = _monte_carlo(s, W_inf, ts, 160)
    ratio = bootstrap_mean_interval(E[:, -1], scale=ts[-1] / c)
    assert ratio["lo"] <= 1.0 <= ratio["hi"]
    assert ratio["hi"] - ratio["lo"] < 0.4  # the interval is informative
    slope = bootstrap_loglog_slope(ts, E)
    assert slope["lo"] <= -0.5 <= slope["hi"]
    for wrong in (-0.25, -1.0, -0.4, -0.6):
        assert not slope["lo"] <= wrong <= slope["hi"], (wrong, slope)
    # the a-priori bound's constant is valid but not sharp: its interval excludes the truth
    Ks, Vs = s.rows(50_000, stream=2)
    a = theory.scaled_limit_rms_bound(1, theory.noise_level(W_inf, Ks, Vs, S, X), lam_bar=LAM_BAR, mu_bar=MU_BAR,
                                      anchor_gram=s.anchor_gram) ** 2
    assert bootstrap_mean_interval(E[:, -1], scale=ts[-1] / a)["hi"] < 0.5


def test_a_wrongly_regularised_solver_fails_the_rate_test():
    """Negative control: fixed lam, mu where they should scale with t converges to W_ls, not W_inf;
    its error stalls, and the same interval test rejects the theory's slope and constant."""
    s, _, _, W_inf, _, c = _problem("isotropic")
    ts = [50, 100, 200, 400, 800, 1600]
    E = _monte_carlo(s, W_inf, ts, 40, scaled=False)
    slope = bootstrap_loglog_slope(ts, E)
    assert not slope["lo"] <= -0.5 <= slope["hi"]
    assert bootstrap_mean_interval(E[:, -1], scale=ts[-1] / c)["lo"] > 1.5


def test_bootstrap_helpers_refuse_too_little_data():
    with pytest.raises(ValueError, match="n_streams >= 2"):
        bootstrap_loglog_slope([1, 2], [[1.0, 2.0]])


# -- the anchor-pinned limit's O(1/mu) rate ---------------------------------------------------------

def test_anchor_pinned_rate_is_one_over_mu_with_the_exact_first_order_term():
    rng = np.random.default_rng(3)
    d_k, d_v = 8, 2
    W0 = rng.standard_normal((d_k, d_v))
    K0 = rng.standard_normal((4, d_k))
    G = K0.T @ K0
    K, V = rng.standard_normal((5, d_k)), rng.standard_normal((5, d_v))
    lam = 0.5
    W_pin = theory.anchor_pinned_limit(W0, K, V, lam=lam, anchor_gram=G)
    D1 = theory.anchor_pinned_first_order(W0, K, V, lam=lam, anchor_gram=G)
    mus = [1e2, 1e3, 1e4, 1e5]
    dist = [float((rlsedit.batch_solve(W0, K, V, lam=lam, mu=mu, anchor_gram=G) - W_pin).norm()) for mu in mus]
    assert theory.fit_loglog_slope(mus, dist) == pytest.approx(-1.0, abs=0.01)
    ratios = [mu * d / float(D1.norm()) for mu, d in zip(mus, dist, strict=True)]
    assert abs(ratios[-1] - 1.0) < 1e-3 and abs(ratios[-1] - 1.0) < abs(ratios[0] - 1.0)
    # the direction too, not only the size
    W = rlsedit.batch_solve(W0, K, V, lam=lam, mu=1e5, anchor_gram=G)
    assert float((1e5 * (W - W_pin) - D1).norm() / D1.norm()) < 1e-3
