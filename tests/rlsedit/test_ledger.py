"""The ledger of applied batches (rlsedit/ledger.py): retract and replace refuse any batch the editor
did not apply, before any arithmetic and with the state bitwise unchanged; a valid retraction
equals the batch solution without that batch; the ledger survives state dicts and checkpoints, and
files of format 1 (before the ledger) still load, with their batches marked unverifiable.

Each check is a function that raises AssertionError (or pytest's Failed) when its property does not
hold. The hypothesis tests run it on RLSEditor; below them, broken editors (mutants: a ledger never
consulted, one that hashes before the dtype cast, one not restored from checkpoints, ...) are run
through the same checks, which must catch each of them.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlsedit
from rlsedit import BatchNotKeptError, NotAppliedError, RLSEditor
from rlsedit.checkpoint import load_checkpoint, read_header, tensor_checksum
from rlsedit.ledger import Ledger, PendingEntry, batch_digest
from rlsedit.recursion import rls_retract
from tests.paths import FIXTURES, ROOT
from tests.strategies import (
    Problem,
    assert_unchanged,
    problems,
    rel_err,
    rel_tol,
    retraction_kappa,
    snapshot,
    t,
    tolerance,
)

DTYPES = [torch.float64, torch.float32]
FIXTURE = FIXTURES / "rlsedit-format1.safetensors"
CAUGHT = (AssertionError, pytest.fail.Exception)  # what a failing check raises
FEWER = settings(max_examples=30)  # the checks below run several retractions per example


# -- helpers ---------------------------------------------------------------------------------------
def oracle(p, keep):
    """batch_solve in float64 on the batches whose indices are in ``keep`` (a list, repeats allowed)."""
    return rlsedit.batch_solve(p.W0, [p.batches[i][0] for i in keep], [p.batches[i][1] for i in keep],
                               lam=p.lam, mu=p.mu, **p.anchor_kwargs())


def editor_for(p, dtype, cls=RLSEditor, **options):
    return cls(t(p.W0, dtype), lam=p.lam, mu=p.mu, **options,
               **{k: t(v, dtype) for k, v in p.anchor_kwargs().items()})


def applied(p, dtype, cls=RLSEditor, **options):
    """An editor that applied every batch of ``p``, and the ids update() returned."""
    ed = editor_for(p, dtype, cls, **options)
    ids = [ed.update(t(K, dtype), t(V, dtype)).batch_id for K, V in p.batches]
    return ed, ids


def path_scale(p, upto):
    """The largest ||W*|| along the stream: the scale of the recursion's rounding (see test_recursion)."""
    return max((oracle(p, range(j)) for j in range(upto + 1)), key=lambda W: float(torch.linalg.vector_norm(W)))


def near_miss(kind, K, V, seed):
    """A batch close to (K, V) (torch tensors in the editor's dtype) that is not (K, V)."""
    rng = np.random.default_rng(seed)
    K, V = K.clone(), V.clone()
    if kind == "key one ulp":
        i, j = int(rng.integers(K.shape[0])), int(rng.integers(K.shape[1]))
        K[i, j] = torch.nextafter(K[i, j], torch.tensor(float("inf"), dtype=K.dtype))
        return K, V
    if kind == "values + 1":
        return K, V + 1
    if kind == "keys off by 1%":
        return K * 1.01, V
    if kind == "fresh small keys":  # as in the issue: 4 keys scaled 0.1, values anything
        u = 4
        return (torch.as_tensor(0.1 * rng.standard_normal((u, K.shape[1]))).to(K.dtype),
                torch.as_tensor(rng.standard_normal((u, V.shape[1]))).to(V.dtype))
    raise ValueError(kind)


NEAR_MISSES = ["key one ulp", "values + 1", "keys off by 1%", "fresh small keys"]


def accepted(call, *args, **kwargs):
    """Call ``call``; a refusal of what the check expects to be accepted fails the check."""
    try:
        return call(*args, **kwargs)
    except NotAppliedError as exc:
        raise AssertionError(f"a valid retraction was refused: {exc}") from exc


# -- the checks ------------------------------------------------------------------------------------
def check_near_misses_refused(ed, K, V, seed, op="retract"):
    """Every near miss of the applied batch (K, V) is refused with the state bitwise unchanged."""
    for kind in NEAR_MISSES:
        bad_K, bad_V = near_miss(kind, K, V, seed)
        assert not (torch.equal(bad_K, K) and torch.equal(bad_V, V)), kind
        before = snapshot(ed)
        with pytest.raises(NotAppliedError, match="cannot have been applied"):
            if op == "retract":
                ed.retract(bad_K, bad_V)
            else:
                ed.replace(bad_K, bad_V, K, V + 2)
        assert_unchanged(ed, before)


