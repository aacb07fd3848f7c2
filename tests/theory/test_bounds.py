"""theory.bounds: every bound holds on random and adversarial streams (float64), each tightness
claim is met by its stream, and the identities behind the proofs hold against independent numpy
computations."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rlsedit
import theory
from tests.strategies import MAX_REL_TOL, problems, tolerance
from theory.checks import BOUND_NAMES, check_stream
from theory.tight import (
    energy_tight_stream,
    quarter_tight_stream,
    single_edit_stream,
    spectral_tight_stream,
)

F64 = torch.float64
# Each example streams a whole problem through every check (tens of ms): these tests draw half the
# profile's examples, so that the default suite stays fast and HYPOTHESIS_PROFILE=thorough still
# scales them up.
HALF = settings(max_examples=max(10, settings.default.max_examples // 2))


def _stream_kwargs(p):
    G = None if p.K0 is None else torch.from_numpy(p.K0.T @ p.K0)
    keys = [torch.from_numpy(K) for K, _ in p.batches]
    values = [torch.from_numpy(V) for _, V in p.batches]
    return torch.from_numpy(p.W0), keys, values, G


def _assert_all_hold(checks, tol):
    seen = set()
    for c in checks:
        seen.add(c.bound)
        assert c.holds(tol), f"{c.bound} violated at batch {c.batch}: {c} (tol {tol})"
    return seen


@HALF
@given(problems(custom_values=False))
def test_every_bound_holds_on_random_streams(p):
    kappa = p.kappa()
    tol = tolerance(F64, kappa)
    assume(tol <= MAX_REL_TOL)
    W0, keys, values, G = _stream_kwargs(p)
    W_lim = W0 + 1.0  # the a-posteriori limit bound holds for any reference matrix
    seen = _assert_all_hold(check_stream(W0, keys, values, lam=p.lam, mu=p.mu, anchor_gram=G, W_lim=W_lim), tol)
    assert {"energy", "quarter_energy", "spectral", "step", "loewner", "limit_error"} <= seen


@st.composite
def adversarial_streams(draw):
    """Streams built to stress the bounds: huge or tiny keys, repeated and conflicting keys, keys in the
    anchor's null space, batches already satisfied by W0, a nearly singular anchor."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    d_k, d_v = draw(st.integers(2, 10)), draw(st.integers(1, 4))
    W0 = rng.standard_normal((d_k, d_v))
    rank = draw(st.integers(1, d_k))
    K0 = rng.standard_normal((rank, d_k)) * np.logspace(0, -draw(st.floats(0, 4)), rank)[:, None]
    lam = 10 ** draw(st.floats(-3, 2))
    mu = draw(st.sampled_from([0.0, 1e-2, 1.0, 1e3]))
    null = np.linalg.svd(K0)[2][rank:]  # rows spanning null(K0)
    keys, values = [], []
    base = rng.standard_normal((1, d_k))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["huge", "tiny", "repeat", "conflict", "null", "satisfied", "plain"]))
        u = draw(st.integers(1, 4))
        K = rng.standard_normal((u, d_k))
        if kind == "huge":
            K = K * 1e3
        elif kind == "tiny":
            K = K * 1e-4
        elif kind in ("repeat", "conflict"):
            K = np.repeat(base, u, axis=0)
        elif kind == "null" and len(null):
            K = rng.standard_normal((u, len(null))) @ null
        V = rng.standard_normal((u, d_v)) * (1e3 if kind == "conflict" else 1.0)
        if kind == "satisfied":
            V = K @ W0
        keys.append(torch.from_numpy(K))
        values.append(torch.from_numpy(V))
    return torch.from_numpy(W0), keys, values, lam, mu, torch.from_numpy(K0.T @ K0)


