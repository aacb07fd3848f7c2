"""The two protocols: results written as files, checkpoints equal to direct metric calls, bad calls refused."""

from __future__ import annotations

import json
import re

import pytest
import torch

from llm_experiments.data.loaders import load_counterfact, load_zsre
from llm_experiments.evaluate.metrics import counterfact_metrics, summarize, zsre_metrics
from llm_experiments.evaluate.protocols import (
    AlongStreamConfig,
    EvaluationConfig,
    EvaluationError,
    StreamRecorder,
    evaluate_after_stream,
    run_along_stream,
)
from tests.llm_fixtures import FIXTURES, eval_model, eval_tokenizer
from tests.paths import ROOT


@pytest.fixture(scope="module")
def tok():
    return eval_tokenizer()


@pytest.fixture()
def model(tok):
    return eval_model("llama", tok)


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_configs_are_validated_and_round_trip(tmp_path):
    with pytest.raises(EvaluationError, match="dataset must be one of"):
        EvaluationConfig(dataset="mquake")
    with pytest.raises(EvaluationError, match="batch_size must be a positive integer"):
        EvaluationConfig(batch_size=0)
    with pytest.raises(EvaluationError, match="CounterFact only"):
        EvaluationConfig(dataset="zsre", generation=True)
    with pytest.raises(EvaluationError, match="multiple of edit_batch_size"):
        AlongStreamConfig(edit_batch_size=100, checkpoint_every=150)
    with pytest.raises(EvaluationError, match="strictly increasing"):
        AlongStreamConfig(cohort_batches=(5, 1))
    with pytest.raises(EvaluationError, match="unknown option"):
        AlongStreamConfig.from_dict({"edit_batch_size": 10, "checkpoints": 3})
    stream = AlongStreamConfig(edit_batch_size=10, checkpoint_every=50, cohort_batches=(1, 5))
    (tmp_path / "s.json").write_text(json.dumps(stream.to_dict()))
    assert AlongStreamConfig.from_json(tmp_path / "s.json") == stream
    assert stream.cohort_sizes() == {"first_1_batches": 10, "first_5_batches": 50}