def check_valid_retraction(p, dtype, drop, cls=RLSEditor):
    """Retracting batch ``drop`` (by its K and V, and by its id) equals batch_solve without it; the
    record carries its id; the retracted batch is then refused, and the two ways agree bit for bit."""
    by_batch, ids = applied(p, dtype, cls)
    by_id, _ = applied(p, dtype, cls, keep_batches=True)
    K, V = t(p.batches[drop][0], dtype), t(p.batches[drop][1], dtype)
    rec = accepted(by_batch.retract, K, V)
    assert rec.batch_id == ids[drop]
    assert accepted(by_id.retract_by_id, ids[drop]) == rec
    assert torch.equal(by_id.W, by_batch.W) and torch.equal(by_id.C, by_batch.C)
    keep = [i for i in range(len(p.batches)) if i != drop]
    W_ref = oracle(p, keep)
    scale = max(path_scale(p, len(p.batches)), W_ref, key=lambda W: float(torch.linalg.vector_norm(W)))
    assert rel_err(by_batch.W, W_ref, scale) <= tolerance(dtype, retraction_kappa(p, drop))
    before = snapshot(by_batch)
    with pytest.raises(NotAppliedError, match="cannot have been applied"):
        by_batch.retract(K, V)  # a second retraction of the same batch
    assert_unchanged(by_batch, before)
    before = snapshot(by_id)
    with pytest.raises(NotAppliedError, match=f"no applied batch has id {ids[drop]}"):
        by_id.retract_by_id(ids[drop])
    assert_unchanged(by_id, before)
    for ed in (by_batch, by_id):
        assert [e.batch_id for e in ed.applied_batches] == [i for i in ids if i != ids[drop]]
        assert ed.n_batches == len(p.batches) - 1


def check_multiset(p, dtype, cls=RLSEditor):
    """Batch 0 applied twice is retracted twice (equal to batch_solve on the others), a third time refused."""
    ed = editor_for(p, dtype, cls)
    order = [0, *range(1, len(p.batches)), 0]
    for i in order:
        ed.update(t(p.batches[i][0], dtype), t(p.batches[i][1], dtype))
    K, V = t(p.batches[0][0], dtype), t(p.batches[0][1], dtype)
    first, second = accepted(ed.retract, K, V), accepted(ed.retract, K, V)
    assert (first.batch_id, second.batch_id) == (len(order) - 1, 0)  # the latest entry goes first
    before = snapshot(ed)
    with pytest.raises(NotAppliedError, match="only as many times as it was applied"):
        ed.retract(K, V)
    assert_unchanged(ed, before)
    assert ed.n_batches == len(p.batches) - 1


def check_after_the_cast(cls=RLSEditor):
    """A float32 editor given a float64 batch records the float32 batch it used: that batch, the
    float64 one, and another float64 batch with the same float32 rounding all retract it."""
    rng = np.random.default_rng(7)
    K64 = torch.as_tensor(rng.standard_normal((3, 6)))
    V64 = torch.as_tensor(rng.standard_normal((3, 2)))
    K32, V32 = K64.float(), V64.float()
    nudged = K64.clone()
    nudged[0, 0] = torch.nextafter(nudged[0, 0], torch.tensor(np.inf, dtype=torch.float64))  # float64 ulp
    assert not torch.equal(nudged, K64) and torch.equal(nudged.float(), K32)
    for K, V in ((K32, V32), (K64, V64), (nudged, V64)):
        ed = cls(torch.zeros(6, 2, dtype=torch.float32), lam=1.0)
        ed.update(K64, V64)
        ed.update(rng.standard_normal((2, 6)), rng.standard_normal((2, 2)))
        accepted(ed.retract, K, V)
        assert ed.n_batches == 1


def check_signed_zeros(cls=RLSEditor):
    """-0.0 and +0.0 are the same number: a batch applied with +0.0 is retracted with -0.0."""
    rng = np.random.default_rng(8)
    K, V = torch.as_tensor(rng.standard_normal((2, 4))), torch.as_tensor(rng.standard_normal((2, 3)))
    K[0, 1], V[1, 2] = 0.0, 0.0
    ed = cls(torch.zeros(4, 3, dtype=torch.float64), lam=1.0)
    ed.update(K, V)
    flipped_K, flipped_V = K.clone(), V.clone()
    flipped_K[0, 1], flipped_V[1, 2] = -0.0, -0.0
    assert torch.signbit(flipped_K[0, 1]) and not torch.signbit(K[0, 1])
    accepted(ed.retract, flipped_K, flipped_V)
    assert ed.n_batches == 0


def check_round_trip(ed, path, retract):
    """After a save/load (and a state-dict round trip) the ledger is the same: the state dicts are
    equal, ``retract(back)`` (a valid retraction) is accepted on both and gives the same bits."""
    ed.save(path)
    for back in (type(ed).from_state_dict(ed.state_dict()), rlsedit.load_editor(path)):
        a, b = ed.state_dict(), back.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k], k
        assert back.applied_batches == ed.applied_batches
        copy = type(ed).from_state_dict(ed.state_dict())
        assert accepted(retract, back) == accepted(retract, copy)
        assert torch.equal(back.W, copy.W) and torch.equal(back.C, copy.C)


