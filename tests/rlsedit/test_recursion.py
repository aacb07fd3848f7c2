"""Properties of the Woodbury recursion against the closed form (docs/method.md sections 3-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rlsedit
from rlsedit.recursion import initial_inverse, rls_update, symmetrize_
from tests.strategies import MAX_REL_TOL, Problem, problems, rel_err, rel_tol, retraction_kappa, t, tolerance

DTYPES = [torch.float64, torch.float32]


def oracle(p, upto=None, form="keys"):
    """batch_solve in float64 on the first `upto` batches."""
    Ks = [K for K, _ in p.batches[:upto]]
    Vs = [V for _, V in p.batches[:upto]]
    return rlsedit.batch_solve(p.W0, Ks, Vs, lam=p.lam, mu=p.mu, **p.anchor_kwargs(form))


def editor_for(p, dtype, form="keys", **options):
    return rlsedit.RLSEditor(t(p.W0, dtype), lam=p.lam, mu=p.mu, **options,
                             **{k: t(v, dtype) for k, v in p.anchor_kwargs(form).items()})


def path_scale(p, upto=None, form="keys"):
    """The largest ||W*_j|| for j = 0..upto along the stream: the scale of the recursion's rounding.

    The recursion carries W from batch to batch, so its rounding is relative to the largest solution
    it has held, not to the last one: where the last solution is small by cancellation (a
    hypothesis-found float32 case: d_k = d_v = 1, W* = -1.5e-5 after solutions of about 0.3, error
    2e-3 of |W*| but 1e-7 of the path's scale), relative to the last alone the error is not rounding's.
    """
    n = len(p.batches) if upto is None else upto
    return max((oracle(p, upto=j, form=form) for j in range(n + 1)), key=lambda W: float(torch.linalg.vector_norm(W)))


def test_a_solution_small_by_cancellation_is_checked_against_the_path_scale():
    """The float32 case hypothesis found (see path_scale): every batch within eps of the path's scale."""
    a = np.array
    p = Problem(W0=a([[0.34558418]]), lam=0.0, mu=7.532742556862294, K0=a([[-0.92777812], [-0.37313232]]),
                V0=a([[-0.0490187], [0.00496374]]),
                batches=[(a([[-1.65573406], [-1.03874743], [-0.83804858]]),
                          a([[0.54671299], [-0.73645407], [-0.16290995]])),
                         (a([[0.635616]]), a([[-0.29245675]])), (a([[0.50519055]]), a([[-0.27560291]]))])
    ed = editor_for(p, torch.float32)
    for i, (K, V) in enumerate(p.batches, start=1):
        ed.update(t(K, torch.float32), t(V, torch.float32))
        assert rel_err(ed.W, oracle(p, upto=i), path_scale(p, i)) <= tolerance(torch.float32, p.kappa(i))
    assert float(oracle(p).abs().max()) < 1e-4 < float(path_scale(p).abs().max())  # the cancellation


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_recursion_equals_batch_solve_after_every_batch(dtype, data):
    p = data.draw(problems(dtype))
    ed = editor_for(p, dtype)
    for i, (K, V) in enumerate(p.batches, start=1):
        ed.update(t(K, dtype), t(V, dtype))
        assert ed.W.dtype == dtype
        W_ref = oracle(p, upto=i)
        assert rel_err(ed.W, W_ref, path_scale(p, i)) <= rel_tol(dtype, p.kappa(i)), f"batch {i}"


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_dropping_W0_changes_no_bit_of_the_recursion(dtype, data):
    """keep_W0=False drops a copy, not a step: W, C and the records agree bitwise, retraction too."""
    p = data.draw(problems(dtype))
    kept, dropped = editor_for(p, dtype), editor_for(p, dtype, keep_W0=False)
    assert not dropped.keep_W0 and dropped._W0 is None
    assert dropped.W0_fingerprint == kept.W0_fingerprint == rlsedit.weight_fingerprint(t(p.W0, dtype))
    assert torch.equal(kept.W, dropped.W) and torch.equal(kept.C, dropped.C)
    for K, V in p.batches:
        assert kept.update(t(K, dtype), t(V, dtype)) == dropped.update(t(K, dtype), t(V, dtype))
        assert torch.equal(kept.W, dropped.W) and torch.equal(kept.C, dropped.C)
    K, V = p.batches[0]
    outcomes = []
    for ed in (kept, dropped):
        try:
            outcomes.append(ed.retract(t(K, dtype), t(V, dtype)))
        except rlsedit.NotAppliedError as exc:  # float32 rounding can refuse it; then both must
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]
    assert torch.equal(kept.W, dropped.W) and torch.equal(kept.C, dropped.C)


