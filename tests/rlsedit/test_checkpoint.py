"""Durable state: exact save/load for every editor, atomic writes, refusal of bad checkpoints,
and crash/resume of a real subprocess killed with SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import rlsedit
from rlsedit.checkpoint import atomic_write, load_checkpoint, read_header, stale_temporaries
from rlsedit.errors import CheckpointError, MissingCheckpointError
from rlsedit.stream import GaussianStream, run_stream
from tests.paths import ROOT

D_K, D_V = 7, 3
TMP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25)


def editor_kwargs(name, K0, keep_W0=True):
    refactor = {"refactor_every": 2} if keep_W0 else {"keep_W0": False}  # the rebuild reads W0
    return {"ft": {"steps": 3, "keep_W0": keep_W0},
            "alphaedit": {"anchor_keys": K0[:3], "threshold": 1e-6, "keep_W0": keep_W0},
            "rlsedit": {"lam": 0.1, "mu": 1.0, "anchor_keys": K0, **refactor}}.get(
        name, {"lam": 0.1, "mu": 1.0, "anchor_keys": K0, "keep_W0": keep_W0})


def original_W0(dtype=torch.float64, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).standard_normal((D_K, D_V))).to(dtype)


def edited(name, dtype=torch.float64, seed=0, batches=3, keep_W0=True):
    rng = np.random.default_rng(seed)
    W0 = torch.as_tensor(rng.standard_normal((D_K, D_V))).to(dtype)
    K0 = torch.as_tensor(rng.standard_normal((10, D_K))).to(dtype)
    ed = rlsedit.make_editor(name, W0, **editor_kwargs(name, K0, keep_W0))
    for _ in range(batches):
        ed.update(rng.standard_normal((2, D_K)), rng.standard_normal((2, D_V)))
    return ed


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        if isinstance(v, torch.Tensor):
            assert v.dtype == sb[k].dtype and torch.equal(v, sb[k]), k
        else:
            assert v == sb[k], k


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
def test_save_load_is_exact_and_the_stream_continues_identically(tmp_path, name, dtype):
    ed = edited(name, dtype)
    path = tmp_path / "ed.safetensors"
    ed.save(path, extra={"note": "x"})
    back = type(ed).load(path, shape=(D_K, D_V), dtype=dtype, W0=ed.W0)
    assert type(back) is type(ed)
    assert_same_state(ed, back)
    K, V = np.ones((1, D_K)) / D_K, np.ones((1, D_V))
    ed.update(K, V)
    back.update(K, V)
    assert torch.equal(ed.W, back.W)  # same bits in, same arithmetic: same bits out
    assert load_checkpoint(path).extra == {"note": "x"}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(rlsedit.EDITORS))
def test_an_editor_without_W0_round_trips_exactly_and_is_checked_by_fingerprint(tmp_path, name, dtype):
    ed = edited(name, dtype, keep_W0=False)
    W0 = original_W0(dtype)
    path = tmp_path / "ed.safetensors"
    ed.save(path)
    assert "W0" not in load_file(path)
    meta, _ = read_header(path)
    assert json.loads(meta["state"])["W0_fingerprint"] == rlsedit.weight_fingerprint(W0) == ed.W0_fingerprint
    back = type(ed).load(path, shape=(D_K, D_V), dtype=dtype, W0=W0, device="cpu")
    assert type(back) is type(ed) and not back.keep_W0
    assert_same_state(ed, back)
    K, V = np.ones((1, D_K)) / D_K, np.ones((1, D_V))
    ed.update(K, V)
    back.update(K, V)
    assert torch.equal(ed.W, back.W)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"made from another W0 \(saved with keep_W0=False, its W0 fingerprint"):
        type(ed).load(path, W0=W0 + 1e-3)
    with pytest.raises(CheckpointError, match=r"W0 of shape \(7, 3\), expected \(7, 4\)"):
        type(ed).load(path, W0=torch.zeros(D_K, 4, dtype=dtype))
    assert path.read_bytes() == before  # a refused load leaves the file alone


def test_a_float64_W0_is_cast_before_its_fingerprint_is_compared(tmp_path):
    ed = edited("rlsedit", torch.float32, keep_W0=False)
    ed.save(tmp_path / "c.safetensors")
    W0 = original_W0(torch.float64)  # the layer as the caller holds it; the editor works in float32
    assert rlsedit.RLSEditor.load(tmp_path / "c.safetensors", W0=W0).W0_fingerprint == ed.W0_fingerprint


def test_metadata_records_versions_config_and_counts(tmp_path):
    ed = edited("rlsedit")
    ed.save(tmp_path / "c.safetensors")
    meta, _ = read_header(tmp_path / "c.safetensors")
    assert meta["rlsedit_version"] == rlsedit.__version__
    assert meta["editor"] == "rlsedit" and meta["dtype"] == "float64"
    assert json.loads(meta["shape"]) == [D_K, D_V]
    assert (int(meta["n_rows"]), int(meta["n_batches"])) == (6, 3)
    state = json.loads(meta["state"])
    assert state["lam"] == 0.1 and state["mu"] == 1.0 and state["refactor_every"] == 2
    assert meta["checksum"].startswith("sha256:")
    assert set(load_file(tmp_path / "c.safetensors")) == {"W0", "W", "C", "information_A", "information_B",
                                                          "ledger_ids", "ledger_rows", "ledger_digests"}
    assert meta["format_version"] == "2" and state["format_version"] == 2  # the ledger raised both
    assert (state["next_batch_id"], state["unrecorded_batches"], state["keep_batches"]) == (3, 0, False)
    assert "W0_fingerprint" not in state  # an editor that keeps W0 writes what it wrote before keep_W0


# -- refusal of bad checkpoints ----------------------------------------------------------------------
def test_mismatched_checkpoints_are_refused_saying_what_differs(tmp_path):
    ed = edited("rlsedit")
    path = tmp_path / "c.safetensors"
    ed.save(path)
    with pytest.raises(CheckpointError, match="holds a 'rlsedit' editor, expected 'memit'"):
        rlsedit.MEMITEditor.load(path)
    with pytest.raises(CheckpointError, match=r"shape \(d_k, d_v\) = \(7, 3\), expected \(8, 3\)"):
        rlsedit.RLSEditor.load(path, shape=(8, 3))
    with pytest.raises(CheckpointError, match="dtype float64, expected float32"):
        rlsedit.RLSEditor.load(path, dtype=torch.float32)
    with pytest.raises(CheckpointError, match="another W0"):
        rlsedit.RLSEditor.load(path, W0=ed.W0 + 1e-12)
    with pytest.raises(CheckpointError, match=r"W0 of shape \(7, 3\)"):
        rlsedit.RLSEditor.load(path, W0=torch.zeros(7, 4, dtype=torch.float64))
    with pytest.raises(MissingCheckpointError, match="no checkpoint at"):
        rlsedit.RLSEditor.load(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError):  # the built-in it also is
        rlsedit.RLSEditor.load(tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="not a file"):
        rlsedit.RLSEditor.load(tmp_path)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"W": torch.zeros(2, 2)}, tmp_path / "f.safetensors")
    with pytest.raises(CheckpointError, match="not an rlsedit checkpoint"):
        rlsedit.RLSEditor.load(tmp_path / "f.safetensors")


@TMP
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_a_truncated_checkpoint_is_refused(tmp_path, cut):
    path = tmp_path / "c.safetensors"
    edited("rlsedit").save(path)
    data = path.read_bytes()
    bad = tmp_path / "t.safetensors"
    bad.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(CheckpointError, match=r"truncated|shorter"):
        rlsedit.RLSEditor.load(bad)


@TMP
@given(where=st.floats(0.0, 1.0, exclude_max=True), flip=st.integers(1, 255))
def test_a_flipped_byte_is_refused_or_harmless(tmp_path, where, flip):
    """Any single corrupted byte: a CheckpointError, or (a changed JSON whitespace byte) the same state."""
    ed = edited("rlsedit")
    path = tmp_path / "c.safetensors"
    ed.save(path)
    data = bytearray(path.read_bytes())
    i = int(where * len(data))
    data[i] ^= flip
    path.write_bytes(bytes(data))
    try:
        back = rlsedit.RLSEditor.load(path)
    except CheckpointError:
        return
    assert_same_state(ed, back)


def test_a_corrupted_tensor_fails_the_checksum(tmp_path):
    path = tmp_path / "c.safetensors"
    edited("rlsedit").save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        rlsedit.RLSEditor.load(path)


def test_extra_must_be_json(tmp_path):
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        edited("memit").save(tmp_path / "c.safetensors", extra={"x": object()})
    assert not (tmp_path / "c.safetensors").exists()


# -- atomic writes -----------------------------------------------------------------------------------
def test_atomic_write_replaces_or_keeps_never_mixes(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, b"old contents")

    def failing(f):
        f.write(b"new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_bytes() == b"old contents"
    assert stale_temporaries(path) == []  # the temporary file was removed
    seen = []
    atomic_write(path, b"x" * 100, on_progress=lambda w, n: seen.append((w, n)))
    assert path.read_bytes() == b"x" * 100 and seen[-1] == (100, 100)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(MissingCheckpointError, match="does not exist"):
        atomic_write(tmp_path / "nowhere" / "f.bin", b"")


# -- the stream runner ---------------------------------------------------------------------------------
def test_run_stream_resumes_where_it_stopped_in_process(tmp_path):
    stream = GaussianStream(d_k=10, d_v=2, n_batches=7, batch_size=2, seed=3)

    def new():
        return rlsedit.RLSEditor(torch.zeros(10, 2, dtype=torch.float64), lam=1.0)

    seen = []
    full = run_stream(new, stream, tmp_path / "a.safetensors", every=3,
                      on_checkpoint=lambda pos, ed: seen.append((pos, ed.n_batches, ed.health().positive_definite)))
    assert (full.resumed_from, full.checkpoints_written) == (0, 3)  # after 3, 6 and 7
    assert seen == [(3, 3, True), (6, 6, True), (7, 7, True)]
    # a stopped run: only the first 4 batches, then resume on the full stream
    short = GaussianStream(d_k=10, d_v=2, n_batches=7, batch_size=2, seed=3)
    ck = tmp_path / "b.safetensors"
    part = run_stream(new, GaussianStream(10, 2, 4, 2, 3), ck, every=3)
    assert part.editor.n_batches == 4
    with pytest.raises(CheckpointError, match="belongs to stream"):
        run_stream(new, short, ck, every=3)  # n_batches differs: another stream
    ed = part.editor
    ed.save(ck, extra={"position": 4, "stream": short.describe()})
    resumed = run_stream(new, short, ck, every=3)
    assert resumed.resumed_from == 4
    assert torch.equal(resumed.editor.W, full.editor.W)
    with pytest.raises(MissingCheckpointError, match="does not exist"):
        run_stream(new, short, tmp_path / "no" / "c.safetensors", every=3)
    assert isinstance(rlsedit.Editor.load(ck), rlsedit.RLSEditor)  # the base class loads any editor
    with pytest.raises(rlsedit.ParameterError, match="every must be a positive int"):
        run_stream(new, short, ck, every=0)
    with pytest.raises(CheckpointError, match=re.escape("written with editor config None, not {'lam': 2.0}")):
        run_stream(new, short, ck, every=3, config={"lam": 2.0})


def test_run_stream_resumes_an_editor_without_W0_bit_for_bit(tmp_path):
    stream = GaussianStream(d_k=10, d_v=2, n_batches=7, batch_size=2, seed=4)
    W0 = torch.as_tensor(np.random.default_rng(1).standard_normal((10, 2)))

    def new():
        return rlsedit.RLSEditor(W0, lam=1.0, keep_W0=False)

    full = run_stream(new, stream, tmp_path / "a.safetensors", every=3)
    ck = tmp_path / "b.safetensors"
    part = run_stream(new, GaussianStream(10, 2, 4, 2, 4), ck, every=3)
    part.editor.save(ck, extra={"position": 4, "stream": stream.describe(), "config": None})
    resumed = run_stream(new, stream, ck, every=3)
    assert resumed.resumed_from == 4 and not resumed.editor.keep_W0
    assert torch.equal(resumed.editor.W, full.editor.W) and torch.equal(resumed.editor.C, full.editor.C)
    rlsedit.RLSEditor.load(ck, W0=W0)  # the final checkpoint still belongs to this layer


def child(ckpt: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tests.rlsedit.stream_child", str(ckpt), str(out), *extra],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def kill_when_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "READY", proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def reference_W(path: Path) -> torch.Tensor:
    """The uninterrupted run, in this process, with the child's thread count."""
    from tests.rlsedit.stream_child import STREAM, new_editor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_stream(new_editor, STREAM, path, every=10**9).editor.W
    finally:
        torch.set_num_threads(threads)


