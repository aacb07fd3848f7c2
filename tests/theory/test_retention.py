"""theory.retention: the comparator, cohort and regret bounds and the innovation identities, with
the minimiser from rlsedit.batch_solve (or numpy) and every bound from the stream; their tight
streams; the constructed streams on which MEMIT, ROME and AlphaEdit break the RLS retention bound;
and the baselines' objective gap against a direct evaluation of J_t."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rlsedit
import theory
from simulations.streams import make_stream
from tests.strategies import MAX_REL_TOL, problems, tolerance
from theory.checks import check_stream
from theory.tight import ALL_TIGHT, retention_break_stream

F64 = torch.float64
RTOL = 1e-9


def _unpack(p):
    G = None if p.K0 is None else p.K0.T @ p.K0
    mu = p.mu if G is not None else 0.0
    return [K for K, _ in p.batches], [V for _, V in p.batches], G, mu


def _minimiser(p, keys, values, G, mu):
    anchor = {} if G is None else {"anchor_gram": G}
    return rlsedit.batch_solve(p.W0, keys, values, lam=p.lam, mu=mu, **anchor).numpy()


@given(problems(custom_values=False), st.integers(0, 2**31 - 1))
def test_comparator_bounds_hold_for_any_comparator(p, seed):
    """F_t(W_t) <= J_t(W*) and ||K W_t - V|| <= sqrt(Omega(W*))/2 + ||K W* - V|| for random W*."""
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    keys, values, G, mu = _unpack(p)
    W = _minimiser(p, keys, values, G, mu)
    F = theory.edit_residual(W, keys, values)
    rng = np.random.default_rng(seed)
    tol = tolerance(F64, p.kappa())
    for W_star in (p.W0 + rng.standard_normal(p.W0.shape), W, p.W0):
        kw = {"lam": p.lam, "mu": mu, "anchor_gram": G}
        assert F <= theory.comparator_bound(W_star, p.W0, keys, values, **kw) * (1 + tol) + 1e-12
        assert F <= theory.quarter_comparator_bound(W_star, p.W0, keys, values, **kw) * (1 + tol) + 1e-12


@given(problems(custom_values=False, min_batches=2), st.integers(0, 2**31 - 1))
def test_cohort_bound_holds_for_any_comparator_and_cohort(p, seed):
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    keys, values, G, mu = _unpack(p)
    W = _minimiser(p, keys, values, G, mu)
    C = np.linalg.inv(p.normal_matrix())
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, len(keys) + 1))
    Kc, Vc = np.vstack(keys[:m]), np.vstack(values[:m])
    W_star = p.W0 + rng.standard_normal(p.W0.shape)
    bound = theory.cohort_retention_bound(C, Kc, Vc, W_star, p.W0, keys, values, lam=p.lam, mu=mu, anchor_gram=G)
    assert ((Kc @ W - Vc) ** 2).sum() <= bound * (1 + tolerance(F64, p.kappa())) + 1e-12


def test_cohort_bound_never_grows_on_a_noise_free_realisable_stream():
    """With V = K W*, b_t - A_t W* = P (W0 - W*) is fixed and C_t shrinks: the bound on the first
    cohort's residual is non-increasing in t, however many edits follow."""
    s = make_stream(kind="anchored", d_k=16, d_v=4, u=4, noise=0.0, seed=2)
    G, lam, mu = s.anchor_gram, 0.1, 1.0
    batches = list(s.batches(30))
    keys, values = [b[0] for b in batches], [b[1] for b in batches]
    steps = theory.solve_stream(s.W0, keys, values, lam=lam, mu=mu, anchor_gram=G)
    bounds, measured = [], []
    for t in range(2, 31):
        bounds.append(theory.cohort_retention_bound(steps[t].C, keys[:2], values[:2], s.W_true, s.W0, keys[:t],
                                                    values[:t], lam=lam, mu=mu, anchor_gram=G))
        W = rlsedit.batch_solve(s.W0, keys[:t], values[:t], lam=lam, mu=mu, anchor_gram=G)
        measured.append(theory.edit_residual(W, keys[:2], values[:2]))
    assert all(b <= a * (1 + 1e-9) for a, b in pairwise(bounds))
    assert bounds[-1] < 0.5 * bounds[0]  # later keys cover the cohort's directions
    assert all(m <= b * (1 + 1e-9) for m, b in zip(measured, bounds, strict=True))
    # the plain comparator bound is flat (Omega(W_true)) and the quarter one a quarter of it
    omega = theory.regulariser(s.W_true, s.W0, lam=lam, mu=mu, anchor_gram=G)
    assert theory.comparator_bound(s.W_true, s.W0, keys, values, lam=lam, mu=mu, anchor_gram=G) == \
        pytest.approx(omega, rel=1e-12, abs=1e-12)


