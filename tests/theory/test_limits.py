"""theory.limits and theory.tradeoff: the limits against exact constructions and independent solvers,
the rate bound by Monte Carlo, the monotonicity of the trade-off as a property."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rlsedit
import theory
from simulations.streams import make_stream
from tests.strategies import MAX_REL_TOL, problems, tolerance

F64 = torch.float64


def _exact_sample(Sigma: np.ndarray, W_true: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n rows whose empirical moments are exactly Sigma and Sigma W_true: K = sqrt(n) Q Sigma^{1/2}."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, Sigma.shape[0])))
    K = np.sqrt(n) * Q @ scipy.linalg.sqrtm(Sigma).real
    return K, K @ W_true


@pytest.mark.parametrize("n", [20, 200, 2000])
def test_scaled_solution_equals_ridge_limit_when_sample_moments_are_exact(n):
    """J_t / t is exactly the population objective on such a sample, so W_t = W_inf for every t."""
    rng = np.random.default_rng(n)
    d_k, d_v = 6, 3
    A = rng.standard_normal((d_k, d_k))
    Sigma = A @ A.T / d_k + 0.1 * np.eye(d_k)
    W_true, W0 = rng.standard_normal((d_k, d_v)), rng.standard_normal((d_k, d_v))
    K0 = rng.standard_normal((4, d_k))
    G = K0.T @ K0
    K, V = _exact_sample(Sigma, W_true, n, rng)
    lam_bar, mu_bar = 0.3, 0.7
    W = rlsedit.batch_solve(W0, K, V, lam=n * lam_bar, mu=n * mu_bar, anchor_gram=G)
    W_inf = theory.ridge_population_limit(Sigma, Sigma @ W_true, W0, lam_bar=lam_bar, mu_bar=mu_bar, anchor_gram=G)
    oracle = scipy.linalg.solve(Sigma + lam_bar * np.eye(d_k) + mu_bar * G,
                                Sigma @ W_true + lam_bar * W0 + mu_bar * G @ W0)
    assert torch.allclose(W_inf, torch.from_numpy(oracle), atol=1e-10)
    assert torch.allclose(W, W_inf, atol=1e-8)


def test_fixed_regularisers_fade_like_one_over_t():
    """On exact-moment samples, ||W_t - W_ls|| = O(1/t): the bias term alone."""
    rng = np.random.default_rng(0)
    d_k, d_v = 5, 2
    Sigma = np.diag(np.linspace(0.5, 2.0, d_k))
    W_true, W0 = rng.standard_normal((d_k, d_v)), rng.standard_normal((d_k, d_v))
    W_ls = theory.least_squares_limit(Sigma, Sigma @ W_true)
    assert torch.allclose(W_ls, torch.from_numpy(W_true), atol=1e-12)
    errs, ts = [], [50, 500, 5000]
    for n in ts:
        K, V = _exact_sample(Sigma, W_true, n, rng)
        errs.append(float((rlsedit.batch_solve(W0, K, V, lam=2.0) - W_ls).norm()))
    assert theory.fit_loglog_slope(ts, errs) == pytest.approx(-1.0, abs=0.02)


def test_least_squares_limit_is_sklearn_on_a_large_sample():
    sklearn = pytest.importorskip("sklearn.linear_model")
    s = make_stream(kind="powerlaw", d_k=6, d_v=2, u=50_000, noise=0.3, seed=1)
    K, V = next(s.batches(1))
    S, X = s.moments()
    fit = sklearn.LinearRegression(fit_intercept=False).fit(K.numpy(), V.numpy())
    W_ls = theory.least_squares_limit(S, X)
    assert np.allclose(fit.coef_.T, W_ls.numpy(), atol=0.03)


def test_no_limit_for_singular_moments():
    S = np.diag([1.0, 0.0])
    with pytest.raises(theory.NoLimitError, match="not unique"):
        theory.least_squares_limit(S, np.zeros((2, 1)))
    # a ridge term makes it unique again
    W = theory.ridge_population_limit(S, np.zeros((2, 1)), np.ones((2, 1)), lam_bar=1.0)
    assert torch.allclose(W, torch.tensor([[0.5], [1.0]], dtype=F64))


@given(problems(custom_values=False), st.floats(-2, 2))
def test_limit_error_bound_holds_for_any_reference(p, shift):
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    G = None if p.K0 is None else p.K0.T @ p.K0
    mu = p.mu if G is not None else 0.0
    anchor = {} if G is None else {"anchor_gram": G}
    W = rlsedit.batch_solve(p.W0, [K for K, _ in p.batches], [V for _, V in p.batches], lam=p.lam, mu=mu, **anchor)
    C = np.linalg.inv(p.normal_matrix())
    ref = p.W0 + shift
    bound = theory.limit_error_bound(C, ref, p.W0, [K for K, _ in p.batches], [V for _, V in p.batches],
                                     lam=p.lam, mu=mu, anchor_gram=G)
    assert float(np.linalg.norm(W.numpy() - ref)) <= bound * (1 + tolerance(F64, p.kappa())) + 1e-12


def test_scaled_rms_bound_holds_by_monte_carlo_on_one_problem():
    """E||W_t - W_inf||^2 <= sigma^2 / (t nu^2) for one fixed problem (one W0, key law, anchor):
    the mean over 40 independent row streams of *that* problem stays below *its* bound, and a
    solver whose weights do not scale with t (it converges to W_ls, not W_inf) exceeds it."""
    lam_bar, mu_bar, t = 0.2, 0.01, 2000
    s = make_stream(kind="heavytail", d_k=5, d_v=2, u=t, noise=0.5, seed=0, n_anchor=1.0, dof=10.0)
    S, X = s.moments()
    G = s.anchor_gram
    W_inf = theory.ridge_population_limit(S, X, s.W0, lam_bar=lam_bar, mu_bar=mu_bar, anchor_gram=G)
    errs, wrong = [], []
    for i in range(40):
        K, V = s.rows(t, stream=100 + i)
        W = rlsedit.batch_solve(s.W0, K, V, lam=t * lam_bar, mu=t * mu_bar, anchor_gram=G)
        errs.append(float(((W - W_inf) ** 2).sum()))
        W_fixed = rlsedit.batch_solve(s.W0, K, V, lam=lam_bar, mu=mu_bar, anchor_gram=G)
        wrong.append(float(((W_fixed - W_inf) ** 2).sum()))
    Ks, Vs = s.rows(20000, stream=2)
    sigma2 = theory.noise_level(W_inf, Ks, Vs, S, X)
    bound = theory.scaled_limit_rms_bound(t, sigma2, lam_bar=lam_bar, mu_bar=mu_bar, anchor_gram=G)
    assert np.mean(errs) ** 0.5 <= bound
    assert np.mean(wrong) ** 0.5 > bound


def test_noise_level_against_a_direct_computation():
    rng = np.random.default_rng(0)
    K, V = rng.standard_normal((50, 3)), rng.standard_normal((50, 2))
    W, S, X = rng.standard_normal((3, 2)), np.eye(3), rng.standard_normal((3, 2))
    m = X - S @ W
    direct = np.mean([((np.outer(k, v - W.T @ k) - m) ** 2).sum() for k, v in zip(K, V, strict=True)])
    assert theory.noise_level(W, K, V, S, X) == pytest.approx(direct)


def test_fit_loglog_slope_recovers_an_exponent():
    t = np.array([1.0, 10.0, 100.0, 1000.0])
    assert theory.fit_loglog_slope(t, 3.0 * t**-0.5) == pytest.approx(-0.5)


# -- trade-off -------------------------------------------------------------------------------------

@settings(max_examples=max(10, settings.default.max_examples // 2))  # three solves per example
@given(problems(custom_values=False, anchor=True, allow_lam_zero=False), st.floats(0.1, 10.0), st.floats(0.1, 10.0))
def test_tradeoff_is_monotone_in_lam_and_in_mu(p, lam_factor, mu_factor):
    assume(tolerance(F64, p.kappa()) <= 1e-8)
    K = np.vstack([K for K, _ in p.batches])
    V = np.vstack([V for _, V in p.batches])
    G = p.K0.T @ p.K0

    def terms(lam, mu):
        W = rlsedit.batch_solve(p.W0, K, V, lam=lam, mu=mu, anchor_gram=G)
        return theory.tradeoff_terms(W, p.W0, K, V, G)

    rtol = 1e-6
    a, b = terms(p.lam, p.mu), terms(p.lam * (1 + lam_factor), p.mu)
    scale = a["f"] + p.mu * a["h"] + p.lam * a["g"] + 1e-12
    assert b["g"] <= a["g"] + rtol * scale / p.lam
    assert b["f"] + p.mu * b["h"] >= a["f"] + p.mu * a["h"] - rtol * scale
    c = terms(p.lam, p.mu * (1 + mu_factor))
    assert c["h"] <= a["h"] + rtol * scale / p.mu
    assert c["f"] + p.lam * c["g"] >= a["f"] + p.lam * a["g"] - rtol * scale


def test_tradeoff_limits():
    rng = np.random.default_rng(3)
    d_k, d_v = 8, 2
    W0 = rng.standard_normal((d_k, d_v))
    K0 = rng.standard_normal((4, d_k))  # rank-4 anchor: a 4-dimensional null space
    G = K0.T @ K0
    K, V = rng.standard_normal((5, d_k)), rng.standard_normal((5, d_v))
    lam, mu = 0.5, 2.0
    # lam, mu -> 0 together: full adherence, the edits are fitted exactly (5 rows, full row rank)
    W_full = theory.full_adherence_limit(W0, K, V, lam=lam, mu=mu, anchor_gram=G)
    assert np.allclose(K @ W_full.numpy(), V, atol=1e-9)
    W_small = rlsedit.batch_solve(W0, K, V, lam=lam * 1e-7, mu=mu * 1e-7, anchor_gram=G)
    assert float((W_small - W_full).norm() / W_full.norm()) < 1e-5
    # mu -> inf: the anchor's span is pinned, the rest is fitted in null(G)
    W_pin = theory.anchor_pinned_limit(W0, K, V, lam=lam, anchor_gram=G)
    assert np.allclose(K0 @ (W_pin.numpy() - W0), 0.0, atol=1e-9)
    W_big = rlsedit.batch_solve(W0, K, V, lam=lam, mu=1e8, anchor_gram=G)
    assert float((W_big - W_pin).norm() / W_pin.norm()) < 1e-6
    # lam -> inf: W0, within the stated rate
    for big in (1e2, 1e4):
        W = rlsedit.batch_solve(W0, K, V, lam=big, mu=mu, anchor_gram=G)
        assert float((W - torch.from_numpy(W0)).norm()) <= theory.weight_pull_bound(W0, K, V, lam=big, mu=mu,
                                                                                     anchor_gram=G) * (1 + 1e-9)
    assert theory.anchor_null_basis(G).shape == (d_k, 4)