def fixture_batches():
    """The batches the format-1 fixture applied (tests/fixtures/README.md)."""
    rng = np.random.default_rng(16)
    W0 = rng.standard_normal((5, 2))
    return W0, [(rng.standard_normal((u, 5)), rng.standard_normal((u, 2))) for u in (2, 1, 3)]


def check_format1_file(path=FIXTURE):
    """A format-1 file loads; its batches are unrecorded, so retracting one is refused (state
    unchanged) unless asked with allow_unrecorded=True, which then equals batch_solve without it;
    batches applied after the restore are recorded; a re-save is format 2 and keeps the count."""
    W0, batches = fixture_batches()
    ed = rlsedit.load_editor(path, editor="rlsedit", W0=W0)
    assert (ed.n_batches, ed.unrecorded_batches, ed.applied_batches) == (3, 3, ())
    assert torch.allclose(ed.W, rlsedit.batch_solve(W0, *zip(*batches, strict=True), lam=0.5), atol=1e-12)
    before = snapshot(ed)
    with pytest.raises(NotAppliedError, match=r"3 batch.* applied before it had a ledger.*allow_unrecorded=True"):
        ed.retract(*batches[1])
    assert_unchanged(ed, before)
    with pytest.raises(NotAppliedError, match="cannot retract 5 rows as an unrecorded batch"):
        ed.retract(np.ones((5, 5)), np.ones((5, 2)), allow_unrecorded=True)  # 6 rows in 3 batches: at most 4
    assert_unchanged(ed, before)
    rec = ed.retract(*batches[1], allow_unrecorded=True)
    assert rec.batch_id is None and (ed.n_batches, ed.n_rows, ed.unrecorded_batches) == (2, 5, 2)
    W_ref = rlsedit.batch_solve(W0, [batches[0][0], batches[2][0]], [batches[0][1], batches[2][1]], lam=0.5)
    assert rel_err(ed.W, W_ref, W_ref) < 1e-12
    ed.refactorize()  # the information matrix came from the file and was downdated too
    assert rel_err(ed.W, W_ref, W_ref) < 1e-13
    new = ed.update(np.ones((1, 5)), np.ones((1, 2)))
    assert new.batch_id == 3  # ids start after the file's batches
    return ed, new, batches


# -- the properties, on RLSEditor ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@FEWER
@given(data=st.data())
def test_near_miss_batches_are_refused_with_the_state_unchanged(dtype, data):
    p = data.draw(problems(dtype, min_batches=2))
    j = data.draw(st.integers(0, len(p.batches) - 1))
    ed, _ = applied(p, dtype)
    K, V = t(p.batches[j][0], dtype), t(p.batches[j][1], dtype)
    seed = data.draw(st.integers(0, 2**16))
    check_near_misses_refused(ed, K, V, seed, "retract")
    check_near_misses_refused(ed, K, V, seed, "replace")


@pytest.mark.parametrize("dtype", DTYPES)
@FEWER
@given(data=st.data())
def test_a_valid_retraction_equals_the_batch_solution_without_that_batch(dtype, data):
    p = data.draw(problems(dtype, min_batches=2))
    drop = data.draw(st.integers(0, len(p.batches) - 1))
    rel_tol(dtype, retraction_kappa(p, drop))  # rejects the example where the tolerance would be vacuous
    check_valid_retraction(p, dtype, drop)


@pytest.mark.parametrize("dtype", DTYPES)
@FEWER
@given(data=st.data())
def test_a_batch_applied_twice_is_retracted_twice_and_no_more(dtype, data):
    p = data.draw(problems(dtype, min_batches=2, max_batches=4))
    K0 = p.batches[0][0]
    # the stream with batch 0 twice and without it: both must be well-posed for the comparison
    check_multiset(p, dtype)
    ed = editor_for(p, dtype)
    for i in [0, *range(1, len(p.batches)), 0]:
        ed.update(t(p.batches[i][0], dtype), t(p.batches[i][1], dtype))
    ed.retract(t(K0, dtype), t(p.batches[0][1], dtype))
    ed.retract(t(K0, dtype), t(p.batches[0][1], dtype))
    W_ref = oracle(p, range(1, len(p.batches)))
    # two retractions of batch 0; the second, from the stream p, is the worse conditioned
    kappa = 2 * retraction_kappa(p, 0)
    assert rel_err(ed.W, W_ref, path_scale(p, len(p.batches))) <= rel_tol(dtype, kappa)


def test_the_digest_is_of_the_batch_after_the_cast_to_the_editor_dtype():
    check_after_the_cast()


def test_signed_zeros_are_one_number():
    check_signed_zeros()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep_batches", [False, True])
