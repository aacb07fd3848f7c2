"""Bad input, everywhere: hypothesis throws malformed arrays, options, state dicts, files and command
lines at the public API. Every case either works (and leaves W finite) or raises a named
``rlsedit.RLSEditError`` with the editor's state exactly as before; nothing else escapes."""

from __future__ import annotations

import contextlib
import io
import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rlsedit
from rlsedit_cli import main as cli_main
from tests.strategies import assert_unchanged, snapshot

D_K, D_V = 5, 2
SPECIAL = [np.nan, np.inf, -np.inf, 1e38, -1e38, 1e300, 1e-320, -0.0, 0.0]
DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "bool", "complex128", "object"]
FILES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
FEWER = settings(max_examples=30)  # one property per editor: 30 each keeps the file fast on two cores


@st.composite
def arrays(draw, rows=(0, 1, 2, 3), cols=(D_K, D_V)):
    """Mostly plausible arrays, often wrong: ndim, sizes, dtype, container and special values."""
    ndim = draw(st.sampled_from([2, 2, 2, 2, 1, 0, 3]))
    shape = tuple(draw(st.sampled_from(rows)) if i == 0 else draw(st.sampled_from([*cols, 0, 1, D_K + 1]))
                  for i in range(ndim))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([1.0, 1.0, 1e-30, 1e20, 1e200]))
    a = np.random.default_rng(seed).standard_normal(shape) * scale
    if a.size and draw(st.booleans()):
        flat = a.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(SPECIAL))
    dtype = draw(st.sampled_from(DTYPES))
    container = draw(st.sampled_from(["numpy", "torch", "list"]))
    if dtype == "object":
        return a.astype(object)
    if dtype == "bfloat16":
        return torch.as_tensor(a).to(torch.bfloat16)
    with np.errstate(all="ignore"):
        a = a.astype(dtype)
    if container == "torch" and dtype != "complex128":
        return torch.as_tensor(a)
    return a.tolist() if container == "list" else a


def fresh(name, dtype=torch.float64):
    rng = np.random.default_rng(0)
    W0 = torch.as_tensor(rng.standard_normal((D_K, D_V))).to(dtype)
    K0 = torch.as_tensor(rng.standard_normal((8, D_K))).to(dtype)
    kwargs = {"ft": {"steps": 3}, "alphaedit": {"anchor_keys": K0[:2], "threshold": 1e-6},
              "rlsedit": {"lam": 0.1, "mu": 1.0, "anchor_keys": K0, "refactor_every": 2}}.get(
        name, {"lam": 0.1, "mu": 1.0, "anchor_keys": K0})
    ed = rlsedit.make_editor(name, W0, **kwargs)
    ed.update(rng.standard_normal((2, D_K)), rng.standard_normal((2, D_V)))
    return ed


def assert_takes_an_edit(ed):
    """A working editor takes a plain edit, or refuses it by name with its state unchanged."""
    before = snapshot(ed)
    try:
        ed.update(np.ones((1, ed.d_k)), np.ones((1, ed.d_v)))
    except rlsedit.RLSEditError:
        assert_unchanged(ed, before)
    assert_finite(ed)


def assert_finite(ed):
    for k, v in ed.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert bool(torch.isfinite(v).all()), f"non-finite {k}"


