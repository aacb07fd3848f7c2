"""The baseline editors: their defining properties, each against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rlsedit
from rlsedit.anchor import resolve_anchor
from rlsedit.recursion import initial_inverse, rls_update
from tests.strategies import problems, rel_err, rel_tol, spectral_matrix


@given(p=problems(torch.float64, anchor=True, custom_values=False))
def test_memit_equals_rlsedit_restarted_from_C0_at_every_batch(p):
    G = p.K0.T @ p.K0
    memit = rlsedit.MEMITEditor(p.W0, lam=p.lam, mu=p.mu, anchor_gram=G)
    W = torch.as_tensor(p.W0)
    for K, V in p.batches:
        memit.update(K, V)
        # a fresh RLSEditor whose W0 is the current weight, anchored to the current map
        fresh = rlsedit.RLSEditor(W, lam=p.lam, mu=p.mu, anchor_gram=G)
        fresh.update(K, V)
        W = fresh.W
        assert rel_err(memit.W, W, W) <= rel_tol(torch.float64, p.kappa())
    # and C never moves
    A0 = p.lam * np.eye(p.d_k) + p.mu * G
    assert rel_err(memit.C, torch.as_tensor(np.linalg.inv(A0)), memit.C) <= rel_tol(torch.float64, p.kappa(0))


@given(p=problems(torch.float64, anchor=True, custom_values=False, min_batches=3))
def test_memit_differs_from_rlsedit_once_edits_accumulate(p):
    """Guard against the authors' driver bug: the recursion must carry C_t, MEMIT must not."""
    G = p.K0.T @ p.K0
    memit = rlsedit.MEMITEditor(p.W0, lam=p.lam, mu=p.mu, anchor_gram=G)
    rls = rlsedit.RLSEditor(p.W0, lam=p.lam, mu=p.mu, anchor_gram=G)
    for K, V in p.batches:
        memit.update(K, V)
        rls.update(K, V)
    assert not torch.allclose(memit.C, rls.C)


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(2, 10), threshold=st.floats(1e-3, 1.0))
def test_alphaedit_projector_is_idempotent_and_annihilates_kept_directions(seed, d, threshold):
    rng = np.random.default_rng(seed)
    K0 = spectral_matrix(rng, 2 * d, d, log10_cond=4.0, scale=3.0)
    G = torch.as_tensor(K0.T @ K0)
    P = rlsedit.null_space_projector(G, threshold)
    evals, evecs = torch.linalg.eigh(G)
    kept = evecs[:, evals >= threshold]
    assert torch.allclose(P @ P, P, atol=1e-10)
    assert torch.allclose(P, P.T, atol=1e-12)
    assert float(torch.linalg.vector_norm(P @ kept)) <= 1e-10
    # P is the identity on the discarded (null) directions
    null = evecs[:, evals < threshold]
    assert torch.allclose(P @ null, null, atol=1e-10)


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(3, 10), n_batches=st.integers(1, 4))
def test_alphaedit_preserves_the_anchor_on_its_kept_span(seed, d, n_batches):
    rng = np.random.default_rng(seed)
    r = d // 2  # the anchor spans r directions; the rest is the null space
    K0 = rng.standard_normal((3 * d, r)) @ rng.standard_normal((r, d))
    W0 = rng.standard_normal((d, 2))
    ed = rlsedit.AlphaEditEditor(W0, anchor_keys=K0, threshold=1e-8, l2=1.0)
    for _ in range(n_batches):
        ed.update(rng.standard_normal((2, d)), rng.standard_normal((2, 2)))
    drift = np.linalg.norm(K0 @ (ed.W.numpy() - W0)) / np.linalg.norm(K0 @ W0)
    assert drift <= 1e-8
    assert not torch.allclose(ed.W, torch.as_tensor(W0))  # it did edit, in the null space


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(2, 10), u=st.integers(1, 4))
def test_alphaedit_step_solves_its_stated_problem(seed, d, u):
    """Compare with minimising the documented objective over D = P y directly (lstsq on y)."""
    rng = np.random.default_rng(seed)
    K0 = rng.standard_normal((d, d // 2 + 1)) @ rng.standard_normal((d // 2 + 1, d))
    W0 = rng.standard_normal((d, 3))
    ed = rlsedit.AlphaEditEditor(W0, anchor_keys=K0, threshold=1e-6, l2=0.5)
    Kp, Vp = rng.standard_normal((u, d)), rng.standard_normal((u, 3))
    ed.update(Kp, Vp)
    W1 = ed.W.numpy().copy()
    K, V = rng.standard_normal((u, d)), rng.standard_normal((u, 3))
    ed.update(K, V)
    P = ed.P.numpy()
    # min_y ||K (W1 + P y) - V||^2 + l2 ||P y||^2 + ||Kp P y||^2 as one stacked least squares in y
    X = np.concatenate([K @ P, np.sqrt(0.5) * P, Kp @ P])
    Y = np.concatenate([V - K @ W1, np.zeros((d, 3)), np.zeros((u, 3))])
    y = np.linalg.lstsq(X, Y, rcond=None)[0]
    assert np.allclose(ed.W.numpy(), W1 + P @ y, atol=1e-8)


@given(p=problems(torch.float64, anchor=True, custom_values=False))
def test_rome_writes_each_key_exactly_with_the_smallest_prior_weighted_change(p):
    G = p.K0.T @ p.K0
    A0 = p.lam * np.eye(p.d_k) + p.mu * G
    ed = rlsedit.ROMEEditor(p.W0, lam=p.lam, mu=p.mu, anchor_gram=G)
    K, V = p.batches[0]
    k, v = K[:1], V[:1]
    W_prev = ed.W.numpy().copy()
    ed.update(k, v)
    W = ed.W.numpy()
    assert np.allclose(k @ W, v, atol=1e-8 * (1 + np.abs(v).max()) * p.kappa(0))
    # KKT of min tr(D^T A0 D) s.t. k D = v - k W_prev: A0 D = k^T lambda^T, so D = C0 k^T lambda^T
    D = W - W_prev
    c = np.linalg.solve(A0, k.T)  # (d_k, 1)
    lam_star = np.linalg.lstsq(c, D, rcond=None)[0]
    assert np.allclose(c @ lam_star, D, atol=1e-8 * (1 + np.abs(D).max()) * p.kappa(0))


def test_rome_is_the_hard_limit_of_memit():
    rng = np.random.default_rng(0)
    d = 6
    K0 = rng.standard_normal((20, d))
    W0 = rng.standard_normal((d, 2))
    k, v = rng.standard_normal((1, d)), rng.standard_normal((1, 2))
    rome = rlsedit.ROMEEditor(W0, mu=1.0, anchor_keys=K0)
    rome.update(k, v)
    # MEMIT with the edit weighted s (keys and values scaled by sqrt(s)) tends to ROME as s grows
    gaps = []
    for s in (1e2, 1e4, 1e6):
        memit = rlsedit.MEMITEditor(W0, mu=1.0, anchor_keys=K0)
        memit.update(np.sqrt(s) * k, np.sqrt(s) * v)
        gaps.append(float((memit.W - rome.W).abs().max()))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-4


@given(seed=st.integers(0, 2**32 - 1), bound=st.one_of(st.none(), st.floats(1e-3, 1.0)))
def test_ft_lowers_the_batch_loss_and_respects_its_norm_bound(seed, bound):
    rng = np.random.default_rng(seed)
    W0 = rng.standard_normal((8, 3))
    ed = rlsedit.FTEditor(W0, steps=10, lr=1.0, norm_bound=bound)
    for _ in range(3):
        rec = ed.update(rng.standard_normal((4, 8)), rng.standard_normal((4, 3)))
        assert rec.residual_after <= rec.residual_before * (1 + 1e-12)
    if bound is not None:
        assert float((ed.W - torch.as_tensor(W0)).abs().max()) <= bound * (1 + 1e-12)


def test_ft_converges_to_the_least_squares_fit_without_a_bound():
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((5, 2))
    K, V = rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    ed = rlsedit.FTEditor(W0, steps=2000, lr=1.0)
    rec = ed.update(K, V)
    assert rec.residual_after < 1e-8  # underdetermined: gradient descent reaches an exact fit
    # from W0, it converges to the fit closest to W0 (the pseudo-inverse correction)
    expected = W0 + np.linalg.pinv(K) @ (V - K @ W0)
    assert np.allclose(ed.W.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_editor_keeps_dtype_and_round_trips_its_state(name, dtype):
    rng = np.random.default_rng(2)
    d = 7
    W0 = torch.as_tensor(rng.standard_normal((d, 3))).to(dtype)
    K0 = torch.as_tensor(rng.standard_normal((4, d))).to(dtype)
    kwargs = {
        "rlsedit": {"lam": 0.5, "mu": 1.0, "anchor_keys": K0},
        "memit": {"lam": 0.5, "mu": 1.0, "anchor_keys": K0},
        "rome": {"lam": 0.5, "mu": 1.0, "anchor_keys": K0},
        "alphaedit": {"anchor_keys": K0, "threshold": 1e-4},
        "ft": {"steps": 5, "norm_bound": 0.5},
    }[name]
    ed = rlsedit.make_editor(name, W0, **kwargs)
    batches = [(torch.as_tensor(rng.standard_normal((2, d))).to(dtype),
                torch.as_tensor(rng.standard_normal((2, 3))).to(dtype)) for _ in range(3)]
    ed.update(*batches[0])
    assert ed.W.dtype == dtype
    clone = rlsedit.editor_from_state_dict(ed.state_dict())
    assert type(clone) is type(ed)
    for K, V in batches[1:]:
        ed.update(K, V)
        clone.update(K, V)
    assert torch.equal(ed.W, clone.W)
    assert (ed.n_rows, ed.n_batches) == (clone.n_rows, clone.n_batches) == (6, 3)


@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 8), n_batches=st.integers(1, 4))
def test_every_editor_edits_the_same_bits_without_its_copy_of_W0(name, dtype, seed, d, n_batches):
    rng = np.random.default_rng(seed)
    W0 = torch.as_tensor(rng.standard_normal((d, 3))).to(dtype)
    K0 = torch.as_tensor(rng.standard_normal((d + 2, d))).to(dtype)
    kwargs = {"alphaedit": {"anchor_keys": K0[:1], "threshold": 1e-4}, "ft": {"steps": 5}}.get(
        name, {"lam": 0.5, "mu": 1.0, "anchor_keys": K0})
    kept = rlsedit.make_editor(name, W0, **kwargs)
    dropped = rlsedit.make_editor(name, W0, keep_W0=False, **kwargs)
    assert dropped._W0 is None and dropped.W0_fingerprint == kept.W0_fingerprint
    for _ in range(n_batches):
        K = torch.as_tensor(rng.standard_normal((2, d))).to(dtype)
        V = torch.as_tensor(rng.standard_normal((2, 3))).to(dtype)
        assert kept.update(K, V) == dropped.update(K, V)
        assert torch.equal(kept.W, dropped.W)
    state = dropped.state_dict()
    assert "W0" not in state and state["W0_fingerprint"] == kept.W0_fingerprint
    assert kept.state_dict().keys() - {"W0"} == state.keys() - {"W0_fingerprint"}


def test_make_editor_refuses_unknown_names_and_options():
    W0 = np.eye(3)
    with pytest.raises(ValueError, match="unknown editor 'nope'"):
        rlsedit.make_editor("nope", W0)
    with pytest.raises(TypeError):
        rlsedit.make_editor("memit", W0, lam=1.0, anchor_values=np.eye(3))
    with pytest.raises(TypeError):
        rlsedit.make_editor("ft", W0, mu=1.0)


def test_baselines_refuse_retraction():
    ed = rlsedit.MEMITEditor(np.eye(3), lam=1.0)
    ed.update(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(NotImplementedError, match="cannot retract"):
        ed.retract(np.ones((1, 3)), np.ones((1, 3)))


def test_functional_step_matches_memit_step_from_C0():
    rng = np.random.default_rng(4)
    W0 = torch.as_tensor(rng.standard_normal((5, 2)))
    G = torch.as_tensor(rng.standard_normal((9, 5))).T @ torch.as_tensor(rng.standard_normal((9, 5)))
    G = G @ G.T
    anchor = resolve_anchor(W0, anchor_gram=G)
    C0 = initial_inverse(5, 0.3, 2.0, anchor, torch.float64, torch.device("cpu"))
    K, V = torch.as_tensor(rng.standard_normal((2, 5))), torch.as_tensor(rng.standard_normal((2, 2)))
    memit = rlsedit.MEMITEditor(W0, lam=0.3, mu=2.0, anchor_gram=G)
    memit.update(K, V)
    assert torch.allclose(memit.W, rls_update(C0, W0, K, V).W, atol=1e-12)