@HALF
@given(adversarial_streams())
def test_every_bound_holds_on_adversarial_streams(stream):
    W0, keys, values, lam, mu, G = stream
    A = lam * torch.eye(W0.shape[0], dtype=F64) + mu * G
    kappa = float(torch.linalg.cond(A))
    for K in keys:  # the worst prefix: C_t carries the rounding of every earlier step
        A = A + K.T @ K
        kappa = max(kappa, float(torch.linalg.cond(A)))
    tol = tolerance(F64, kappa)
    assume(tol <= MAX_REL_TOL)
    _assert_all_hold(check_stream(W0, keys, values, lam=lam, mu=mu, anchor_gram=G if mu > 0 else None,
                                  W_lim=torch.zeros_like(W0)), tol)


@given(problems(custom_values=False, anchor=True))
def test_energy_gap_identity_against_numpy(p):
    """J_t(W0) - J_t(W_t) = tr(B^T C_t B) (README section 1), everything in numpy from scratch."""
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    K = np.vstack([K for K, _ in p.batches])
    V = np.vstack([V for _, V in p.batches])
    A = p.normal_matrix()
    B = K.T @ (V - K @ p.W0)
    W = p.W0 + np.linalg.solve(A, B)
    D = W - p.W0

    def J(M):
        return ((K @ M - V) ** 2).sum() + p.lam * ((M - p.W0) ** 2).sum() + p.mu * ((p.K0 @ (M - p.W0)) ** 2).sum()

    gap = np.trace(B.T @ np.linalg.solve(A, B))
    assert J(p.W0) - J(W) == pytest.approx(gap, rel=1e-6, abs=1e-9 * J(p.W0))
    quarter = p.lam * (D**2).sum() + p.mu * ((p.K0 @ D) ** 2).sum()
    assert quarter <= 0.25 * ((K @ p.W0 - V) ** 2).sum() * (1 + 1e-9) + 1e-12
    assert theory.quarter_energy_bound(p.W0, K, V) == pytest.approx(0.25 * ((K @ p.W0 - V) ** 2).sum())


@given(problems(custom_values=False))
def test_soft_write_residual_is_S_inverse_times_residual_before(p):
    """V_t - K_t W_t = (I + K C_{t-1} K^T)^{-1} (V_t - K_t W_{t-1}), with both W's from batch_solve."""
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    W0, keys, values, G = _stream_kwargs(p)
    anchor = {} if G is None else {"anchor_gram": G}
    mu = p.mu if G is not None else 0.0
    W_prev = rlsedit.batch_solve(W0, keys[:-1], values[:-1], lam=p.lam, mu=mu, **anchor) if len(keys) > 1 else \
        rlsedit.batch_solve(W0, None, None, lam=p.lam, mu=mu, **anchor)
    W_t = rlsedit.batch_solve(W0, keys, values, lam=p.lam, mu=mu, **anchor)
    A_prev = torch.from_numpy(p.normal_matrix(len(keys) - 1))
    K, V = keys[-1], values[-1]
    S = torch.eye(K.shape[0], dtype=F64) + K @ torch.linalg.solve(A_prev, K.T)
    expected = torch.linalg.solve(S, V - K @ W_prev)
    tol = tolerance(F64, p.kappa())
    assert torch.allclose(V - K @ W_t, expected, rtol=tol, atol=tol * float(expected.abs().max() + 1))
    lo, hi = theory.soft_write_interval(torch.linalg.inv(A_prev), K, float((V - K @ W_prev).norm()))
    after = float((V - K @ W_t).norm())
    assert lo * (1 - tol) - 1e-12 <= after <= hi * (1 + tol) + 1e-12