def test_the_ledger_survives_checkpoints_and_state_dicts(tmp_path, dtype, keep_batches):
    rng = np.random.default_rng(11)
    W0 = torch.as_tensor(rng.standard_normal((6, 2))).to(dtype)
    ed = RLSEditor(W0, lam=0.7, keep_batches=keep_batches)
    batches = [(rng.standard_normal((u, 6)), rng.standard_normal((u, 2))) for u in (2, 3, 1, 2)]
    ids = [ed.update(K, V).batch_id for K, V in batches]
    ed.retract(*batches[1])
    ed.update(*batches[0])  # applied twice now
    assert [e.batch_id for e in ed.applied_batches] == [0, 2, 3, 4] and ids == [0, 1, 2, 3]
    ed.save(tmp_path / "e.safetensors")
    meta, _ = read_header(tmp_path / "e.safetensors")
    assert meta["format_version"] == "2"
    check_round_trip(ed, tmp_path / "c.safetensors", lambda e: e.retract(*batches[2]))
    if keep_batches:
        check_round_trip(ed, tmp_path / "d.safetensors", lambda e: e.retract_by_id(3))
    back = rlsedit.load_editor(tmp_path / "c.safetensors")
    check_near_misses_refused(back, t(batches[3][0], dtype), t(batches[3][1], dtype), seed=1)
    back.retract(*batches[0])
    back.retract(*batches[0])
    before = snapshot(back)
    with pytest.raises(NotAppliedError):
        back.retract(*batches[0])
    assert_unchanged(back, before)


def test_update_returns_ids_that_are_never_reused():
    rng = np.random.default_rng(2)
    ed = RLSEditor(np.zeros((4, 2)), lam=1.0, keep_batches=True)
    batches = [(rng.standard_normal((1, 4)), rng.standard_normal((1, 2))) for _ in range(4)]
    recs = [ed.update(K, V) for K, V in batches[:3]]
    assert [(r.batch, r.batch_id) for r in recs] == [(0, 0), (1, 1), (2, 2)]
    assert ed.retract_by_id(1).batch_id == 1
    rec = ed.update(*batches[3])
    assert (rec.batch, rec.batch_id) == (2, 3)  # the position is reused, the id is not
    removed, added = ed.replace_by_id(0, *batches[1])
    assert (removed.batch_id, added.batch_id) == (0, 4)
    assert [e.batch_id for e in ed.applied_batches] == [2, 3, 4]
    assert [e.rows for e in ed.applied_batches] == [1, 1, 1]
    K, V = ed.kept_batch(4)
    assert torch.equal(K, torch.as_tensor(batches[1][0])) and torch.equal(V, torch.as_tensor(batches[1][1]))
    K.add_(1.0)  # a copy: the kept batch is unchanged
    assert torch.equal(ed.kept_batch(4)[0], torch.as_tensor(batches[1][0]))
    assert ed.applied_batches[-1].digest == batch_digest(*ed.kept_batch(4))


def test_the_kept_batch_is_a_copy_of_the_callers_arrays():
    """A caller who reuses its buffer after update() changes neither the kept batch nor the digest."""
    K, V = torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
    ed = RLSEditor(np.zeros((3, 1)), lam=1.0, keep_batches=True)
    rec = ed.update(K, V)
    K.mul_(2.0)
    assert torch.equal(ed.kept_batch(rec.batch_id)[0], torch.ones(2, 3, dtype=torch.float64))
    ed.retract(torch.ones(2, 3, dtype=torch.float64), V)
    assert ed.n_batches == 0


def test_retraction_by_id_needs_kept_batches_and_a_live_id():
    ed = RLSEditor(np.zeros((3, 1)), lam=1.0)
    rec = ed.update(np.ones((1, 3)), np.ones((1, 1)))
    before = snapshot(ed)
    with pytest.raises(BatchNotKeptError, match="keep_batches=True"):
        ed.retract_by_id(rec.batch_id)
    with pytest.raises(BatchNotKeptError, match="does not keep its batches"):
        ed.replace_by_id(rec.batch_id, np.ones((1, 3)), np.zeros((1, 1)))
    with pytest.raises(BatchNotKeptError):
        ed.kept_batch(rec.batch_id)
    with pytest.raises(NotAppliedError, match=r"no applied batch has id 7: .*issued so far are 0 to 0"):
        ed.retract_by_id(7)
    for bad in ("0", 0.0, True, None):
        with pytest.raises(NotAppliedError, match="a batch id is an int"):
            ed.retract_by_id(bad)
    assert_unchanged(ed, before)
    with pytest.raises(rlsedit.ParameterError, match="keep_batches must be True or False"):
        RLSEditor(np.zeros((3, 1)), lam=1.0, keep_batches=1)
    with pytest.raises(rlsedit.ParameterError, match="allow_unrecorded must be True or False"):
        ed.retract(np.ones((1, 3)), np.ones((1, 1)), allow_unrecorded="yes")
    assert_unchanged(ed, before)