@given(p=problems(torch.float64, min_batches=2), data=st.data())
def test_any_partition_and_order_gives_the_same_solution(p, data):
    rows_K = np.concatenate([K for K, _ in p.batches])
    rows_V = np.concatenate([V for _, V in p.batches])
    n = rows_K.shape[0]
    order = data.draw(st.permutations(range(n)))
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    pieces = np.split(np.asarray(order), cuts)
    ed = editor_for(p, torch.float64)
    for idx in pieces:
        ed.update(rows_K[idx], rows_V[idx])
    W_ref = oracle(p)
    assert rel_err(ed.W, W_ref, W_ref) <= rel_tol(torch.float64, p.kappa())


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_rank_one_chain_equals_one_block_update(dtype, data):
    p = data.draw(problems(dtype, min_batches=1, max_batches=1, max_u=6))
    K, V = p.batches[0]
    block, chain = editor_for(p, dtype), editor_for(p, dtype)
    block.update(t(K, dtype), t(V, dtype))
    for j in range(K.shape[0]):
        chain.update(t(K[j : j + 1], dtype), t(V[j : j + 1], dtype))
    tol = rel_tol(dtype, p.kappa())
    assert rel_err(chain.W, block.W, path_scale(p, 1)) <= tol
    assert rel_err(chain.C, block.C, block.C) <= tol
    assert chain.n_rows == block.n_rows == K.shape[0]


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_retracting_a_batch_equals_never_applying_it(dtype, data):
    p = data.draw(problems(dtype, min_batches=2))
    drop = data.draw(st.integers(0, len(p.batches) - 1))
    ed = editor_for(p, dtype)
    for K, V in p.batches:
        ed.update(t(K, dtype), t(V, dtype))
    K, V = p.batches[drop]
    rec = ed.retract(t(K, dtype), t(V, dtype))
    kept = [b for i, b in enumerate(p.batches) if i != drop]
    W_ref = rlsedit.batch_solve(p.W0, [k for k, _ in kept], [v for _, v in kept], lam=p.lam, mu=p.mu,
                                **p.anchor_kwargs())
    A_kept = p.normal_matrix() - K.T @ K
    kappa = retraction_kappa(p, drop)  # kappa_stream * cond(A_kept) * ||S||^2: see its docstring
    scale = max(path_scale(p), W_ref, key=lambda W: float(torch.linalg.vector_norm(W)))
    assert rel_err(ed.W, W_ref, scale) <= rel_tol(dtype, kappa)
    C_ref = torch.as_tensor(np.linalg.inv(A_kept))
    assert rel_err(ed.C, C_ref, C_ref) <= rel_tol(dtype, kappa)
    assert ed.n_rows == sum(k.shape[0] for k, _ in kept)
    # the record reports the batch's residual with and without it
    tol = rel_tol(dtype, kappa)
    assert rec.residual_after == pytest.approx(
        float(np.linalg.norm(V - K @ W_ref.numpy())), rel=10 * tol, abs=10 * tol * float(np.abs(V).max())
    )


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_soft_write_identity(dtype, data):
    """V - K W_t = S^{-1} (V - K W_{t-1}), S = I + K C_{t-1} K^T (docs/method.md section 4)."""
    p = data.draw(problems(dtype))
    ed = editor_for(p, dtype)
    for K, V in p.batches:
        Kt, Vt = t(K, dtype), t(V, dtype)
        C_prev, W_prev = ed.C.double().clone(), ed.W.double().clone()
        rec = ed.update(Kt, Vt)
        K64, V64 = Kt.double(), Vt.double()
        S = torch.eye(K.shape[0], dtype=torch.float64) + K64 @ C_prev @ K64.T
        predicted = torch.linalg.solve(S, V64 - K64 @ W_prev)
        measured = V64 - K64 @ ed.W.double()
        tol = rel_tol(dtype, p.kappa()) * 10
        scale = float(torch.linalg.vector_norm(V64 - K64 @ W_prev)) + 1e-12
        assert float(torch.linalg.vector_norm(measured - predicted)) <= tol * scale + 1e-12
        assert rec.residual_after == pytest.approx(float(torch.linalg.vector_norm(measured)),
                                                   rel=tol, abs=tol * scale)
        # S >= I, so the write is soft: the residual never grows
        assert rec.residual_after <= rec.residual_before * (1 + tol)


