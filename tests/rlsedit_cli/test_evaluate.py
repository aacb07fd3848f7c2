"""``rlsedit evaluate`` on a tiny checkpoint saved here: files written, the same numbers as the API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_experiments.data.loaders import load_counterfact
from llm_experiments.evaluate.metrics import counterfact_metrics
from rlsedit_cli import main
from tests.llm_fixtures import FIXTURES, eval_model, eval_tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    tok = eval_tokenizer()
    eval_model("gpt2", tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_evaluate_writes_results_equal_to_the_api(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["evaluate", "--model", str(checkpoint), "--data", str(FIXTURES / "counterfact.json"),
            "--snippets", str(FIXTURES / "attribute_snippets.json"), "--idf", str(FIXTURES / "idf.npy"),
            "--vocab", str(FIXTURES / "tfidf_vocab.json"), "--generation", "--max-length", "10", "--limit", "2",
            "--heldout", str(FIXTURES / "heldout.txt"), "--glue", f"rte={FIXTURES / 'glue' / 'RTE' / 'dev.tsv'}",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 requests" in printed and "efficacy" in printed and "consistency" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["capability"]) == {"perplexity", "rte"}
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    model, tok = eval_model("gpt2"), eval_tokenizer()
    requests = load_counterfact(FIXTURES / "counterfact.json", limit=2)
    expected = counterfact_metrics(model, tok, requests)
    for rec, exp in zip(records, expected, strict=True):
        for key, value in exp.items():
            assert rec[key] == pytest.approx(value, rel=1e-5, abs=1e-7)
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["model"] == str(checkpoint) and config["evaluation"]["max_length"] == 10


@pytest.mark.parametrize(("extra", "message"), [
    ([], "nothing to evaluate"),
    (["--data", "x.json", "--generation"], "--generation needs"),
    (["--glue", "sst2"], "--glue takes TASK=PATH"),
    (["--data", "missing.json"], "no such file"),
    (["--heldout", "h.txt", "--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_evaluate_refuses_bad_options(checkpoint, tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        main(["evaluate", "--model", str(checkpoint), "--out", str(tmp_path / "o"), *extra])


def test_evaluate_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "rlsedit_cli", "evaluate", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for option in ("--model", "--tokenizer", "--dtype", "--device", "--dataset", "--data", "--limit",
                   "--zsre-target", "--snippets", "--idf", "--vocab", "--generation", "--max-length", "--top-k",
                   "--seed", "--batch-size", "--heldout", "--ppl-window", "--glue", "--glue-limit", "--out"):
        assert option in out