def test_replace_looks_the_old_batch_up_before_any_arithmetic():
    rng = np.random.default_rng(4)
    ed = RLSEditor(rng.standard_normal((5, 2)), lam=1.0, refactor_every=2, keep_batches=True)
    K, V = rng.standard_normal((2, 5)), rng.standard_normal((2, 2))
    ed.update(K, V)
    ed.update(rng.standard_normal((1, 5)), rng.standard_normal((1, 2)))
    before = snapshot(ed)
    with pytest.raises(NotAppliedError, match="exactly the K_old and V_old"):
        ed.replace(K, V + 1, K, V + 2)
    assert_unchanged(ed, before)
    with pytest.raises(NotAppliedError, match="no applied batch has id 5"):
        ed.replace_by_id(5, K, V)
    assert_unchanged(ed, before)
    removed, added = ed.replace(K, V, K, V + 2)
    assert (removed.batch_id, added.batch_id) == (0, 2)
    before = snapshot(ed)
    with pytest.raises(NotAppliedError):
        ed.replace(K, V, K, V + 2)  # the old batch is gone from the ledger
    assert_unchanged(ed, before)


def test_the_math_check_still_refuses_what_the_ledger_cannot_see():
    """rls_retract's check (I - K C K^T not positive definite) stays: on the pure function, for an
    unrecorded batch, and for a ledger entry whose state rounding has broken (here: C inflated)."""
    big = 10.0 * np.ones((1, 4))
    C, W = torch.eye(4, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(NotAppliedError, match="I - K C K\\^T is not positive definite"):
        rls_retract(C, W, torch.as_tensor(big), torch.ones(1, 1, dtype=torch.float64))
    ed, _, _ = check_format1_file()
    before = snapshot(ed)
    with pytest.raises(NotAppliedError, match="I - K C K\\^T is not positive definite"):
        ed.retract(10.0 * np.ones((1, 5)), np.ones((1, 2)), allow_unrecorded=True)
    assert_unchanged(ed, before)
    ed = RLSEditor(np.zeros((4, 1)), lam=1.0)
    ed.update(np.ones((1, 4)), np.ones((1, 1)))
    ed._C.mul_(1e3)
    before = snapshot(ed)
    with pytest.raises(NotAppliedError, match=r"the ledger holds this batch \(id 0\), but this state cannot give"):
        ed.retract(np.ones((1, 4)), np.ones((1, 1)))
    assert_unchanged(ed, before)


def test_the_issue_case_three_batches_then_four_fresh_keys():
    """The report: after 3 batches, 4 fresh keys scaled 0.1 were accepted and moved W by 3.4."""
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((16, 4))
    ed = RLSEditor(W0, lam=1.0)
    for _ in range(3):
        ed.update(rng.standard_normal((4, 16)), rng.standard_normal((4, 4)))
    fresh = (0.1 * rng.standard_normal((4, 16)), 10 * rng.standard_normal((4, 4)))
    before = snapshot(ed)
    with pytest.raises(NotAppliedError, match="cannot have been applied"):
        ed.retract(*fresh)
    assert_unchanged(ed, before)
    # the math check alone accepts it, and W moves: what the ledger is there for
    C, W = ed.C.clone(), ed.W.clone()
    rls_retract(C, W, torch.as_tensor(fresh[0]), torch.as_tensor(fresh[1]), inplace=True)
    assert float(torch.linalg.matrix_norm(W - ed.W)) > 1.0


def test_a_format1_file_loads_with_its_batches_unrecorded(tmp_path):
    ed, new, batches = check_format1_file()
    check_near_misses_refused(ed, torch.ones(1, 5, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64), 3)
    ed.save(tmp_path / "v2.safetensors")
    meta, _ = read_header(tmp_path / "v2.safetensors")
    assert meta["format_version"] == "2" and json.loads(meta["state"])["unrecorded_batches"] == 2
    back = RLSEditor.load(tmp_path / "v2.safetensors")
    assert back.unrecorded_batches == 2 and [e.batch_id for e in back.applied_batches] == [new.batch_id]
    assert back.retract(np.ones((1, 5)), np.ones((1, 2))).batch_id == new.batch_id
    back.retract(*batches[0], allow_unrecorded=True)
    back.retract(*batches[2], allow_unrecorded=True)
    assert (back.n_batches, back.n_rows, back.unrecorded_batches) == (0, 0, 0)
    with pytest.raises(NotAppliedError, match="ledger holds 0 applied batch"):
        back.retract(*batches[2], allow_unrecorded=True)  # nothing unrecorded is left: refused even when asked


def test_an_old_layout_written_now_loads_like_the_fixture(tmp_path):
    """The format-1 layout rebuilt from a current editor (ledger removed, versions 1): same outcome."""
    W0, batches = fixture_batches()
    ed = RLSEditor(W0, lam=0.5, refactor_every=2)
    for K, V in batches:
        ed.update(K, V)
    path = tmp_path / "old.safetensors"
    write_as_format1(ed, path)
    check_format1_file(path)
    old = RLSEditor.load(FIXTURE)
    assert torch.equal(old.W, RLSEditor.load(path).W) and torch.equal(old.C, RLSEditor.load(path).C)


def write_as_format1(ed, path):
    """``ed`` saved in the layout of checkpoint format 1 (what rlsedit wrote before the ledger)."""
    from safetensors.torch import save

    ed.save(path)
    meta, _ = read_header(path)
    tensors = {k: v for k, v in load_checkpoint(path).editor.state_dict().items()
               if isinstance(v, torch.Tensor) and not k.startswith(("ledger_", "kept_"))}
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    state = {k: v for k, v in json.loads(meta["state"]).items()
             if k not in ("keep_batches", "unrecorded_batches", "next_batch_id")}
    state["format_version"] = 1
    meta = dict(meta, format_version="1", state=json.dumps(state, sort_keys=True),
                tensors=json.dumps({k: [str(v.dtype).removeprefix("torch."), list(v.shape)]
                                    for k, v in sorted(tensors.items())}),
                strides=json.dumps({k: list(v.stride()) for k, v in tensors.items()}, sort_keys=True))
    meta["checksum"] = tensor_checksum(tensors, meta)
    path.write_bytes(save(tensors, metadata=meta))


def test_file_and_state_versions_must_agree(tmp_path):
    ed = RLSEditor(np.eye(3), lam=1.0)
    ed.update(np.ones((1, 3)), np.ones((1, 3)))
    path = tmp_path / "old.safetensors"
    write_as_format1(ed, path)
    from safetensors.torch import load_file, save

    meta, _ = read_header(path)
    tensors = load_file(path)
    forged = dict(meta, state=json.dumps(dict(json.loads(meta["state"]), format_version=2)))
    forged["checksum"] = tensor_checksum(tensors, forged)
    path.write_bytes(save(tensors, metadata=forged))
    with pytest.raises(rlsedit.CheckpointError, match="format version '1' holds a state of format version 1"):
        rlsedit.load_editor(path)
    forged = dict(meta, format_version="3")
    forged["checksum"] = tensor_checksum(tensors, forged)
    path.write_bytes(save(tensors, metadata=forged))
    with pytest.raises(rlsedit.CheckpointError, match="format version '3'; this rlsedit reads '1' and '2'"):
        rlsedit.load_editor(path)


def test_a_version1_state_dict_of_every_editor_still_loads():
    for name in sorted(rlsedit.EDITORS):
        ed = rlsedit.make_editor(name, np.eye(3), **BASELINE_OPTIONS.get(name, {"lam": 1.0}))
        ed.update(np.ones((1, 3)), np.ones((1, 3)))
        state = {k: v for k, v in ed.state_dict().items() if not k.startswith(("ledger_", "kept_"))
                 and k not in ("keep_batches", "unrecorded_batches", "next_batch_id")}
        state["format_version"] = 1
        back = rlsedit.editor_from_state_dict(state)
        assert torch.equal(back.W, ed.W)
        if name == "rlsedit":
            assert back.unrecorded_batches == 1 and back.applied_batches == ()


BASELINE_OPTIONS = {"ft": {"steps": 3}, "alphaedit": {"anchor_keys": np.eye(3), "threshold": 1e-6}}


def ledger_state():
    rng = np.random.default_rng(9)
    ed = RLSEditor(np.zeros((4, 2)), lam=1.0, keep_batches=True)
    for u in (2, 1, 3):
        ed.update(rng.standard_normal((u, 4)), rng.standard_normal((u, 2)))
    return ed.state_dict()


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.pop("ledger_ids"), r"misses the ledger entries \['ledger_ids'\]"),
    (lambda s: s.update(format_version=1), r"format version 1 has no ledger, but this state holds"),
    (lambda s: s.update(ledger_ids=torch.tensor([0, 2, 1])), "must increase strictly"),
    (lambda s: s.update(ledger_ids=torch.tensor([0, 1, 2], dtype=torch.int32)), "1-D torch.int64 tensor"),
    (lambda s: s.update(next_batch_id=2), "below next_batch_id = 2"),
    (lambda s: s.update(ledger_rows=torch.tensor([2, 1])), "has 2 entries"),
    (lambda s: s.update(ledger_rows=torch.tensor([2, 0, 3])), "fewer than 1 row"),
    (lambda s: s.update(ledger_rows=torch.tensor([2, 1, 4])), r"hold 7 rows .* state\['n_rows'\] = 6"),
    (lambda s: s.update(n_batches=4), "but state\\['n_batches'\\] is 4"),
    (lambda s: s.update(unrecorded_batches=1), "3 batches and 1 unrecorded ones"),
    (lambda s: s.update(ledger_digests=s["ledger_digests"][:, :16]), r"shape \(3, 32\)"),
    (lambda s: s.update(keep_batches="yes"), "keep_batches'\\] must be True or False"),
    (lambda s: s.update(keep_batches=False), r"keep_batches=False but holds \['kept_K', 'kept_V'\]"),
    (lambda s: s.pop("kept_V"), "kept_V'\\] must be a torch.float64 tensor of shape \\(6, 2\\)"),
    (lambda s: s["kept_K"].__setitem__((5, 0), 1.5), "id 2 .* does not have the digest"),
    (lambda s: s["ledger_digests"][0].bitwise_xor_(torch.tensor(1, dtype=torch.uint8)),
     "id 0 .* does not have the digest"),
    (lambda s: s.update(kept_K=torch.full((6, 4), float("nan"), dtype=torch.float64)), "non-finite"),
])
def test_a_damaged_ledger_is_refused_by_name(change, message):
    state = ledger_state()
    change(state)
    with pytest.raises(rlsedit.RLSEditError, match=message):
        RLSEditor.from_state_dict(state)


