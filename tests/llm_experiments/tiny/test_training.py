"""Tiny models trained on a fact world: the schedule, training in quick mode, the cache by path."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm_experiments.tiny.training import (
    QUICK_TRAIN,
    QUICK_WORLD,
    WEIGHTS_FILE,
    CacheMismatchError,
    TrainConfig,
    TrainConfigError,
    load_tiny_model,
    lr_factor,
    probe_accuracy,
    train_or_load,
)


@given(st.integers(1, 3000), st.integers(0, 200), st.floats(0.0, 1.0))
def test_lr_schedule_warms_up_holds_then_decays_to_zero(total, warmup, constant_fraction):
    f = [lr_factor(s, total, warmup, constant_fraction) for s in range(total + 1)]
    assert all(0.0 <= x <= 1.0 for x in f)
    w = min(warmup, total)
    assert all(a < b for a, b in itertools.pairwise(f[:w]))  # strictly rising warm-up
    flat_end = max(warmup, round(constant_fraction * total))
    assert all(x == 1.0 for x in f[warmup:min(flat_end, total)])
    assert all(a >= b for a, b in zip(f[flat_end:], f[flat_end + 1:], strict=False))  # then never rising
    if flat_end < total:
        assert f[total] == 0.0


@pytest.mark.parametrize(("field", "value"), [
    ("arch", "gpt2"), ("hidden", 0), ("heads", 3), ("lr", 0.0), ("lr", float("nan")), ("weight_decay", -1.0),
    ("warmup_steps", -1), ("constant_fraction", 1.5), ("epochs", 0.0), ("seed", -2), ("d_ff", 2.5),
])
def test_bad_train_configs_are_refused_by_name(field, value):
    with pytest.raises(TrainConfigError, match=field):
        TrainConfig(**{field: value})


@pytest.fixture(scope="module")
def quick_llama(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick-llama")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model trains as fast on one thread, and never thrashes a shared CPU
    try:
        return train_or_load(QUICK_WORLD, QUICK_TRAIN, out, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_quick_training_learns_the_facts_and_records_them(quick_llama):
    meta = quick_llama.metadata
    assert not quick_llama.reused
    assert meta["accuracy"]["trained"] >= 0.8  # chance is 1/pool_size = 25% even knowing the relation
    assert meta["accuracy"] == {k: probe_accuracy(quick_llama.model, quick_llama.tokenizer,
                                                  quick_llama.world.probes(k))
                                for k in ("trained", "heldout", "question")}
    assert meta["world_config"] == QUICK_WORLD.to_dict() and meta["train_config"] == QUICK_TRAIN.to_dict()
    assert meta["steps"] == QUICK_TRAIN.steps_for(len(quick_llama.world.training_texts()))
    rows = [json.loads(line) for line in (quick_llama.path / "train_metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == meta["steps"] - 1 and rows[-1]["loss"] < rows[0]["loss"]


def test_a_matching_cache_is_reused_with_identical_weights(quick_llama):
    again = train_or_load(QUICK_WORLD, QUICK_TRAIN, quick_llama.path, progress=False)
    assert again.reused and again.metadata == quick_llama.metadata
    for (n1, p1), (n2, p2) in zip(quick_llama.model.state_dict().items(), again.model.state_dict().items(),
                                  strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert again.tokenizer.get_vocab() == quick_llama.tokenizer.get_vocab()


def test_a_mismatched_cache_is_refused_naming_the_difference(quick_llama):
    with pytest.raises(CacheMismatchError, match=r"train_config\.d_ff: cached 128, requested 64"):
        train_or_load(QUICK_WORLD, replace(QUICK_TRAIN, d_ff=64), quick_llama.path, progress=False)
    with pytest.raises(CacheMismatchError, match=r"world_config\.seed"):
        train_or_load(replace(QUICK_WORLD, seed=1), QUICK_TRAIN, quick_llama.path, progress=False)


def test_a_directory_that_is_not_a_cache_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CacheMismatchError, match="not empty"):
        train_or_load(QUICK_WORLD, QUICK_TRAIN, tmp_path, progress=False)
    with pytest.raises(CacheMismatchError, match="holds no tiny model"):
        load_tiny_model(tmp_path)


def test_changed_weights_are_detected(quick_llama, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(quick_llama.path, copy)
    with open(copy / WEIGHTS_FILE, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(CacheMismatchError, match="sha256"):
        load_tiny_model(copy)


def test_quick_qwen2_trains_and_the_cli_reuses_it(tmp_path, capsys):
    from rlsedit_cli import main

    out = tmp_path / "qwen2"
    assert main(["train-tiny", "--arch", "qwen2", "--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("trained qwen2")
    meta = json.loads((out / "tiny_model.json").read_text())
    assert meta["train_config"]["arch"] == "qwen2" and meta["accuracy"]["trained"] >= 0.8
    assert main(["train-tiny", "--arch", "qwen2", "--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    assert capsys.readouterr().out.startswith("reused qwen2")
    with pytest.raises(SystemExit, match="arch"):
        main(["train-tiny", "--arch", "llama", "--quick", "--out", str(out), "--no-progress", "--threads", "1"])


def test_a_cache_from_another_world_version_is_refused(quick_llama, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(quick_llama.path, copy)
    meta = json.loads((copy / "tiny_model.json").read_text())
    meta["world_version"] = -1
    (copy / "tiny_model.json").write_text(json.dumps(meta))
    with pytest.raises(CacheMismatchError, match="world_version"):
        load_tiny_model(copy)
    with pytest.raises(CacheMismatchError, match="world_version: cached -1"):
        train_or_load(QUICK_WORLD, QUICK_TRAIN, copy, progress=False)
