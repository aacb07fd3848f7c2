"""Numerical health: diagnostics against numpy's eigensolver, re-factorisation against the float64
batch solution, and replace() against a stream that never had the old batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlsedit
from rlsedit.health import Information, diagnose, extreme_eigenvalues, symmetry_error
from tests.strategies import assert_unchanged, problems, rel_err, rel_tol, retraction_kappa, snapshot, t

EPS32 = float(np.finfo(np.float32).eps)
FEWER = settings(max_examples=20)  # each example solves several small problems: keep the file fast


def spd(seed: int, d: int, decades: float, negative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A symmetric matrix with eigenvalues log-spaced over `decades` (the smallest negated if asked)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = np.logspace(0.0, -decades, d)
    if negative:
        s[-1] = -s[-1]
    return (U * s) @ U.T, s


# -- diagnostics -------------------------------------------------------------------------------------
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(2, 12), decades=st.floats(1.0, 6.0))
def test_estimated_extreme_eigenvalues_match_numpy(seed, d, decades):
    A, _ = spd(seed, d, decades)
    true = np.linalg.eigvalsh(A)  # independent oracle (LAPACK through numpy)
    lo, hi, pd = extreme_eigenvalues(torch.as_tensor(A), iters=60)
    assert pd
    # Rayleigh quotients: hi never overshoots, lo never undershoots (up to rounding) ...
    assert hi <= true[-1] * (1 + 1e-12) and lo >= true[0] * (1 - 1e-9)
    # ... and with the spectral gaps drawn here 60 iterations converge
    assert hi == pytest.approx(true[-1], rel=1e-4)
    assert lo == pytest.approx(true[0], rel=1e-4)
    h = diagnose(torch.as_tensor(A), iters=60)
    assert h.condition_number == pytest.approx(true[-1] / true[0], rel=2e-4)
    exact = diagnose(torch.as_tensor(A), exact=True)
    assert exact.exact and exact.min_eigenvalue == pytest.approx(true[0], rel=1e-8)
    assert exact.condition_number == pytest.approx(np.linalg.cond(A), rel=1e-6)


@pytest.mark.parametrize("exact", [False, True])
def test_an_indefinite_matrix_is_reported_as_such(exact):
    A, s = spd(1, 8, 2.0, negative=True)
    h = diagnose(torch.as_tensor(A), exact=exact, iters=200)
    assert not h.positive_definite and h.condition_number == float("inf")
    assert h.min_eigenvalue < 0
    if exact:
        assert h.min_eigenvalue == pytest.approx(s[-1], rel=1e-8)  # s[-1] < 0


def test_symmetry_error_is_max_asymmetry_over_max_entry():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((1100, 1100))  # larger than one row block
    B = X + X.T
    B[1050, 3] += 1e-3
    expected = np.abs(B - B.T).max() / np.abs(B).max()
    assert symmetry_error(torch.as_tensor(B)) == pytest.approx(expected, rel=1e-12)
    assert symmetry_error(torch.zeros(3, 3)) == 0.0


def test_diagnostics_refuse_bad_arguments():
    with pytest.raises(rlsedit.ShapeError, match="square"):
        diagnose(torch.ones(2, 3))
    with pytest.raises(rlsedit.ParameterError, match="iters"):
        diagnose(torch.eye(2), iters=0)


@FEWER
@given(p=problems(torch.float64))
def test_editor_health_reports_the_inverse_normal_matrix(p):
    ed = rlsedit.RLSEditor(p.W0, lam=p.lam, mu=p.mu, **p.anchor_kwargs())
    for K, V in p.batches:
        ed.update(K, V)
    h = ed.health(exact=True)
    A = p.normal_matrix()
    assert h.positive_definite and h.symmetry_error < 1e-12
    assert h.condition_number == pytest.approx(np.linalg.cond(A), rel=rel_tol(torch.float64, p.kappa()) * 10)
    assert h.max_eigenvalue == pytest.approx(1.0 / np.linalg.eigvalsh(A)[0], rel=rel_tol(torch.float64, p.kappa()) * 10)


# -- re-factorisation ----------------------------------------------------------------------------------
def oracle64(p, upto=None, drop=None):
    kept = [b for i, b in enumerate(p.batches[:upto]) if i != drop]
    return rlsedit.batch_solve(p.W0, [k for k, _ in kept], [v for _, v in kept], lam=p.lam, mu=p.mu,
                               **p.anchor_kwargs())


@FEWER
@given(p=problems(torch.float32, min_batches=2, anchor=False), every=st.integers(1, 3))
def test_refactorisation_restores_the_float64_solution_rounded_to_float32(p, every):
    ed = rlsedit.RLSEditor(t(p.W0, torch.float32), lam=p.lam, refactor_every=every)
    for i, (K, V) in enumerate(p.batches, start=1):
        ed.update(t(K, torch.float32), t(V, torch.float32))
        A = p.normal_matrix(i)  # the data are float32 numbers: this is exact up to float64 rounding
        assert np.allclose(ed.information.A.numpy(), A, rtol=1e-12, atol=1e-12 * np.abs(A).max())
        if i % every == 0:  # just rebuilt: only the final rounding to float32 (and float64 noise)
            W_ref = oracle64(p, upto=i)
            C_ref = torch.as_tensor(np.linalg.inv(A))
            noise64 = 1000 * 1e-16 * float(np.linalg.cond(A))
            assert rel_err(ed.W, W_ref, W_ref) <= EPS32 + noise64
            assert rel_err(ed.C, C_ref, C_ref) <= EPS32 + noise64


@FEWER
@given(p=problems(torch.float64, min_batches=2, anchor=True))
def test_refactorisation_with_an_anchor_matches_batch_solve(p):
    """The prior part of the information matrix (lam I + mu G, mu (X - G W0)) for every anchor form."""
    for form in ("keys", "stats"):
        ed = rlsedit.RLSEditor(p.W0, lam=p.lam, mu=p.mu, refactor_every=len(p.batches), **p.anchor_kwargs(form))
        for K, V in p.batches:
            ed.update(K, V)  # the last update re-factorises
        W_ref = oracle64(p)
        assert np.allclose(ed.information.A.numpy(), p.normal_matrix(), rtol=1e-10,
                           atol=1e-10 * np.abs(p.normal_matrix()).max())
        assert rel_err(ed.W, W_ref, W_ref) <= rel_tol(torch.float64, p.kappa())


def test_refactor_every_triggers_on_multiples_and_retraction_updates_the_information(monkeypatch):
    rng = np.random.default_rng(0)
    ed = rlsedit.RLSEditor(rng.standard_normal((6, 2)), lam=1.0, refactor_every=3)
    calls = []
    original = ed.refactorize
    monkeypatch.setattr(ed, "refactorize", lambda: (calls.append(ed.n_batches), original())[1])
    batches = [(rng.standard_normal((2, 6)), rng.standard_normal((2, 2))) for _ in range(7)]
    for K, V in batches:
        ed.update(K, V)
    assert calls == [3, 6]
    ed.retract(*batches[4])
    A = np.eye(6) + sum(K.T @ K for i, (K, _) in enumerate(batches) if i != 4)
    assert np.allclose(ed.information.A.numpy(), A, rtol=1e-13)
    ed.refactorize()
    W_ref = rlsedit.batch_solve(ed.W0, [K for i, (K, _) in enumerate(batches) if i != 4],
                                [V for i, (_, V) in enumerate(batches) if i != 4], lam=1.0)
    assert rel_err(ed.W, W_ref, W_ref) < 1e-13


def test_refactorisation_options_and_state():
    W0 = np.eye(3)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(rlsedit.ParameterError, match="refactor_every must be None"):
            rlsedit.RLSEditor(W0, lam=1.0, refactor_every=bad)
    plain = rlsedit.RLSEditor(W0, lam=1.0)
    with pytest.raises(rlsedit.RefactorizationError, match="refactor_every=N"):
        plain.refactorize()
    assert plain.information is None and "information_A" not in plain.state_dict()
    ed = rlsedit.RLSEditor(W0, lam=1.0, refactor_every=2)
    ed.update(np.ones((1, 3)), np.ones((1, 3)))
    state = ed.state_dict()
    back = rlsedit.RLSEditor.from_state_dict(state)
    assert torch.equal(back.information.A, ed.information.A) and torch.equal(back.information.B, ed.information.B)
    with pytest.raises(rlsedit.StateDictError, match=r"information_A'\] is missing"):
        rlsedit.RLSEditor.from_state_dict({k: v for k, v in state.items() if k != "information_A"})
    with pytest.raises(rlsedit.StateDictError, match=r"expected \(3, 3\) torch.float64"):
        rlsedit.RLSEditor.from_state_dict(dict(state, information_A=state["information_A"].float()))


def test_a_singular_information_matrix_is_refused_with_the_state_unchanged():
    info = Information(torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64))
    with pytest.raises(rlsedit.RefactorizationError, match="not positive definite"):
        info.rebuild(torch.zeros(2, 1))


# -- replace -----------------------------------------------------------------------------------------
@FEWER
@given(p=problems(torch.float64, min_batches=2), data=st.data())
def test_replace_equals_a_stream_that_never_had_the_old_batch(p, data):
    j = data.draw(st.integers(0, len(p.batches) - 1))
    K_old, _ = p.batches[j]
    same_keys = data.draw(st.booleans())  # a conflicting edit: the same keys with new values
    rng = np.random.default_rng(p.extra["seed"] + 1)
    K_new = K_old if same_keys else rng.standard_normal(K_old.shape) / np.sqrt(p.d_k)
    V_new = rng.standard_normal((K_old.shape[0], p.W0.shape[1]))
    ed = rlsedit.RLSEditor(p.W0, lam=p.lam, mu=p.mu, refactor_every=data.draw(st.sampled_from([None, 2])),
                           **p.anchor_kwargs())
    for K, V in p.batches:
        ed.update(K, V)
    removed, added = ed.replace(*p.batches[j], K_new, V_new)
    kept = [b for i, b in enumerate(p.batches) if i != j] + [(K_new, V_new)]
    W_ref = rlsedit.batch_solve(p.W0, [k for k, _ in kept], [v for _, v in kept], lam=p.lam, mu=p.mu,
                                **p.anchor_kwargs())
    # as for retract (tests.strategies.retraction_kappa: cond(A_kept) ||S||^2 of the removed batch), then the
    # new batch's update on top
    A_new = p.normal_matrix() - K_old.T @ K_old + K_new.T @ K_new
    kappa = max(retraction_kappa(p, j), float(np.linalg.cond(A_new)))
    assert rel_err(ed.W, W_ref, W_ref) <= rel_tol(torch.float64, kappa)
    assert ed.n_rows == sum(k.shape[0] for k, _ in kept) and ed.n_batches == len(p.batches)
    assert removed.rows == added.rows == K_old.shape[0]


def test_replace_is_atomic():
    rng = np.random.default_rng(3)
    ed = rlsedit.RLSEditor(rng.standard_normal((5, 2)), lam=1.0, refactor_every=2)
    K, V = rng.standard_normal((2, 5)), rng.standard_normal((2, 2))
    ed.update(K, V)
    ed.update(rng.standard_normal((1, 5)), rng.standard_normal((1, 2)))
    before = snapshot(ed)
    with pytest.raises(rlsedit.NonFiniteError, match="K_new holds 10 non-finite"):
        ed.replace(K, V, np.full((2, 5), np.nan), V)
    assert_unchanged(ed, before)
    with pytest.raises(rlsedit.NotAppliedError):
        ed.replace(10 * np.ones((1, 5)), np.ones((1, 2)), K, V)
    assert_unchanged(ed, before)
    with pytest.raises(rlsedit.ShapeError, match="K_new has 4 columns"):
        ed.replace(K, V, np.ones((2, 4)), V)
    assert_unchanged(ed, before)


@pytest.mark.parametrize("refactor_every", [3, None])
def test_replace_rolls_back_when_the_update_fails_after_the_retraction(monkeypatch, refactor_every):
    """Everything comes back: C, W, the counters, the information matrix and the ledger of batches."""
    rng = np.random.default_rng(4)
    ed = rlsedit.RLSEditor(rng.standard_normal((5, 2)), lam=1.0, refactor_every=refactor_every)
    K, V = rng.standard_normal((2, 5)), rng.standard_normal((2, 2))
    ed.update(K, V)
    before = snapshot(ed)

    def failing_update(K, V):
        raise rlsedit.FactorizationError("simulated failure of the second step")

    monkeypatch.setattr(ed, "update", failing_update)
    with pytest.raises(rlsedit.FactorizationError, match="simulated"):
        ed.replace(K, V, K, 2 * V)
    assert_unchanged(ed, before)
    assert [e.batch_id for e in ed.applied_batches] == [0]


def test_rebuilt_C_is_exactly_symmetric():
    rng = np.random.default_rng(5)
    ed = rlsedit.RLSEditor(rng.standard_normal((30, 2)).astype(np.float32), lam=0.3, refactor_every=4)
    for _ in range(4):
        ed.update(rng.standard_normal((3, 30)), rng.standard_normal((3, 2)))
    assert torch.equal(ed.C, ed.C.T) and ed.health().symmetry_error == 0.0


def test_with_refactor_every_C0_is_formed_in_float64():
    """C_0 = (lam I + mu G)^{-1} rounded once to float32, not inverted in float32 (eps * cond error)."""
    rng = np.random.default_rng(6)
    U, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    G = ((U * np.logspace(0, -5, 40)) @ U.T).astype(np.float32).astype(np.float64)
    G = 0.5 * (G + G.T)
    W0 = rng.standard_normal((40, 2)).astype(np.float32)
    C_ref = torch.as_tensor(np.linalg.inv(G))
    tracked = rlsedit.RLSEditor(W0, mu=1.0, anchor_gram=G.astype(np.float32), refactor_every=5)
    plain = rlsedit.RLSEditor(W0, mu=1.0, anchor_gram=G.astype(np.float32))
    assert rel_err(tracked.C, C_ref, C_ref) <= EPS32
    assert rel_err(plain.C, C_ref, C_ref) > 10 * EPS32  # what the float32 inversion costs here
