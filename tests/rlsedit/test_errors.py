"""Bad input: a clear, named error, and the editor's state exactly as before the call."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rlsedit
from rlsedit import (
    AnchorError,
    DTypeError,
    EmptyBatchError,
    FactorizationError,
    NonFiniteError,
    NotAppliedError,
    NoUniqueSolutionError,
    ParameterError,
    ShapeError,
    W0NotKeptError,
)
from tests.strategies import assert_unchanged, snapshot

D_K, D_V = 6, 3


def fresh(name="rlsedit"):
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((D_K, D_V))
    K0 = rng.standard_normal((10, D_K))
    kwargs = {"lam": 0.1, "mu": 1.0, "anchor_keys": K0}
    if name == "alphaedit":
        kwargs = {"anchor_keys": K0[:3], "threshold": 1e-6}
    elif name == "ft":
        kwargs = {}
    ed = rlsedit.make_editor(name, W0, **kwargs)
    ed.update(rng.standard_normal((2, D_K)), rng.standard_normal((2, D_V)))
    return ed


K_OK = np.ones((2, D_K))
V_OK = np.ones((2, D_V))
BAD_BATCHES = [
    (np.ones((2, D_K + 1)), V_OK, ShapeError, "K has 7 columns"),
    (K_OK, np.ones((2, D_V + 1)), ShapeError, "V has 4 columns"),
    (np.ones((3, D_K)), V_OK, ShapeError, "K has 3 rows but V has 2"),
    (np.ones(D_K), V_OK, ShapeError, "K must be 2-D"),
    (np.ones((0, D_K)), np.ones((0, D_V)), EmptyBatchError, "empty batch"),
    (np.full((2, D_K), np.nan), V_OK, NonFiniteError, "K holds 12 non-finite"),
    (K_OK, np.array([[1.0, np.inf, 0.0], [0.0, 0.0, 0.0]]), NonFiniteError, r"first at index \(0, 1\)"),
    (np.ones((2, D_K), dtype=np.int64), V_OK, DTypeError, "integer dtype"),
    (K_OK.astype(np.complex128), V_OK, DTypeError, "complex128"),
    (np.full((2, D_K), 1e300), V_OK, NonFiniteError, "too large"),
]


@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
@pytest.mark.parametrize(("K", "V", "error", "message"), BAD_BATCHES)
def test_bad_batches_raise_named_errors_and_leave_the_state_alone(name, K, V, error, message):
    ed = fresh(name)
    before = snapshot(ed)
    if name == "ft" and message == "too large":
        error, message = NonFiniteError, None
    with pytest.raises(error, match=message):
        ed.update(K, V)
    assert_unchanged(ed, before)


@given(values=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, 1.0]),
                       min_size=D_K * 2, max_size=D_K * 2))
def test_fuzzed_key_values_never_leave_nan_in_W(values):
    ed = fresh()
    before = snapshot(ed)
    K = np.asarray(values).reshape(2, D_K)
    try:
        ed.update(K, V_OK)
    except rlsedit.RLSEditError:
        assert_unchanged(ed, before)
    else:
        assert bool(torch.isfinite(ed.W).all()) and bool(torch.isfinite(ed.C).all())


def test_constructor_errors_name_the_problem():
    W0 = np.eye(4)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        rlsedit.RLSEditor(W0, lam=-1.0)
    with pytest.raises(ValueError, match="mu must be >= 0"):
        rlsedit.RLSEditor(W0, lam=1.0, mu=-0.5, anchor_keys=np.eye(4))
    with pytest.raises(NonFiniteError, match="lam must be finite"):
        rlsedit.RLSEditor(W0, lam=float("nan"))
    with pytest.raises(AnchorError, match="mu > 0 needs an anchor"):
        rlsedit.RLSEditor(W0, mu=1.0)
    with pytest.raises(NoUniqueSolutionError, match="lam = 0"):
        rlsedit.RLSEditor(W0)  # no regulariser at all
    singular = np.diag([1.0, 1.0, 1.0, 0.0])
    with pytest.raises(NoUniqueSolutionError, match="singular"):
        rlsedit.RLSEditor(W0, mu=1.0, anchor_gram=singular)
    with pytest.raises(AnchorError, match="not symmetric"):
        rlsedit.RLSEditor(W0, lam=1.0, mu=1.0, anchor_gram=np.triu(np.ones((4, 4))))
    with pytest.raises(AnchorError, match="not positive semi-definite"):
        rlsedit.RLSEditor(W0, lam=10.0, mu=1.0, anchor_gram=np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(AnchorError, match="not positive semi-definite"):
        rlsedit.RLSEditor(W0, lam=10.0, mu=1.0, anchor_gram=np.array(
            [[1.0, 2, 0, 0], [2, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(ShapeError, match=r"anchor_gram must be \(d_k, d_k\) = \(4, 4\)"):
        rlsedit.RLSEditor(W0, lam=1.0, mu=1.0, anchor_gram=np.eye(3))
    with pytest.raises(ShapeError, match="anchor_keys has 3 columns"):
        rlsedit.RLSEditor(W0, lam=1.0, mu=1.0, anchor_keys=np.ones((2, 3)))
    with pytest.raises(ShapeError, match="anchor_keys has 2 rows but anchor_values has 3"):
        rlsedit.RLSEditor(W0, lam=1.0, mu=1.0, anchor_keys=np.ones((2, 4)), anchor_values=np.ones((3, 4)))
    with pytest.raises(AnchorError, match="not both"):
        rlsedit.RLSEditor(W0, lam=1.0, mu=1.0, anchor_keys=np.eye(4), anchor_gram=np.eye(4))
    with pytest.raises(AnchorError, match="anchor_values needs anchor_keys"):
        rlsedit.RLSEditor(W0, lam=1.0, anchor_values=np.eye(4))
    with pytest.raises(AnchorError, match="anchor_cross needs anchor_gram"):
        rlsedit.RLSEditor(W0, lam=1.0, anchor_cross=np.eye(4))
    with pytest.raises(NonFiniteError, match="anchor_gram holds 1 non-finite"):
        g = np.eye(4)
        g[1, 1] = np.nan
        rlsedit.RLSEditor(W0, lam=1.0, mu=1.0, anchor_gram=g)
    with pytest.raises(ShapeError, match="W0 must be 2-D"):
        rlsedit.RLSEditor(np.ones(4), lam=1.0)
    with pytest.raises(DTypeError, match="bfloat16"):
        rlsedit.RLSEditor(torch.ones(4, 4, dtype=torch.bfloat16), lam=1.0)
    with pytest.raises(DTypeError, match="not supported"):
        rlsedit.RLSEditor(W0, lam=1.0, dtype="float16")


def test_half_precision_batches_are_cast_up_to_the_editor_dtype():
    ed = fresh()
    ed.update(torch.ones(2, D_K, dtype=torch.bfloat16), torch.ones(2, D_V, dtype=torch.float16))
    assert ed.W.dtype == torch.float64


def test_bfloat16_weight_is_accepted_with_an_explicit_dtype():
    ed = rlsedit.RLSEditor(torch.ones(4, 2, dtype=torch.bfloat16), lam=1.0, dtype=torch.float32)
    assert ed.W.dtype == torch.float32


def test_retracting_a_batch_that_was_never_applied_is_refused():
    ed = fresh()
    before = snapshot(ed)
    big = 10.0 * np.ones((1, D_K))  # ||k||^2 C >> 1: I - k C k^T < 0
    with pytest.raises(NotAppliedError, match="cannot have been applied"):
        ed.retract(big, np.ones((1, D_V)))
    assert_unchanged(ed, before)
    with pytest.raises(NotAppliedError, match="only 2 edit rows were applied"):
        ed.retract(np.ones((3, D_K)), np.ones((3, D_V)))
    assert_unchanged(ed, before)


def test_a_failed_factorisation_raises_and_leaves_the_state_alone():
    ed = fresh()
    ed._C.mul_(-1.0)  # simulate a state that lost positive definiteness
    before = snapshot(ed)
    with pytest.raises(FactorizationError, match="not positive definite"):
        ed.update(np.ones((1, D_K)), np.ones((1, D_V)))
    assert_unchanged(ed, before)


@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
def test_inputs_are_never_mutated(name):
    rng = np.random.default_rng(5)
    W0 = rng.standard_normal((D_K, D_V))
    K0 = rng.standard_normal((10, D_K))
    K, V = rng.standard_normal((3, D_K)), rng.standard_normal((3, D_V))
    copies = [x.copy() for x in (W0, K0, K, V)]
    W0_t, K_t = torch.as_tensor(W0.copy()), torch.as_tensor(K.copy())
    kwargs = {"ft": {}, "alphaedit": {"anchor_keys": K0[:3], "threshold": 1e-6}}.get(
        name, {"lam": 0.1, "mu": 1.0, "anchor_keys": K0})
    for (w0, k), keep_W0 in itertools.product(((W0, K), (W0_t, K_t)), (True, False)):
        ed = rlsedit.make_editor(name, w0, keep_W0=keep_W0, **kwargs)  # keep_W0=False reads w0 in place
        ed.update(k, V)
        ed.update(k, V)
    for original, copy in zip((W0, K0, K, V), copies, strict=True):
        assert np.array_equal(original, copy)
    assert torch.equal(W0_t, torch.as_tensor(W0)) and torch.equal(K_t, torch.as_tensor(K))


def test_state_dict_errors_name_the_mismatch():
    ed = fresh()
    state = ed.state_dict()
    with pytest.raises(rlsedit.StateDictError, match="saved by editor 'rlsedit', not 'memit'"):
        rlsedit.MEMITEditor.from_state_dict(state)
    broken = dict(state, C=torch.eye(3, dtype=torch.float64))
    with pytest.raises(rlsedit.StateDictError, match=r"state\['C'\] has shape \(3, 3\)"):
        rlsedit.RLSEditor.from_state_dict(broken)
    with pytest.raises(rlsedit.StateDictError, match="misses"):
        rlsedit.RLSEditor.from_state_dict({k: v for k, v in state.items() if k != "W"})
    with pytest.raises(DTypeError, match=r"dtype torch\.float32"):
        rlsedit.RLSEditor.from_state_dict(dict(state, C=state["C"].float()))


def test_an_editor_without_W0_says_so_and_what_to_do():
    ed = fresh()
    dropped = rlsedit.RLSEditor(ed.W0, lam=0.1, keep_W0=False)
    dropped.update(np.ones((2, D_K)), np.ones((2, D_V)))
    before = snapshot(dropped)
    with pytest.raises(W0NotKeptError, match=r"built with keep_W0=False.*load\(path, W0=\.\.\.\).*keep_W0=True"):
        dropped.W0  # noqa: B018
    with pytest.raises(AttributeError):  # the built-in it also is: hasattr() says False
        dropped.W0  # noqa: B018
    assert not hasattr(dropped, "W0") and hasattr(ed, "W0")
    assert "keep_W0=False" in repr(dropped) and "keep_W0" not in repr(ed)
    with pytest.raises(rlsedit.RefactorizationError, match="refactor_every=N"):
        dropped.refactorize()
    assert_unchanged(dropped, before)


def test_options_that_read_W0_refuse_to_drop_it():
    W0 = np.eye(4)
    with pytest.raises(ParameterError, match=r"keep_W0=False.*refactor_every .* reads W0 at every batch"):
        rlsedit.RLSEditor(W0, lam=1.0, refactor_every=5, keep_W0=False)
    with pytest.raises(ParameterError, match=r"keep_W0=False.*norm_bound .* reads W0 at every batch"):
        rlsedit.FTEditor(W0, norm_bound=0.1, keep_W0=False)
    with pytest.raises(ParameterError, match="keep_W0 must be True or False, got 0"):
        rlsedit.MEMITEditor(W0, lam=1.0, keep_W0=0)
    # the same options without keep_W0=False, and keep_W0=False without them, are fine
    rlsedit.RLSEditor(W0, lam=1.0, refactor_every=5)
    rlsedit.FTEditor(W0, norm_bound=0.1)
    rlsedit.RLSEditor(W0, lam=1.0, keep_W0=False)
    rlsedit.FTEditor(W0, keep_W0=False)


def test_state_dict_without_W0_errors_name_the_mismatch():
    ed = rlsedit.RLSEditor(np.eye(4), lam=1.0, keep_W0=False)
    state = ed.state_dict()
    with pytest.raises(rlsedit.StateDictError, match="both 'W0' and 'W0_fingerprint'"):
        rlsedit.RLSEditor.from_state_dict(dict(state, W0=torch.eye(4, dtype=torch.float64)))
    with pytest.raises(rlsedit.StateDictError, match="'sha256:' and 64 hex digits"):
        rlsedit.RLSEditor.from_state_dict(dict(state, W0_fingerprint="sha256:abc"))
    with pytest.raises(rlsedit.StateDictError, match=r"misses \['W0'\]"):  # what a reader without keep_W0 says
        rlsedit.RLSEditor.from_state_dict({k: v for k, v in state.items() if k != "W0_fingerprint"})
    with pytest.raises(rlsedit.StateDictError, match="fingerprint but not W0, and refactor_every"):
        rlsedit.RLSEditor.from_state_dict(dict(state, refactor_every=2))
    with pytest.raises(rlsedit.StateDictError, match="fingerprint but not W0, and norm_bound"):
        rlsedit.FTEditor.from_state_dict(dict(rlsedit.FTEditor(np.eye(4), keep_W0=False).state_dict(),
                                              norm_bound=0.5))


def test_batch_solve_errors():
    W0 = np.eye(3)
    with pytest.raises(NoUniqueSolutionError, match="singular"):
        rlsedit.batch_solve(W0, np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ShapeError, match="values must be a list of the same length"):
        rlsedit.batch_solve(W0, [np.ones((1, 3))], np.ones((1, 3)), lam=1.0)
    with pytest.raises(ShapeError, match=r"keys\[1\] has 2 columns"):
        rlsedit.batch_solve(W0, [np.ones((1, 3)), np.ones((1, 2))], [np.ones((1, 3))] * 2, lam=1.0)


def test_parameters_that_require_grad_are_detached():
    W = torch.nn.Parameter(torch.randn(D_K, D_V, dtype=torch.float64))
    ed = rlsedit.RLSEditor(W, lam=1.0)
    K = torch.randn(2, D_K, dtype=torch.float64, requires_grad=True)
    ed.update(K, torch.zeros(2, D_V, dtype=torch.float64))
    assert not ed.W.requires_grad and not ed.C.requires_grad
    assert ed.W.grad_fn is None