def test_updates_record_batch_ids_only_where_retraction_exists():
    for name in sorted(rlsedit.EDITORS):
        ed = rlsedit.make_editor(name, np.eye(3), **BASELINE_OPTIONS.get(name, {"lam": 1.0}))
        rec = ed.update(np.ones((1, 3)), np.ones((1, 3)))
        assert rec.batch_id == (0 if name == "rlsedit" else None)


# -- mutants: broken ledgers, each caught by the checks above -----------------------------------------
class NeverConsulted(RLSEditor):
    """The ledger is kept but never consulted: retraction trusts the math check (the old editor)."""

    def _look_up(self, K, V, allow_unrecorded, K_name="K", V_name="V"):
        return self._ledger.find(batch_digest(K, V)) or self._ledger.entries[-1]


def _raw_digest(K, V):
    K, V = torch.as_tensor(K), torch.as_tensor(V)
    return batch_digest(K, V.to(K.dtype))


class HashesBeforeTheCast(RLSEditor):
    """The digest is taken of the caller's arrays, before the cast to the editor's dtype."""

    def update(self, K, V):
        self._raw = (K, V)
        return super().update(K, V)

    def retract(self, K, V, *, allow_unrecorded=False):
        self._raw = (K, V)
        return super().retract(K, V, allow_unrecorded=allow_unrecorded)

    def _prepare_record(self, K, V):
        return PendingEntry(K.shape[0], _raw_digest(*self._raw), None)

    def _look_up(self, K, V, allow_unrecorded, K_name="K", V_name="V"):
        entry = self._ledger.find(_raw_digest(*self._raw))
        if entry is None:
            raise NotAppliedError("this batch cannot have been applied")
        return entry