@given(problems(custom_values=False))
def test_innovation_identities_against_numpy(p):
    """J_t(W_t) - J_0(W_0) = sum_i tr(E_i^T S_i^{-1} E_i) and sum_i log det S_i = log det(A_t A_0^{-1}),
    with every W from batch_solve and every S, A from numpy."""
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    keys, values, G, mu = _unpack(p)
    total, logdets = 0.0, 0.0
    for i in range(len(keys)):
        W_prev = _minimiser(p, keys[:i], values[:i], G, mu) if i else p.W0
        C_prev = np.linalg.inv(p.normal_matrix(i))
        E = values[i] - keys[i] @ W_prev
        S = np.eye(len(E)) + keys[i] @ C_prev @ keys[i].T
        total += np.trace(E.T @ np.linalg.solve(S, E))
        assert theory.innovation(C_prev, keys[i], E) == pytest.approx(np.trace(E.T @ np.linalg.solve(S, E)),
                                                                       rel=1e-9, abs=1e-12)
        logdets += theory.logdet_S(C_prev, keys[i])
    W = _minimiser(p, keys, values, G, mu)
    J = theory.objective_value(W, p.W0, keys, values, lam=p.lam, mu=mu, anchor_gram=G)
    tol = tolerance(F64, p.kappa())
    assert J == pytest.approx(total, rel=tol, abs=tol * (1 + J))
    expected = np.linalg.slogdet(p.normal_matrix())[1] - np.linalg.slogdet(p.normal_matrix(0))[1]
    assert logdets == pytest.approx(expected, rel=tol, abs=tol)


@given(problems(custom_values=False))
def test_regret_bound_holds_on_the_exact_trajectory(p):
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    keys, values, G, mu = _unpack(p)
    pre, y2 = 0.0, 0.0
    for i in range(len(keys)):
        W_prev = _minimiser(p, keys[:i], values[:i], G, mu) if i else p.W0
        E = values[i] - keys[i] @ W_prev
        pre += (E**2).sum()
        y2 = max(y2, np.linalg.norm(E, 2) ** 2)
    W = _minimiser(p, keys, values, G, mu)
    J = theory.objective_value(W, p.W0, keys, values, lam=p.lam, mu=mu, anchor_gram=G)
    ld = np.linalg.slogdet(p.normal_matrix())[1] - np.linalg.slogdet(p.normal_matrix(0))[1]
    assert pre <= theory.regret_bound(J, 0.0, y2, ld) * (1 + tolerance(F64, p.kappa())) + 1e-12


# -- tightness ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["retention", "comparator_quarter", "retention_cohort", "regret"])
def test_each_retention_bound_is_attained_on_its_stream(name):
    s = ALL_TIGHT[name]()
    ratios = [c.ratio for c in check_stream(s.W0, s.keys, s.values, lam=s.lam, mu=s.mu, anchor_gram=s.anchor_gram,
                                            comparator=s.comparator) if c.bound == name]
    assert ratios[-1] == pytest.approx(1.0, abs=1e-6)
    assert max(ratios) <= 1.0 + 1e-9


