"""theory.checks on any editor: the true editor passes every check, each negative control of
theory.mutants is caught, and each bound catches the controls the discrimination table says it
does. The reference side is checked against scipy; no test compares a quantity with itself (the
measured side is an editor's W, the reference an independent solve)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import assume, given, settings

import rlsedit
from simulations.streams import make_stream
from tests.strategies import MAX_REL_TOL, problems, tolerance
from theory.checks import CONSISTENCY_IDENTITIES, check_stream
from theory.mutants import NEGATIVE_CONTROLS, DoNothingEditor, FlippedDowndateEditor, PerturbedEditor, make_control
from theory.reference import ReferenceError, solve_stream

F64 = torch.float64
HALF = settings(max_examples=max(10, settings.default.max_examples // 2))


def _stream(kind="powerlaw", lam=0.01, mu=1.0, scale=1.0, seed=0, n=8):
    s = make_stream(kind=kind, d_k=12, d_v=3, u=3, seed=seed)
    batches = [(scale * K, scale * V) for K, V in s.batches(n)]
    return {"W0": s.W0, "keys": [b[0] for b in batches], "values": [b[1] for b in batches], "lam": lam, "mu": mu,
            "anchor_gram": s.anchor_gram if mu > 0 else None, "comparator": s.W_true}


def _failed(p, editor=None, **kw) -> set[str]:
    checks = check_stream(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"],
                          comparator=p["comparator"], editor=editor, cohort_batches=2, **kw)
    return {c.bound for c in checks if not c.holds(1e-9)}


# -- the reference side: an independent solve, checked against scipy ------------------------------

@given(problems(custom_values=False))
def test_reference_solve_matches_scipy(p):
    assume(tolerance(F64, p.kappa()) <= MAX_REL_TOL)
    G = None if p.K0 is None else p.K0.T @ p.K0
    keys = [K for K, _ in p.batches]
    values = [V for _, V in p.batches]
    steps = solve_stream(p.W0, keys, values, lam=p.lam, mu=p.mu if G is not None else 0.0, anchor_gram=G)
    assert len(steps) == len(keys) + 1
    tol = tolerance(F64, p.kappa())
    for t, st in enumerate(steps):
        A = p.normal_matrix(t)
        K = np.vstack(keys[:t]) if t else np.zeros((0, p.d_k))
        V = np.vstack(values[:t]) if t else np.zeros((0, p.W0.shape[1]))
        W = scipy.linalg.solve(A, p.lam * p.W0 + (p.mu * G @ p.W0 if G is not None else 0.0) + K.T @ V,
                               assume_a="pos")
        assert np.allclose(st.W.numpy(), W, rtol=tol, atol=tol * np.abs(W).max())
        assert st.logdet == pytest.approx(np.linalg.slogdet(A)[1], rel=tol, abs=tol)
        assert np.allclose(st.C.numpy(), scipy.linalg.inv(A), rtol=tol, atol=tol * np.abs(scipy.linalg.inv(A)).max())


def test_reference_refuses_a_singular_problem():
    W0 = torch.zeros(3, 1, dtype=F64)
    with pytest.raises(ReferenceError, match="not positive definite"):
        solve_stream(W0, [torch.ones(1, 3, dtype=F64)], [torch.ones(1, 1, dtype=F64)], lam=0.0)


# -- the true editor passes; broken ones are caught ----------------------------------------------

@HALF
@given(problems(custom_values=False))
def test_true_editor_passes_every_check_including_optimality(p):
    kappa = p.kappa()
    assume(tolerance(F64, kappa) <= MAX_REL_TOL)
    G = None if p.K0 is None else torch.from_numpy(p.K0.T @ p.K0)
    keys = [torch.from_numpy(K) for K, _ in p.batches]
    values = [torch.from_numpy(V) for _, V in p.batches]
    checks = list(check_stream(torch.from_numpy(p.W0), keys, values, lam=p.lam, mu=p.mu if G is not None else 0.0,
                               anchor_gram=G, comparator=torch.from_numpy(p.W0) + 0.5))
    bad = [c for c in checks if not c.holds(1e-9)]
    assert not bad, bad[:3]
    assert {"optimality", "retention", "retention_cohort", "comparator", "regret", "regret_identity"} <= \
        {c.bound for c in checks}


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("reg", [(1.0, 0.0), (0.01, 1.0)])
@pytest.mark.parametrize("name", sorted(NEGATIVE_CONTROLS))
def test_every_negative_control_is_caught(name, reg, scale):
    lam, mu = reg
    p = _stream(lam=lam, mu=mu, scale=scale)
    assert not _failed(p)  # the true editor, same stream
    editor = make_control(name, p["W0"], lam=lam, mu=mu, anchor_gram=p["anchor_gram"])
    failed = _failed(p, editor)
    assert "optimality" in failed, failed
    assert not failed & set(CONSISTENCY_IDENTITIES)  # those read no editor: they cannot catch one


def test_lam_doubled_does_not_apply_when_lam_is_zero():
    assert make_control("lam_doubled", torch.zeros(2, 1, dtype=F64), lam=0.0, mu=1.0, anchor_gram=torch.eye(2)) is None
    with pytest.raises(ValueError, match="unknown negative control"):
        make_control("nope", torch.zeros(2, 1, dtype=F64), lam=1.0)


@pytest.mark.parametrize(("bound", "control", "stream"), [
    # each evidence bound, with one control it catches on a given stream (the discrimination table)
    ("soft_write_upper", "do_nothing", {}),
    ("soft_write_upper", "lam_doubled", {"lam": 1.0, "mu": 0.0, "scale": 30.0}),
    ("soft_write_lower", "memit", {}),
    ("step", "memit", {}),
    ("step", "flipped_downdate", {}),
    ("retention", "do_nothing", {}),
    ("retention", "memit", {"scale": 30.0}),
    ("retention_cohort", "flipped_downdate", {"kind": "anchored", "lam": 1.0, "mu": 0.0, "scale": 30.0}),
    ("comparator", "memit", {"scale": 30.0}),
    ("comparator_quarter", "do_nothing", {"scale": 30.0}),
    ("energy", "flipped_downdate", {"scale": 30.0}),
    ("quarter_energy", "flipped_downdate", {"kind": "anchored"}),
    ("regret_identity", "perturbed_1e-6", {}),
    ("optimality", "perturbed_1e-6", {}),
    ("optimality", "lam_doubled", {"lam": 1.0, "mu": 0.0}),
])
def test_each_bound_catches_its_control(bound, control, stream):
    p = _stream(**stream)
    assert bound not in _failed(p)
    editor = make_control(control, p["W0"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"])
    assert bound in _failed(p, editor)


def test_limit_error_catches_an_editor_that_stays_put():
    p = _stream(scale=30.0)
    W_lim = rlsedit.batch_solve(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"],
                                anchor_gram=p["anchor_gram"])
    assert "limit_error" not in _failed(p, W_lim=W_lim)
    assert "limit_error" in _failed(p, DoNothingEditor(p["W0"]), W_lim=W_lim)


def test_consistency_identities_read_no_editor():
    """loewner, c_norm and the log-det identity give the same numbers whatever the editor: they
    check theorems about A_t, not the editor (which is why they are counted apart)."""
    p = _stream()

    def values(editor):
        return [(c.bound, c.batch, c.measured, c.value) for c in check_stream(
            p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"], editor=editor)
            if c.bound in CONSISTENCY_IDENTITIES]

    base = values(None)
    assert base and values(DoNothingEditor(p["W0"])) == base
    assert values(FlippedDowndateEditor(p["W0"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"])) == base


def test_the_flipped_downdate_is_right_for_one_batch_and_wrong_after():
    p = _stream()
    ed = FlippedDowndateEditor(p["W0"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"])
    ref = solve_stream(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"])
    ed.update(p["keys"][0], p["values"][0])
    assert torch.allclose(ed.W, ref[1].W, rtol=1e-10, atol=1e-12)
    ed.update(p["keys"][1], p["values"][1])
    assert float((ed.W - ref[2].W).norm() / ref[2].W.norm()) > 1e-4


def test_perturbed_editor_is_off_by_exactly_its_relative_size():
    p = _stream()
    ed = PerturbedEditor(p["W0"], lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"])
    ed.update(p["keys"][0], p["values"][0])
    inner = ed._inner.W
    assert float((ed.W - inner).norm() / inner.norm()) == pytest.approx(1e-6, rel=1e-9)


# -- any editor: a float32 RLSEditor, and a user's object ------------------------------------------

def test_a_float32_editor_is_checked_with_float32_rounding():
    p = _stream()
    ed = rlsedit.RLSEditor(p["W0"].float(), lam=p["lam"], mu=p["mu"], anchor_gram=p["anchor_gram"].float())
    checks = list(check_stream(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"],
                               anchor_gram=p["anchor_gram"], editor=ed))
    opt = [c for c in checks if c.bound == "optimality"]
    assert all(c.holds(0.0) for c in opt)
    assert max(c.measured for c in opt) > 1e-9  # float32 really is less accurate than the float64 allowance


class _BatchSolveEditor:
    """A user's editor: re-solves the whole problem with numpy at every batch (shares no code)."""

    def __init__(self, W0, lam, mu, G):
        self.W0, self.lam, self.mu, self.G = W0.numpy(), lam, mu, G.numpy()
        self.K, self.V = [], []
        self.W = W0.clone()

    def update(self, K, V):
        self.K.append(K.numpy())
        self.V.append(V.numpy())
        K, V = np.vstack(self.K), np.vstack(self.V)
        A = self.lam * np.eye(len(self.W0)) + self.mu * self.G + K.T @ K
        self.W = torch.from_numpy(self.W0 + np.linalg.solve(A, K.T @ (V - K @ self.W0)))


def test_a_users_editor_object_passes_when_it_is_right():
    p = _stream()
    ed = _BatchSolveEditor(p["W0"], p["lam"], p["mu"], p["anchor_gram"])
    assert not _failed(p, ed)