def test_sigkill_mid_stream_and_mid_checkpoint_write_then_resume_is_bitwise_identical(tmp_path):
    """A real subprocess is killed twice (SIGKILL): after batch 5 of 9 (checkpoints every 2), then,
    resumed, half way through writing its second checkpoint. The final W equals the uninterrupted
    run's bit for bit (float32, CPU, one thread)."""
    ck, out = tmp_path / "ck.safetensors", tmp_path / "W.safetensors"
    kill_when_ready(child(ck, out, "--kill-after-batch", "5"))  # 6 batches applied, 4 checkpointed
    assert load_checkpoint(ck).extra["position"] == 4
    assert stale_temporaries(ck) == []

    kill_when_ready(child(ck, out, "--pause-in-write", "2"))  # resumed at 4, wrote 6, killed writing 8
    (tmp,) = stale_temporaries(ck)  # the half-written temporary file is there ...
    assert 0 < tmp.stat().st_size < ck.stat().st_size
    assert load_checkpoint(ck).extra["position"] == 6  # ... and the checkpoint is the previous one

    summary = finish(child(ck, out))
    assert summary == {"resumed_from": 6, "written": 2, "stale_removed": 1}  # wrote 8 and 9
    assert stale_temporaries(ck) == []
    W = load_file(out)["W"]
    expected = reference_W(tmp_path / "reference.safetensors")
    assert W.dtype == expected.dtype == torch.float32
    assert torch.equal(W, expected)