def test_retention_ratio_tends_to_one_as_lam_vanishes():
    from theory.tight import retention_tight_stream

    gaps = []
    for lam in (1e-1, 1e-3, 1e-5):
        s = retention_tight_stream(lam=lam)
        r = [c.ratio for c in check_stream(s.W0, s.keys, s.values, lam=s.lam) if c.bound == "retention"][-1]
        gaps.append(1.0 - r)
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert gaps[2] < 1e-4


# -- the baselines ------------------------------------------------------------------------------

def _baselines(b, l2=1.0):
    out = {"rlsedit": rlsedit.make_editor("rlsedit", b.W0, lam=b.lam, mu=b.mu, anchor_gram=b.anchor_gram)}
    for name in ("memit", "rome"):
        out[name] = rlsedit.make_editor(name, b.W0, lam=b.lam, mu=b.mu, anchor_gram=b.anchor_gram)
    out["alphaedit"] = rlsedit.make_editor("alphaedit", b.W0, anchor_gram=b.anchor_gram,
                                           threshold=b.alphaedit_threshold, l2=l2)
    out["ft"] = rlsedit.make_editor("ft", b.W0)
    return out


@pytest.mark.parametrize("l2", [1e-3, 1.0, 10.0])
def test_memit_rome_and_alphaedit_break_the_rls_retention_bound(l2):
    """On the constructed stream each baseline keeps the edits with more residual than the whole
    of RLSEdit's objective, F_t(W_b) > min J_t, while RLSEdit stays below."""
    b = retention_break_stream()
    J_min = theory.solve_stream(b.W0, b.keys, b.values, lam=b.lam, mu=b.mu, anchor_gram=b.anchor_gram)[-1].J_min
    eds = _baselines(b, l2)
    for ed in eds.values():
        for K, V in zip(b.keys, b.values, strict=True):
            ed.update(K, V)
    ratio = {n: theory.edit_residual(ed.W, b.keys, b.values) / J_min for n, ed in eds.items()}
    assert ratio["rlsedit"] <= 1.0
    for name in ("memit", "rome", "alphaedit"):
        assert ratio[name] > 1.3, (name, ratio)


@settings(max_examples=max(10, settings.default.max_examples // 3))
@given(st.integers(0, 2**31 - 1), st.sampled_from(["memit", "alphaedit", "rome", "ft"]))
def test_every_baseline_scores_at_least_rlsedit_on_its_objective(seed, name):
    """J_t(W_b) - J_t(W_t) = tr(D^T A_t D) >= 0 along a stream: the left side evaluated directly,
    the right side from the reference's A_t, W_t from batch_solve."""
    s = make_stream(kind="anchored", d_k=10, d_v=3, u=3, values="arbitrary", seed=seed % 1000, anchor_rank=5)
    G, lam, mu = s.anchor_gram, 0.1, 1.0
    kw = {"lam": lam, "mu": mu, "anchor_gram": G} if name in ("memit", "rome") else \
        {"anchor_gram": G, "threshold": 1e-6 * float(torch.linalg.eigvalsh(G)[-1]), "l2": 1.0} \
        if name == "alphaedit" else {}
    ed = rlsedit.make_editor(name, s.W0, **kw)
    keys, values = [], []
    for K, V in s.batches(6):
        ed.update(K, V)
        keys.append(K)
        values.append(V)
        W_t = rlsedit.batch_solve(s.W0, keys, values, lam=lam, mu=mu, anchor_gram=G)
        A = theory.solve_stream(s.W0, keys, values, lam=lam, mu=mu, anchor_gram=G)[-1].A
        J_b = theory.objective_value(ed.W, s.W0, keys, values, lam=lam, mu=mu, anchor_gram=G)
        J_r = theory.objective_value(W_t, s.W0, keys, values, lam=lam, mu=mu, anchor_gram=G)
        gap = theory.objective_gap(ed.W, W_t, A)
        assert gap >= 0.0
        assert J_b - J_r == pytest.approx(gap, rel=1e-8, abs=1e-10 * J_r)