# -- the solver API -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
@FEWER
@given(K=arrays(cols=(D_K,)), V=arrays(cols=(D_V,)), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_fuzzed_batches_end_in_a_named_error_or_a_finite_state(name, dtype, K, V):
    ed = fresh(name, dtype)
    before = snapshot(ed)
    try:
        ed.update(K, V)
    except rlsedit.RLSEditError:
        assert_unchanged(ed, before)
    else:
        assert_finite(ed)


@given(K=arrays(cols=(D_K,)), V=arrays(cols=(D_V,)), K2=arrays(cols=(D_K,)), V2=arrays(cols=(D_V,)),
       op=st.sampled_from(["retract", "replace"]))
def test_fuzzed_retract_and_replace_end_in_a_named_error_or_a_finite_state(K, V, K2, V2, op):
    ed = fresh("rlsedit")
    before = snapshot(ed)
    try:
        if op == "retract":
            ed.retract(K, V)
        else:
            ed.replace(K, V, K2, V2)
    except rlsedit.RLSEditError:
        assert_unchanged(ed, before)
    else:
        assert_finite(ed)


WEIGHTS = [-1.0, 0.0, 1e-3, 1.0, 1e30, 1e308, np.nan, np.inf, "1", None, True, np.float32(0.5),
           torch.tensor(2.0), torch.ones(2), np.ones((1,))]


@st.composite
def grams(draw):
    kind = draw(st.sampled_from(["none", "psd", "asym", "indefinite", "nan", "huge", "array"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.standard_normal((D_K + 2, D_K))
    return {
        "none": None, "psd": X.T @ X, "asym": X.T @ X + np.triu(np.ones((D_K, D_K))),
        "indefinite": -(X.T @ X), "nan": np.full((D_K, D_K), np.nan), "huge": 1e300 * (X.T @ X),
    }.get(kind) if kind != "array" else draw(arrays(rows=(D_K, 3), cols=(D_K,)))


@given(W0=st.one_of(arrays(rows=(D_K, 0, 1), cols=(D_V,)), st.just(np.ones((D_K, D_V)))),
       lam=st.sampled_from(WEIGHTS), mu=st.sampled_from(WEIGHTS), gram=grams(),
       name=st.sampled_from(["rlsedit", "memit", "rome"]), every=st.sampled_from([None, 1, 0, "x"]))
def test_fuzzed_constructor_arguments(W0, lam, mu, gram, name, every):
    kwargs = {"lam": lam, "mu": mu, "anchor_gram": gram}
    if name == "rlsedit":
        kwargs["refactor_every"] = every
    try:
        ed = rlsedit.make_editor(name, W0, **kwargs)
    except rlsedit.RLSEditError:
        return
    assert_finite(ed)
    assert_takes_an_edit(ed)


@given(W0=arrays(rows=(D_K, 1), cols=(D_V,)), K=arrays(cols=(D_K,)), V=arrays(cols=(D_V,)),
       lam=st.sampled_from(WEIGHTS), gram=grams())
def test_fuzzed_batch_solve_and_objective(W0, K, V, lam, gram):
    try:
        W = rlsedit.batch_solve(W0, K, V, lam=lam, mu=1.0 if gram is not None else 0.0, anchor_gram=gram)
    except rlsedit.RLSEditError:
        return
    assert bool(torch.isfinite(W).all())
    J = rlsedit.objective(W, W0, K, V, lam=lam, mu=1.0 if gram is not None else 0.0, anchor_gram=gram)
    assert np.isfinite(J.total) or J.total == float("inf")  # J of finite data may overflow, never NaN


# -- state dicts ---------------------------------------------------------------------------------------
BAD_VALUES = [None, "x", -1, 0, 1.5, True, np.nan, [1.0], {"a": 1}, np.ones((D_K, D_K)),
              torch.ones(D_K, D_K, dtype=torch.float64), torch.ones(D_K, D_K), torch.ones(3, 3, dtype=torch.float64),
              torch.full((D_K, D_V), np.nan, dtype=torch.float64), torch.ones(D_K, D_V, dtype=torch.float64),
              torch.zeros(0, D_V, dtype=torch.float64), torch.ones(D_K, D_K, dtype=torch.int64)]


@given(name=st.sampled_from(sorted(rlsedit.EDITORS)), data=st.data())
def test_fuzzed_state_dicts_are_refused_with_a_named_error(name, data):
    state = fresh(name).state_dict()
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from([*sorted(state), "unexpected"]))
        if data.draw(st.booleans()) and key in state:
            del state[key]
        else:
            state[key] = data.draw(st.sampled_from(BAD_VALUES))
    try:
        ed = rlsedit.editor_from_state_dict(state)
    except rlsedit.RLSEditError:
        return
    assert_finite(ed)
    assert_takes_an_edit(ed)


@given(state=st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                       st.dictionaries(st.text(max_size=5), st.integers())))
def test_non_dict_states_are_refused(state):
    with pytest.raises(rlsedit.StateDictError):
        rlsedit.editor_from_state_dict(state)


# -- files -----------------------------------------------------------------------------------------------
@FILES
@given(blob=st.binary(max_size=300))
def test_random_bytes_are_never_a_checkpoint(tmp_path, blob):
    path = tmp_path / "x.safetensors"
    path.write_bytes(blob)
    with pytest.raises(rlsedit.CheckpointError):
        rlsedit.load_editor(path)


@FILES
@given(metadata=st.dictionaries(st.sampled_from(["format", "format_version", "editor", "state", "dtype",
                                                 "shape", "tensors", "strides", "checksum", "extra", "x"]),
                                st.one_of(st.text(max_size=8), st.just("rlsedit-checkpoint"), st.just("1"),
                                          st.integers()), max_size=11),
       pad=st.binary(max_size=16))
def test_forged_headers_are_refused(tmp_path, metadata, pad):
    header = json.dumps({"__metadata__": metadata}).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + pad)
    with pytest.raises(rlsedit.CheckpointError):
        rlsedit.load_editor(path)


def test_an_empty_file_and_a_missing_file_are_refused(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(rlsedit.CheckpointError, match="truncated"):
        rlsedit.load_editor(tmp_path / "empty")
    with pytest.raises(rlsedit.MissingCheckpointError, match="no checkpoint"):
        rlsedit.load_editor(tmp_path / "missing")


# -- the command line -------------------------------------------------------------------------------------
SIZES = ["-1", "0", "1", "2", "3", "x", "1e3", ""]
REALS = ["-1", "0", "0.1", "1", "nan", "inf", "-inf", "1e308", "x"]
OPTIONS = {
    "--editor": ["rlsedit", "memit", "alphaedit", "rome", "ft", "nope"],
    "--d-k": SIZES, "--d-v": SIZES, "--batches": SIZES, "--batch-size": SIZES, "--anchor-keys": SIZES,
    "--lam": REALS, "--mu": REALS, "--dtype": ["float32", "float64", "float16"], "--seed": ["0", "-5", "x"],
}


@FEWER
@given(data=st.data())
def test_fuzzed_demo_command_lines_end_cleanly(data):
    names = data.draw(st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=6))
    argv = ["demo"]
    for name in names:
        argv += [name, data.draw(st.sampled_from(OPTIONS[name]))]
    if data.draw(st.booleans()):
        argv.append(data.draw(st.sampled_from(["--bogus", "extra", "--d-k"])))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as exc:  # argparse (code 2, usage on stderr) or a size check (a message)
            assert exc.code == 2 or (isinstance(exc.code, str) and exc.code.startswith("rlsedit demo:")), exc.code
            return
    if code == 0:
        assert "nan" not in out.getvalue().lower().split("batches,")[-1]
    else:
        assert code == 2 and err.getvalue().startswith("rlsedit demo: error: "), err.getvalue()


@FILES
@given(blob=st.binary(max_size=64))
def test_the_stream_command_refuses_a_corrupt_checkpoint_in_one_line(tmp_path, blob, capsys):
    path = tmp_path / "s.safetensors"
    path.write_bytes(blob)
    threads = torch.get_num_threads()
    try:
        code = cli_main(["synthetic-stream", "--checkpoint", str(path), "--d-k", "4", "--d-v", "1", "--batches", "2"])
    finally:
        torch.set_num_threads(threads)
    assert code == 2
    assert capsys.readouterr().err.startswith("rlsedit synthetic-stream: error: CheckpointError: ")