class NotRestored(RLSEditor):
    """from_state_dict rebuilds everything but the ledger (a fresh, empty one)."""

    @classmethod
    def from_state_dict(cls, state):
        obj = super().from_state_dict(state)
        obj._ledger = Ledger()
        return obj


class ForgetsRetractions(RLSEditor):
    """A retracted batch's entry stays in the ledger."""

    def _retract(self, K, V, entry):
        kept = self._ledger.clone()
        record = super()._retract(K, V, entry)
        self._ledger = kept
        return record


class SetNotMultiset(RLSEditor):
    """A batch applied twice gets one entry."""

    def _commit_record(self, pending):
        if self._ledger.find(pending.digest) is not None:
            self._ledger.next_id += 1
            return self._ledger.next_id - 1
        return super()._commit_record(pending)


class ChecksAfterTheArithmetic(RLSEditor):
    """The ledger is consulted only after the inverse step has been written into C and W."""

    def retract(self, K, V, *, allow_unrecorded=False):
        K, V = self._batch(K, V)
        saved = (self._C.clone(), self._W.clone())
        rls_retract(self._C, self._W, K, V, inplace=True)
        entry = self._look_up(K, V, allow_unrecorded)  # a refusal here leaves C and W moved
        self._C.copy_(saved[0])
        self._W.copy_(saved[1])
        return self._retract(K, V, entry)


class TrustsUnrecorded(RLSEditor):
    """An editor from a format-1 file retracts unrecorded batches without being asked."""

    def _look_up(self, K, V, allow_unrecorded, K_name="K", V_name="V"):
        return super()._look_up(K, V, True, K_name, V_name)


def _fixed_problem(dtype, seed=3, n=3):
    rng = np.random.default_rng(seed)
    to = np.float32 if dtype == torch.float32 else np.float64
    W0 = rng.standard_normal((6, 2)).astype(to).astype(np.float64)
    batches = [(rng.standard_normal((2, 6)).astype(to).astype(np.float64),
                rng.standard_normal((2, 2)).astype(to).astype(np.float64)) for _ in range(n)]
    return Problem(W0, batches, lam=1.0, mu=0.0, K0=None, V0=None)


