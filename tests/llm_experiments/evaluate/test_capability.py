"""General capability: perplexity against the model's own loss, GLUE files, scores against scikit-learn."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm_experiments.evaluate.capability import (
    GLUE_TASKS,
    CapabilityDataError,
    binary_scores,
    glue_zero_shot,
    load_glue,
    load_texts,
    perplexity,
)
from tests.llm_fixtures import FIXTURES, eval_model, eval_tokenizer

GLUE = FIXTURES / "glue"
FILES = {"sst2": GLUE / "SST-2" / "dev.tsv", "mrpc": GLUE / "MRPC" / "dev.tsv",
         "cola": GLUE / "CoLA" / "dev.tsv", "rte": GLUE / "RTE" / "dev.tsv"}


@pytest.fixture(scope="module")
def tok():
    return eval_tokenizer()


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tok):
    return eval_model(request.param, tok)


@torch.no_grad()
def test_perplexity_equals_the_models_own_loss(model, tok):
    texts = load_texts(FIXTURES / "heldout.txt")
    assert len(texts) == 3
    result = perplexity(model, tok, texts, max_length=6, batch_size=2)
    # oracle: the model's mean loss over every window, one window at a time, weighted by its tokens
    total, count = 0.0, 0
    for text in texts:
        ids = tok(text)["input_ids"]
        for i in range(0, len(ids), 6):
            window = ids[i : i + 6]
            if len(window) < 2:
                continue
            x = torch.tensor([window])
            total += model(input_ids=x, labels=x).loss.item() * (len(window) - 1)
            count += len(window) - 1
    assert result["tokens"] == count
    assert result["nll"] == pytest.approx(total / count, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_texts_from_jsonl_and_bad_files(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "Anna Smith speaks French ."}\n\n{"text": "Paris ."}\n')
    assert load_texts(tmp_path / "t.jsonl") == ["Anna Smith speaks French .", "Paris ."]
    (tmp_path / "u.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(CapabilityDataError, match=r"u.jsonl: line 2: needs a string field 'text'"):
        load_texts(tmp_path / "u.jsonl")
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(CapabilityDataError, match=r"e.txt: holds no text"):
        load_texts(tmp_path / "e.txt")


def test_glue_layouts_are_read():
    sst2 = load_glue("sst2", FILES["sst2"])
    assert [e.label for e in sst2] == [1, 0, 1, 0]
    assert sst2[0].texts == ("it is a charming and moving film .",)
    mrpc = load_glue("mrpc", FILES["mrpc"])  # header with a byte-order mark
    assert mrpc[1].texts == ("John Brown speaks English .", "John Brown was born in Madrid .")
    assert [e.label for e in mrpc] == [1, 0, 1, 0]
    cola = load_glue("cola", FILES["cola"])  # no header
    assert cola[1].texts == ("The sailors rode clear the of rocks boat .",) and cola[1].label == 0
    rte = load_glue("rte", FILES["rte"])
    assert [e.label for e in rte] == [0, 1, 0, 1]  # entailment is class 0
    assert len(load_glue("rte", FILES["rte"], limit=2)) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(CapabilityDataError, match="limit must be a positive integer"):
            load_glue("rte", FILES["rte"], limit=bad)


def test_bad_glue_files_are_named(tmp_path):
    with pytest.raises(CapabilityDataError, match="unknown GLUE task"):
        load_glue("qqp", FILES["sst2"])
    with pytest.raises(CapabilityDataError, match="line 1: expected the sst2 header"):
        load_glue("sst2", FILES["rte"])
    bad = tmp_path / "dev.tsv"
    bad.write_text("sentence\tlabel\ngood film .\t1\nbad film .\t2\n")
    with pytest.raises(CapabilityDataError, match=r"dev.tsv: line 3: column 2 \(label\) is '2'"):
        load_glue("sst2", bad)
    bad.write_text("gj04\t1\tThe sailors rode .\n")
    with pytest.raises(CapabilityDataError, match="line 1: 3 columns, the cola layout has 4"):
        load_glue("cola", bad)
    bad.write_text("index\tsentence1\tsentence2\n0\tA .\tB .\n")  # test.tsv: no label column
    with pytest.raises(CapabilityDataError, match=r"test.tsv files have no labels"):
        load_glue("rte", bad)


@pytest.mark.filterwarnings("ignore:A single label was found")
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=30), st.integers(0, 1))
def test_binary_scores_match_scikit_learn(pairs, positive):
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y, p = [a for a, _ in pairs], [b for _, b in pairs]
    s = binary_scores(y, p, positive)
    assert s["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert s["f1"] == pytest.approx(f1_score(y, p, pos_label=positive, labels=[0, 1], zero_division=0.0))
    assert s["mcc"] == pytest.approx(matthews_corrcoef(y, p), abs=1e-12)
    assert s["n"] == len(pairs)


@torch.no_grad()
@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_zero_shot_predicts_the_most_likely_label_word(tok, task):
    model = eval_model("llama", tok)
    examples = load_glue(task, FILES[task])
    result = glue_zero_shot(model, tok, task, examples, batch_size=3)
    spec = GLUE_TASKS[task]
    predictions = []
    for ex in examples:  # oracle: the label word's total log-likelihood, token by token
        prompt_ids = tok(spec.template.format(*ex.texts))["input_ids"]
        totals = []
        for word in spec.label_words:
            word_ids = tok(word, add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([prompt_ids + word_ids])).logits[0]
            logp = torch.log_softmax(logits.double(), dim=-1)
            totals.append(sum(logp[len(prompt_ids) + j - 1, t].item() for j, t in enumerate(word_ids)))
        predictions.append(max(range(len(totals)), key=totals.__getitem__))
    assert result == binary_scores([ex.label for ex in examples], predictions, spec.positive)
