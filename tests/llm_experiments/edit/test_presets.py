"""Presets with the published settings, and the ``rlsedit llm-stats`` command on a tiny checkpoint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llm_experiments.edit.presets import preset
from llm_experiments.edit.session import EditingConfig
from tests.llm_fixtures import TINY_CORPUS, tiny_model, tiny_tokenizer


def test_presets_carry_the_published_settings():
    llama = preset("llama3-8b")
    assert llama.layers == (4, 5, 6, 7, 8) and llama.batch_size == 100 and llama.n_w == 15000
    assert dict(llama.editor_options) == {"lam": 0.0, "mu": 1.0} and llama.fact_token == "subject_last"
    assert (llama.values.steps, llama.values.lr, llama.values.clamp_factor) == (25, 0.1, 0.75)
    assert preset("qwen2.5-7b").layers == (7, 8, 9, 10, 11)
    assert dict(preset("llama3-8b", "alphaedit").editor_options) == {"l2": 10.0, "threshold": 2e-2}
    assert preset("llama3-8b", "memit", batch_size=10).batch_size == 10
    assert EditingConfig.from_dict(llama.to_dict()) == llama
    with pytest.raises(ValueError, match="rome"):
        preset("llama3-8b", "rome")
    with pytest.raises(ValueError, match="gpt-j"):
        preset("gpt-j")


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TINY_CORPUS) + "\n")
    return path, corpus


def test_llm_stats_computes_then_reuses_then_refuses(checkpoint, tmp_path, capsys):
    from rlsedit_cli import main

    path, corpus = checkpoint
    stats = tmp_path / "stats"
    args = ["llm-stats", "--model", str(path), "--layers", "0,2", "--cache-dir", str(stats),
            "--corpus", str(corpus), "--corpus-id", "tiny", "--max-tokens", "30", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count(" computed") == 2 and "   30 " in out
    assert main(args) == 0
    assert capsys.readouterr().out.count("cache (computed)") == 2
    # another token count is another statistic, kept beside the first (the cache is keyed by content)
    assert main([*args[:-3], "--max-tokens", "31", "--no-progress"]) == 0
    assert capsys.readouterr().out.count(" computed") == 2
    assert len(list(stats.glob("*.safetensors"))) == 4
    # a damaged cache file: one line naming the file and the option that fixes it, no traceback
    for f in stats.glob("*.safetensors"):
        f.write_bytes(b"damaged")
    with pytest.raises(SystemExit) as info:
        main(args)
    message = str(info.value)
    assert "\n" not in message and "--overwrite" in message and str(stats) in message
    assert main([*args, "--overwrite"]) == 0
    assert capsys.readouterr().out.count(" computed") == 2


def test_llm_stats_imports_a_memit_npz(checkpoint, tmp_path, capsys):
    from rlsedit_cli import main

    path, _ = checkpoint
    keys = np.random.default_rng(1).standard_normal((20, 32))
    npz = tmp_path / "layer1.npz"
    np.savez(npz, **{"mom2.mom2": keys.T @ keys, "mom2.count": np.array(20)})
    assert main(["llm-stats", "--model", str(path), "--layers", "1", "--cache-dir", str(tmp_path / "s"),
                 "--import-npz", str(npz), "--corpus-id", "theirs"]) == 0
    assert "memit-npz" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exactly one layer"):
        main(["llm-stats", "--model", str(path), "--layers", "1,2", "--cache-dir", str(tmp_path / "s"),
              "--import-npz", str(npz)])
    with pytest.raises(SystemExit, match="--corpus"):
        main(["llm-stats", "--model", str(path), "--layers", "1", "--cache-dir", str(tmp_path / "s")])


def test_llm_stats_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "rlsedit_cli", "llm-stats", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for option in ("--model", "--layers", "--cache-dir", "--corpus", "--corpus-id", "--max-tokens", "--seq-len",
                   "--batch-size", "--device", "--dtype", "--stats-dtype", "--import-npz", "--overwrite",
                   "--no-progress"):
        assert option in out


def test_llm_bench_writes_its_results(tmp_path):
    import json

    from rlsedit_cli import main

    assert main(["bench-llm-edit", "--out", str(tmp_path), "--hidden", "16", "--d-ff", "32", "--num-layers", "2",
                 "--layers", "0,1", "--edits", "4", "--batch-size", "2", "--stats-tokens", "200", "--steps", "2",
                 "--editor", "memit"]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["editing"]["editor"] == "memit"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_edits"] for r in rows] == [2, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["stats_tokens"] == 200


def test_llm_bench_real_architectures_have_the_published_shapes_and_settings():
    import argparse

    from llm_experiments.edit.presets import preset
    from rlsedit_cli.bench_llm_edit import _configs

    def args(**kw):
        base = dict(arch="llama3-8b", editor="rlsedit", layers=None, num_layers=None, batch_size=100, steps=1,
                    requests_per_pass=16, solver_dtype="float64", hidden=128, d_ff=1024, lam=None)
        return argparse.Namespace(**{**base, **kw})

    config, model = _configs(args(), vocab=215)
    assert (model.model_type, model.intermediate_size, model.hidden_size) == ("llama", 14336, 4096)
    assert (model.num_attention_heads, model.num_key_value_heads, model.vocab_size) == (32, 8, 128256)
    assert model.num_hidden_layers == 9 and config.layers == (4, 5, 6, 7, 8)  # cut after the last edited layer
    assert config == preset("llama3-8b").replace(values=config.values) and config.values.steps == 1
    assert _configs(args(lam=1e-2), vocab=215)[0].editor_options == {"lam": 1e-2, "mu": 1.0}
    assert _configs(args(arch="tiny", lam=0.5), vocab=215)[0].editor_options == {"lam": 0.5, "mu": 1.0}
    config, model = _configs(args(arch="qwen2.5-7b", editor="alphaedit", layers="7", num_layers=12), vocab=215)
    assert (model.model_type, model.intermediate_size, model.hidden_size, model.num_key_value_heads) == \
        ("qwen2", 18944, 3584, 4)
    assert model.num_hidden_layers == 12 and config.layers == (7,) and config.editor_options["threshold"] == 2e-2
    with pytest.raises(ValueError, match="no published setting"):
        _configs(args(editor="rome"), vocab=215)
    with pytest.raises(ValueError, match="--num-layers"):
        _configs(args(layers="4,8", num_layers=6), vocab=215)
    for arch in ("tiny", "llama3-8b"):
        with pytest.raises(ValueError, match=r"--layers must be comma-separated layer indices, got '4;5'"):
            _configs(args(arch=arch, layers="4;5"), vocab=215)
        with pytest.raises(ValueError, match=r"--layers must be >= 0, got '-1'"):
            _configs(args(arch=arch, layers="-1"), vocab=215)
    assert _configs(args(arch="tiny"), vocab=215)[0].layers == (1, 2)


@pytest.mark.parametrize("arch", ["llama3-8b", "qwen2.5-7b"])
def test_llm_bench_runs_a_real_architecture_scaled_down(arch, tmp_path, monkeypatch):
    import json

    import rlsedit_cli.bench_llm_edit as bench
    from rlsedit_cli import main

    small = {**bench.ARCHITECTURES[arch], "vocab_size": 300, "hidden_size": 32, "intermediate_size": 48,
             "num_attention_heads": 4, "num_key_value_heads": 2}
    monkeypatch.setitem(bench.ARCHITECTURES, arch, small)
    assert main(["bench-llm-edit", "--out", str(tmp_path), "--arch", arch, "--layers", "1,2", "--edits", "4",
                 "--batch-size", "2", "--stats-tokens", "300", "--steps", "1", "--solver-dtype", "float32"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["arch"], summary["num_layers"], summary["d_k"], summary["d_v"]) == (arch, 3, 48, 32)
    assert summary["peak_rss_bytes"] > 0 and summary["parameters"] > 300 * 32
    editing = json.loads((tmp_path / "config.json").read_text())["editing"]
    assert editing["n_w"] == 15000 and editing["solver_dtype"] == "float32"
    with pytest.raises(SystemExit, match="no published setting"):
        main(["bench-llm-edit", "--out", str(tmp_path / "x"), "--arch", arch, "--editor", "ft"])