@HALF
@given(problems(custom_values=False, max_u=3))
def test_loewner_gap_has_rank_at_most_u(p):
    """The editor's C_t against the inverse of A_t formed from scratch (numpy); the Loewner order
    and the rank of C_{t-1} - C_t on those independent inverses. (On the editor's own C alone the
    order holds for C_t = C_{t-1} - F F^T whatever F is: not evidence; see the flipped-sign test.)"""
    tol = tolerance(F64, p.kappa())
    assume(tol <= 1e-6)
    W0, keys, values, G = _stream_kwargs(p)
    anchor = {} if G is None else {"anchor_gram": G}
    ed = rlsedit.RLSEditor(W0, lam=p.lam, mu=p.mu if G is not None else 0.0, **anchor)
    for t, (K, V) in enumerate(zip(keys, values, strict=True), start=1):
        ed.update(K, V)
        C_prev = torch.from_numpy(np.linalg.inv(p.normal_matrix(t - 1)))
        C_t = torch.from_numpy(np.linalg.inv(p.normal_matrix(t)))
        assert float((ed.C - C_t).norm() / C_t.norm()) <= tol
        assert theory.loewner_gap_rank(C_prev, C_t, rtol=1e-7) <= K.shape[0]
        assert theory.loewner_ratio(C_prev, C_t) <= 1 + tol


def test_a_flipped_downdate_breaks_the_loewner_order_and_the_inverse():
    """The negative control for the test above: C_t = C_{t-1} + F S^{-1} F^T grows, so the ratio
    exceeds 1 and C_t is not the inverse of A_t."""
    from theory.mutants import FlippedDowndateEditor

    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(5, 2, generator=g, dtype=F64)
    ed = FlippedDowndateEditor(W0, lam=1.0)
    A = torch.eye(5, dtype=F64)
    for _ in range(2):
        C_prev = ed._C.clone()
        K = torch.randn(2, 5, generator=g, dtype=F64)
        ed.update(K, torch.randn(2, 2, generator=g, dtype=F64))
        A = A + K.T @ K
    assert theory.loewner_ratio(C_prev, ed._C) > 1.5
    assert float((ed._C - torch.linalg.inv(A)).norm() / torch.linalg.inv(A).norm()) > 0.1


# -- tightness: one test per claim --------------------------------------------------------------

def _ratios(s, bound):
    return [c.ratio for c in check_stream(s.W0, s.keys, s.values, lam=s.lam, mu=s.mu, anchor_gram=s.anchor_gram)
            if c.bound == bound]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quarter_energy_bound_is_attained(seed):
    assert _ratios(quarter_tight_stream(seed=seed), "quarter_energy") == [pytest.approx(1.0, abs=1e-9)]


def test_energy_bound_ratio_tends_to_one_as_lam_grows():
    ratios = [_ratios(energy_tight_stream(lam=lam), "energy")[-1] for lam in (1e1, 1e3, 1e5, 1e7)]
    assert all(a < b for a, b in pairwise(ratios))
    assert ratios[-1] == pytest.approx(1.0, abs=1e-5)
    assert max(ratios) <= 1.0


@pytest.mark.parametrize("seed", [0, 3])
def test_spectral_bound_is_attained(seed):
    for r in _ratios(spectral_tight_stream(seed=seed), "spectral"):
        assert r == pytest.approx(1.0, abs=1e-9)


def test_spectral_bound_is_not_attained_when_the_key_energy_exceeds_the_gap():
    """The tightness condition matters: keys along e_1 with ||k||^2 > mu (g_2 - g_1) break it."""
    s = spectral_tight_stream()
    big = [10.0 * K for K in s.keys]
    r = [c.ratio for c in check_stream(s.W0, big, s.values, lam=s.lam, mu=s.mu, anchor_gram=s.anchor_gram)
         if c.bound == "spectral"]
    assert r[-1] < 0.99


@pytest.mark.parametrize("bound", ["step", "soft_write_upper", "soft_write_lower", "loewner"])
def test_single_edit_batches_make_the_per_step_bounds_equalities(bound):
    for r in _ratios(single_edit_stream(), bound):
        assert r == pytest.approx(1.0, abs=1e-9)


def test_c_norm_bound_is_attained_when_keys_miss_a_direction():
    s = single_edit_stream(d_k=6, n=3)  # 3 keys in 6 dimensions, lam I prior
    assert _ratios(s, "c_norm")[-1] == pytest.approx(1.0, abs=1e-12)