def test_stream_command_resumes_from_its_checkpoint(tmp_path, capsys):
    from rlsedit_cli import main

    threads = torch.get_num_threads()
    ck = tmp_path / "s.safetensors"
    args = ["synthetic-stream", "--checkpoint", str(ck), "--every", "3", "--d-k", "12", "--d-v", "2",
            "--batch-size", "2", "--refactor-every", "4"]
    try:
        assert main([*args, "--batches", "5"]) == 0
        assert "started fresh; 5 batches" in capsys.readouterr().out
        short = load_checkpoint(ck)
        stream = GaussianStream(12, 2, 8, 2, 0)
        short.editor.save(ck, extra=dict(short.extra, position=5, stream=stream.describe()))  # killed at 5 of 8
        assert main([*args, "--batches", "8"]) == 0
        assert "resumed at batch 5; 8 batches" in capsys.readouterr().out
        resumed = rlsedit.RLSEditor.load(ck)
        assert main([*args, "--batches", "8", "--checkpoint", str(tmp_path / "u.safetensors")]) == 0
        assert torch.equal(resumed.W, rlsedit.RLSEditor.load(tmp_path / "u.safetensors").W)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(SystemExit, match="--every must be >= 1"):
        main([*args, "--every", "0"])
    assert main([*args, "--batches", "8", "--lam", "2"]) == 2  # another config: refused, one line
    assert "written with editor config" in capsys.readouterr().err