@given(p=problems(torch.float64))
def test_C_is_spd_and_decreases_in_loewner_order(p):
    ed = editor_for(p, torch.float64)
    prev = ed.C.clone()
    for K, V in p.batches:
        ed.update(K, V)
        C = ed.C
        assert torch.allclose(C, C.T, atol=1e-12 * float(C.abs().max()))
        scale = float(torch.linalg.matrix_norm(prev, ord=2))
        assert float(torch.linalg.eigvalsh(C).min()) > 0
        # C_{t-1} - C_t is positive semi-definite (up to rounding)
        assert float(torch.linalg.eigvalsh(prev - C).min()) >= -1e-10 * scale
        prev = C.clone()


@pytest.mark.parametrize("form", ["keys", "stats"])
@given(p=problems(torch.float64, anchor=True))
def test_anchor_as_keys_or_statistics_gives_the_same_answer(form, p):
    by_keys = editor_for(p, torch.float64, "keys")
    by_stats = editor_for(p, torch.float64, form)
    for K, V in p.batches:
        by_keys.update(K, V)
        by_stats.update(K, V)
    tol = rel_tol(torch.float64, p.kappa())
    assert rel_err(by_stats.W, by_keys.W, by_keys.W) <= tol
    assert rel_err(oracle(p, form=form), oracle(p, form="keys"), by_keys.W) <= tol


@given(p=problems(torch.float64))
def test_recursive_solution_minimises_the_objective(p):
    """Any perturbation of W_t raises J_t: the recursion's W_t is the minimiser (first-order check)."""
    ed = editor_for(p, torch.float64)
    for K, V in p.batches:
        ed.update(K, V)
    Ks, Vs = [k for k, _ in p.batches], [v for _, v in p.batches]
    J = rlsedit.objective(ed.W, p.W0, Ks, Vs, lam=p.lam, mu=p.mu, **p.anchor_kwargs()).total
    rng = np.random.default_rng(p.extra["seed"])
    for _ in range(3):
        D = torch.as_tensor(rng.standard_normal(p.W0.shape)) * 1e-3
        Jp = rlsedit.objective(ed.W + D, p.W0, Ks, Vs, lam=p.lam, mu=p.mu, **p.anchor_kwargs()).total
        assert Jp >= J - 1e-9 * max(abs(J), 1.0)


def test_inplace_and_functional_steps_agree_bitwise():
    g = torch.Generator().manual_seed(3)
    C = torch.linalg.inv(torch.eye(6, dtype=torch.float64) * 2 + 0.1)
    W = torch.randn(6, 3, generator=g, dtype=torch.float64)
    K, V = torch.randn(2, 6, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    a = rls_update(C, W, K, V)
    C2, W2 = C.clone(), W.clone()
    b = rls_update(C2, W2, K, V, inplace=True)
    assert torch.equal(a.C, b.C) and torch.equal(a.W, b.W)
    assert b.C.data_ptr() == C2.data_ptr() and b.W.data_ptr() == W2.data_ptr()


def test_tolerance_table_is_meaningful():
    assert tolerance(torch.float64, 1.0) < 1e-11
    assert tolerance(torch.float32, 10.0) < 1e-2
    assert tolerance(torch.float32, 1e6) > MAX_REL_TOL  # such examples are rejected by rel_tol


@pytest.mark.parametrize("dtype", DTYPES)
@given(d=st.integers(1, 23), block=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_symmetrize_in_place_equals_the_two_temporary_formula_bitwise(dtype, d, block, seed):
    A = torch.randn(d, d, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    expected = 0.5 * (A + A.T)
    out = symmetrize_(A, block=block)
    assert out is A
    assert torch.equal(A, expected)
    assert torch.equal(A, A.T)


def test_symmetrize_refuses_a_non_square_matrix_or_an_empty_tile():
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        symmetrize_(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="block must be >= 1, got 0"):
        symmetrize_(torch.zeros(2, 2), block=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_initial_inverse_is_the_symmetric_inverse_of_the_prior(dtype):
    """C_0 against scipy's inverse of lam I + mu G, at a size with several tiles of symmetrize_."""
    import scipy.linalg

    from rlsedit.anchor import resolve_anchor

    rng = np.random.default_rng(3)
    d_k = 1100  # two tiles of 1024: the off-diagonal pair is exercised
    K0 = rng.standard_normal((1500, d_k)) / np.sqrt(d_k)
    anchor = resolve_anchor(torch.zeros(d_k, 2, dtype=dtype), anchor_keys=K0)
    C0 = initial_inverse(d_k, 0.5, 2.0, anchor, dtype, torch.device("cpu"))
    A0 = 0.5 * np.eye(d_k) + 2.0 * anchor.gram.double().numpy()
    expected = scipy.linalg.inv(A0)
    assert C0.dtype == dtype and torch.equal(C0, C0.T)
    err = np.linalg.norm(C0.double().numpy() - expected) / np.linalg.norm(expected)
    assert err <= tolerance(dtype, np.linalg.cond(A0))