def test_bound_names_cover_every_check():
    s = single_edit_stream()
    names = {c.bound for c in check_stream(s.W0, s.keys, s.values, lam=1.0, mu=0.0, W_lim=s.W0)}
    assert names <= set(BOUND_NAMES)


# -- the plain functions --------------------------------------------------------------------------

def test_energy_bound_functions_agree_with_their_definitions():
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(5, 2, generator=g, dtype=F64)
    K = torch.randn(3, 5, generator=g, dtype=F64)
    V = torch.randn(3, 2, generator=g, dtype=F64)
    E = float(((K @ W0 - V) ** 2).sum())
    assert theory.edit_energy(W0, [K[:1], K[1:]], [V[:1], V[1:]]) == pytest.approx(E)
    assert theory.energy_bound(W0, K, V, mu=2.0, anchor_r0=0.5) == pytest.approx(E + 1.0)
    assert theory.weight_distance_bound(W0, K, V, lam=4.0) == pytest.approx((E / 4.0) ** 0.5)
    assert theory.quarter_weight_distance_bound(W0, K, V, lam=4.0) == pytest.approx((E / 16.0) ** 0.5)
    assert theory.anchor_residual_bound(W0, K, V, mu=2.0) == pytest.approx(E / 2.0)
    assert theory.quarter_anchor_residual_bound(W0, K, V, mu=2.0) == pytest.approx(E / 8.0)
    assert theory.weight_distance_bound(W0, K, V, lam=0.0) == float("inf")
    assert theory.prior_inverse_norm(5, lam=2.0, mu=0.0) == pytest.approx(0.5)


def test_energy_bound_with_custom_anchor_values_holds():
    """The general statement (V0 != K0 W0): J_t(W_t) <= E_t + mu r_0."""
    rng = np.random.default_rng(1)
    W0, K0 = rng.standard_normal((6, 2)), rng.standard_normal((9, 6))
    V0 = K0 @ W0 + rng.standard_normal((9, 2))
    K, V = rng.standard_normal((4, 6)), rng.standard_normal((4, 2))
    W = rlsedit.batch_solve(W0, K, V, lam=0.3, mu=2.0, anchor_keys=K0, anchor_values=V0)
    J = rlsedit.objective(W, W0, K, V, lam=0.3, mu=2.0, anchor_keys=K0, anchor_values=V0)
    r0 = float(((K0 @ W0 - V0) ** 2).sum())
    assert J.total <= theory.energy_bound(W0, K, V, mu=2.0, anchor_r0=r0)
    B = theory.drive(W0, K, V, mu=2.0, anchor_gram=K0.T @ K0, anchor_cross=K0.T @ V0)
    assert torch.allclose(B, torch.from_numpy(K.T @ (V - K @ W0) + 2.0 * K0.T @ (V0 - K0 @ W0)))


def test_bad_inputs_raise_named_errors():
    W0 = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="lam and mu must be >= 0"):
        theory.energy_bound(W0, torch.zeros(1, 3), torch.zeros(1, 2), mu=-1.0)
    with pytest.raises(ValueError, match="d_k = 3 columns"):
        theory.edit_energy(W0, torch.zeros(1, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="non-finite"):
        theory.edit_energy(W0, torch.full((1, 3), float("nan")), torch.zeros(1, 2))


def test_inputs_are_not_modified():
    s = quarter_tight_stream()
    before = [K.clone() for K in s.keys], s.W0.clone(), s.anchor_gram.clone()
    list(check_stream(s.W0, s.keys, s.values, lam=s.lam, mu=s.mu, anchor_gram=s.anchor_gram))
    assert all(torch.equal(a, b) for a, b in zip(before[0], s.keys, strict=True))
    assert torch.equal(before[1], s.W0) and torch.equal(before[2], s.anchor_gram)