def test_after_stream_writes_config_metrics_records_and_summary(model, tok, tmp_path):
    requests = load_counterfact(FIXTURES / "counterfact.json")
    config = EvaluationConfig(batch_size=4)
    summary = evaluate_after_stream(model, tok, requests, config, tmp_path / "run", run_config={"editor": "none"})
    out = tmp_path / "run"
    assert json.loads((out / "config.json").read_text()) == {
        "protocol": "after_stream", "evaluation": config.to_dict(), "n_requests": 3, "run": {"editor": "none"}}
    records = lines(out / "records.jsonl")
    assert records == counterfact_metrics(model, tok, requests)  # the metric functions, called directly
    (line,) = lines(out / "metrics.jsonl")
    assert line["edited"] == summarize(records) == summary["edited"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["protocol"] == "after_stream" and summary["n_edits"] == 3
    with pytest.raises(EvaluationError, match="not empty"):
        evaluate_after_stream(model, tok, requests, config, out)


def test_checkpoints_equal_direct_calls_and_give_retention(model, tok, tmp_path):
    requests = load_zsre(FIXTURES / "zsre_mend_eval.json") * 2  # four requests, batches of one
    stream = AlongStreamConfig(edit_batch_size=1, checkpoint_every=2, cohort_batches=(1, 2))
    recorder = StreamRecorder(tmp_path, requests, EvaluationConfig(dataset="zsre"), stream,
                              capability={"norm": lambda m, t: {"lm_head": float(m.lm_head.weight.detach().norm())}})
    before = recorder.checkpoint(model, tok, 0)
    assert before["cohorts"]["first_2_batches"]["written"] is False and "edited" not in before
    snapshots = {}
    for n in (1, 3, 4):
        with torch.no_grad():  # a stand-in for an edit: any change of the weights
            model.lm_head.weight.mul_(1.5).add_(0.1)
        line = recorder.checkpoint(model, tok, n)
        direct = zsre_metrics(model, tok, requests[:n])
        assert line["edited"] == summarize(direct)
        assert line["cohorts"]["first_1_batches"] == {"size": 1, "written": True, "metrics": summarize(direct[:1])}
        assert ("first_2_batches" in line["cohorts"]) == (n >= 2)
        assert line["capability"]["norm"]["lm_head"] == pytest.approx(float(model.lm_head.weight.detach().norm()))
        snapshots[n] = line
    with pytest.raises(EvaluationError, match="checkpoints must move forward: n_edits 2 after 4"):
        recorder.checkpoint(model, tok, 2)
    with pytest.raises(EvaluationError, match=r"n_edits must be an integer in 0..4"):
        recorder.checkpoint(model, tok, 5)
    assert len(recorder.history) == 4  # the refused calls changed nothing
    summary = recorder.finish()
    assert summary["checkpoints"] == [0, 1, 3, 4]
    ret = summary["retention"]["first_2_batches"]
    assert (ret["written_by_checkpoint"], ret["final_checkpoint"]) == (3, 4)
    eff = ret["metrics"]["efficacy"]
    assert eff["before"] == before["cohorts"]["first_2_batches"]["metrics"]["efficacy"]["mean"]
    assert eff["at_write"] == snapshots[3]["cohorts"]["first_2_batches"]["metrics"]["efficacy"]["mean"]
    assert eff["final"] == snapshots[4]["cohorts"]["first_2_batches"]["metrics"]["efficacy"]["mean"]
    assert lines(tmp_path / "metrics.jsonl") == recorder.history
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_edited_every_k_th_samples_the_edits_so_far_and_keeps_cohorts_whole(model, tok, tmp_path):
    requests = load_zsre(FIXTURES / "zsre_mend_eval.json") * 4  # eight requests, batches of one
    stream = AlongStreamConfig(edit_batch_size=1, checkpoint_every=1, cohort_batches=(3,), edited_every=3)
    recorder = StreamRecorder(tmp_path, requests, EvaluationConfig(dataset="zsre"), stream)
    for n in (0, 2, 3, 8):
        with torch.no_grad():
            model.lm_head.weight.mul_(1.3).add_(0.05)
        line = recorder.checkpoint(model, tok, n)
        direct = zsre_metrics(model, tok, requests)
        if n:
            assert line["edited"] == summarize(direct[0:n:3])
            assert line["edited"]["efficacy"]["n"] == len(range(0, n, 3))
        if n != 2:  # the cohort appears before any edit and once complete
            assert line["cohorts"]["first_3_batches"]["metrics"] == summarize(direct[:3])
        else:
            assert line["cohorts"] == {}
    with pytest.raises(EvaluationError, match="edited_every must be a positive integer"):
        AlongStreamConfig(edited_every=0)


def test_run_along_stream_calls_the_editor_batch_by_batch(model, tok, tmp_path):
    requests = load_zsre(FIXTURES / "zsre_mend_eval.json") * 3  # six requests
    seen = []
    summary = run_along_stream(model, tok, requests, lambda batch: seen.append([r.case_id for r in batch]),
                               EvaluationConfig(dataset="zsre"),
                               AlongStreamConfig(edit_batch_size=2, checkpoint_every=4, cohort_batches=(1,)),
                               tmp_path / "run", evaluate_before=False)
    assert seen == [[0, 1], [0, 1], [0, 1]]
    # after the first cohort (2), every 4 edits (4) and at the end (6)
    assert summary["checkpoints"] == [2, 4, 6]
    # nothing was edited: the cohort keeps exactly what it had
    assert summary["retention"]["first_1_batches"]["metrics"]["efficacy"]["final"] == \
        summary["retention"]["first_1_batches"]["metrics"]["efficacy"]["at_write"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["protocol"] == "along_stream"


def test_the_documented_example_runs(monkeypatch, capsys):
    """Every ```python block of docs/evaluation.md runs as written, from the repository root."""
    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "evaluation.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/evaluation.md", "exec"), namespace)
    summary = namespace["summary"]
    assert summary["checkpoints"] == [0, 1, 3]
    # the hand-written RLS edits make every new target win on its edit prompt
    assert summary["final"]["edited"]["efficacy"]["mean"] == 1.0
    assert set(summary["final"]["edited"]) >= {"efficacy", "generalization", "specificity", "fluency",
                                               "consistency"}
    assert namespace["zsre_summary"]["checkpoints"] == [0, 1, 2]
