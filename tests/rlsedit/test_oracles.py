"""batch_solve against solvers no one here wrote: scipy's lstsq and scikit-learn's Ridge."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given

import rlsedit
from tests.strategies import problems, rel_tol


def stacked(p):
    """The whole objective as one ordinary least-squares problem:
    rows [K_1; ...; K_t; sqrt(mu) K0; sqrt(lam) I] against [V_1; ...; V_t; sqrt(mu) V0; sqrt(lam) W0]."""
    Ks = [K for K, _ in p.batches]
    Vs = [V for _, V in p.batches]
    if p.K0 is not None and p.mu > 0:
        V0 = p.K0 @ p.W0 if p.V0 is None else p.V0
        Ks.append(np.sqrt(p.mu) * p.K0)
        Vs.append(np.sqrt(p.mu) * V0)
    if p.lam > 0:
        Ks.append(np.sqrt(p.lam) * np.eye(p.d_k))
        Vs.append(np.sqrt(p.lam) * p.W0)
    return np.concatenate(Ks), np.concatenate(Vs)


@given(p=problems(torch.float64))
def test_batch_solve_matches_scipy_lstsq_on_the_stacked_problem(p):
    X, Y = stacked(p)
    W_scipy = scipy.linalg.lstsq(X, Y)[0]
    W = rlsedit.batch_solve(p.W0, [K for K, _ in p.batches], [V for _, V in p.batches],
                            lam=p.lam, mu=p.mu, **p.anchor_kwargs())
    err = np.linalg.norm(W.numpy() - W_scipy) / np.linalg.norm(W_scipy)
    assert err <= rel_tol(torch.float64, p.kappa())


@given(p=problems(torch.float64, allow_lam_zero=False))
def test_batch_solve_matches_sklearn_ridge(p):
    """Ridge shrinks toward 0, so solve for D = W - W0 with targets shifted by W0."""
    Ridge = pytest.importorskip("sklearn.linear_model").Ridge
    Ks = [K for K, _ in p.batches]
    Ds = [V - K @ p.W0 for K, V in p.batches]
    if p.K0 is not None:
        V0 = p.K0 @ p.W0 if p.V0 is None else p.V0
        Ks.append(np.sqrt(p.mu) * p.K0)
        Ds.append(np.sqrt(p.mu) * (V0 - p.K0 @ p.W0))
    X, Y = np.concatenate(Ks), np.concatenate(Ds)
    model = Ridge(alpha=p.lam, fit_intercept=False, solver="svd").fit(X, Y)
    W_sklearn = p.W0 + model.coef_.T.reshape(p.W0.shape)
    W = rlsedit.batch_solve(p.W0, [K for K, _ in p.batches], [V for _, V in p.batches],
                            lam=p.lam, mu=p.mu, **p.anchor_kwargs())
    err = np.linalg.norm(W.numpy() - W_sklearn) / np.linalg.norm(W_sklearn)
    assert err <= rel_tol(torch.float64, p.kappa())


@given(p=problems(torch.float64))
def test_objective_terms_match_the_stacked_residual(p):
    X, Y = stacked(p)
    W = scipy.linalg.lstsq(X, Y)[0]
    val = rlsedit.objective(W, p.W0, [K for K, _ in p.batches], [V for _, V in p.batches],
                            lam=p.lam, mu=p.mu, **p.anchor_kwargs())
    assert val.anchor_exact
    assert val.total == pytest.approx(float(np.sum((X @ W - Y) ** 2)), rel=1e-9, abs=1e-9)
    assert val.edits == pytest.approx(sum(float(np.sum((K @ W - V) ** 2)) for K, V in p.batches), rel=1e-9, abs=1e-12)
    assert val.weights == pytest.approx(p.lam * float(np.sum((W - p.W0) ** 2)), rel=1e-9, abs=1e-12)


@given(p=problems(torch.float64, anchor=True, custom_values=True))
def test_objective_from_statistics_with_custom_cross_differs_by_a_constant(p):
    """With anchor_gram/anchor_cross only, ||V0||^2 is unknown: the anchor term is reported up to
    the W-independent constant ||(I - P) V0||^2 and flagged as not exact."""
    Ks, Vs = [K for K, _ in p.batches], [V for _, V in p.batches]
    W1 = rlsedit.batch_solve(p.W0, Ks, Vs, lam=p.lam, mu=p.mu, **p.anchor_kwargs())
    W2 = W1 + 0.1
    exact = [rlsedit.objective(W, p.W0, Ks, Vs, lam=p.lam, mu=p.mu, **p.anchor_kwargs("keys")) for W in (W1, W2)]
    stats = [rlsedit.objective(W, p.W0, Ks, Vs, lam=p.lam, mu=p.mu, **p.anchor_kwargs("stats")) for W in (W1, W2)]
    assert exact[0].anchor_exact and not stats[0].anchor_exact
    diff_exact = exact[1].anchor - exact[0].anchor
    diff_stats = stats[1].anchor - stats[0].anchor
    assert diff_stats == pytest.approx(diff_exact, rel=1e-6, abs=1e-8)
    assert stats[0].anchor <= exact[0].anchor + 1e-8 * max(1.0, exact[0].anchor)