@contextlib.contextmanager
def digest_patched(fn):
    """A context in which the ledger (and the editor's lookup) hash with ``fn``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rlsedit.ledger.batch_digest", fn)
        mp.setattr("rlsedit.editor.batch_digest", fn)
        yield


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_checks_pass_on_the_editor_they_guard(tmp_path, dtype):
    """The fixed examples the mutants run on: RLSEditor passes every check there."""
    p = _fixed_problem(dtype)
    ed, _ = applied(p, dtype)
    check_near_misses_refused(ed, t(p.batches[1][0], dtype), t(p.batches[1][1], dtype), 0)
    check_near_misses_refused(ed, t(p.batches[1][0], dtype), t(p.batches[1][1], dtype), 0, "replace")
    check_valid_retraction(p, dtype, 1)
    check_multiset(p, dtype)
    check_after_the_cast()
    check_signed_zeros()
    ed, _ = applied(p, dtype)
    check_round_trip(ed, tmp_path / "c.safetensors", lambda e: e.retract(*p.batches[0]))
    check_format1_file()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_ledger_never_consulted_is_caught(dtype):
    p = _fixed_problem(dtype)
    for op in ("retract", "replace"):
        ed, _ = applied(p, dtype, NeverConsulted)
        with pytest.raises(CAUGHT):
            check_near_misses_refused(ed, t(p.batches[1][0], dtype), t(p.batches[1][1], dtype), 0, op)


def test_a_ledger_that_hashes_before_the_cast_is_caught():
    with pytest.raises(CAUGHT):
        check_after_the_cast(HashesBeforeTheCast)


def test_a_ledger_not_restored_from_checkpoints_is_caught(tmp_path, monkeypatch):
    p = _fixed_problem(torch.float64)
    ed, _ = applied(p, torch.float64, NotRestored)
    monkeypatch.setitem(rlsedit.EDITORS, "rlsedit", NotRestored)
    with pytest.raises(CAUGHT):
        check_round_trip(ed, tmp_path / "c.safetensors", lambda e: e.retract(*p.batches[0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_ledger_that_forgets_retractions_is_caught(dtype):
    with pytest.raises(CAUGHT):
        check_valid_retraction(_fixed_problem(dtype), dtype, 1, ForgetsRetractions)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_set_instead_of_a_multiset_is_caught(dtype):
    with pytest.raises(CAUGHT):
        check_multiset(_fixed_problem(dtype), dtype, SetNotMultiset)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_check_after_the_arithmetic_is_caught(dtype):
    p = _fixed_problem(dtype)
    ed, _ = applied(p, dtype, ChecksAfterTheArithmetic)
    with pytest.raises(CAUGHT):
        check_near_misses_refused(ed, t(p.batches[1][0], dtype), t(p.batches[1][1], dtype), 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_digest_of_the_keys_alone_is_caught(dtype):
    p = _fixed_problem(dtype)
    with digest_patched(lambda K, V: batch_digest(K, torch.zeros_like(V))):
        ed, _ = applied(p, dtype)
        with pytest.raises(CAUGHT):
            check_near_misses_refused(ed, t(p.batches[1][0], dtype), t(p.batches[1][1], dtype), 0)


def test_a_digest_of_the_signed_bytes_is_caught():
    def signed(K, V):  # the bytes as given: -0.0 and +0.0 differ
        import hashlib

        h = hashlib.sha256(K.contiguous().numpy().tobytes() + V.contiguous().numpy().tobytes())
        return "sha256:" + h.hexdigest()

    with digest_patched(signed), pytest.raises(CAUGHT):
        check_signed_zeros()


def test_an_editor_that_trusts_unrecorded_batches_is_caught(monkeypatch):
    monkeypatch.setitem(rlsedit.EDITORS, "rlsedit", TrustsUnrecorded)
    with pytest.raises(CAUGHT):
        check_format1_file()


# -- the documented cost ------------------------------------------------------------------------------
def test_the_cost_figures_in_solver_md_are_its_data_file():
    """docs/solver.md's ledger cost prose and memory figures, from docs/solver_data/ledger_cost.jsonl (the table
    itself is rebuilt by tests/docs/tables_solver.py)."""
    root = ROOT
    doc = " ".join((root / "docs" / "solver.md").read_text().split())  # prose wraps anywhere
    lines = [json.loads(x) for x in (root / "docs" / "solver_data" / "ledger_cost.jsonl").read_text().splitlines()]
    assert [r["dtype"] for r in lines] == ["float32", "float64"]
    for r in lines:
        assert (r["d_k"], r["d_v"], r["u"], r["threads"]) == (14336, 4096, 100, 1)
        assert f"{r['update']['min_s']} s and {r['update_without_ledger']['min_s']} s ({r['dtype']})" in doc
    f32 = lines[0]
    batch = f32["u"] * (f32["d_k"] + f32["d_v"]) * 4  # bytes kept per batch
    C = f32["d_k"] ** 2 * 4
    kept = 1000 * batch  # 100,000 edits in batches of 100
    assert f"keeps {kept / 2**30:.1f} GiB, {kept / C:.1f}x C itself ({C / 2**30:.2f} GiB)" in doc
    assert f"{batch / 2**20:.2f} MiB per batch of 100" in doc
