"""Loaders on fixture files in the real formats; every bad record is named with its field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from llm_experiments.data.loaders import (
    DataError,
    load_attribute_snippets,
    load_counterfact,
    load_tfidf,
    load_zsre,
)
from llm_experiments.data.requests import EditRequest
from tests.llm_fixtures import FIXTURES

CF = FIXTURES / "counterfact.json"
ZSRE = FIXTURES / "zsre_mend_eval.json"
SNIPPETS = FIXTURES / "attribute_snippets.json"


def test_counterfact_records_become_requests():
    raw = json.loads(CF.read_text())
    reqs = load_counterfact(CF, snippets=SNIPPETS)
    assert [r.case_id for r in reqs] == [0, 1, 2]
    r = reqs[0]
    assert isinstance(r, EditRequest)
    assert r.full_prompt == "The mother tongue of Danielle Darrieux is"
    assert (r.target_new, r.target_true, r.relation_id) == (" English", " French", "P103")
    assert r.paraphrase_prompts == tuple(raw[0]["paraphrase_prompts"])
    assert r.neighborhood_pairs() == [(p, " French") for p in raw[0]["neighborhood_prompts"]]
    assert r.generation_prompts == tuple(raw[0]["generation_prompts"])
    assert r.extra["target_new_id"] == "Q1860"
    assert r.extra["attribute_prompts"] == tuple(raw[0]["attribute_prompts"])
    # the reference texts are the snippets about (relation, new target): P103 / Q1860
    snippets = json.loads(SNIPPETS.read_text())
    assert r.reference_texts == tuple(s["text"] for s in snippets[0]["samples"])
    assert load_counterfact(CF)[0].reference_texts == ()
    assert [x.case_id for x in load_counterfact(CF, limit=2)] == [0, 1]


def test_zsre_records_become_requests_as_memit_reads_them():
    reqs = load_zsre(ZSRE)
    r = reqs[0]
    assert r.case_id == 0
    assert r.prompt == "What university did {} attend?"
    assert r.full_prompt == "What university did Watts Humphrey attend?"
    assert r.target_new == " Illinois Institute of Technology"
    assert r.paraphrase_prompts == ("What university did Watts Humphrey take part in?",)
    assert r.neighborhood_pairs() == [("nq question: who played the lead in the film about the river?", " John Brown")]
    assert load_zsre(ZSRE, target="alt")[0].target_new == " University of Michigan"
    with pytest.raises(DataError, match="target must be"):
        load_zsre(ZSRE, target="pred")


def test_snippets_and_tfidf_files():
    snips = load_attribute_snippets(SNIPPETS)
    assert set(snips) == {("P103", "Q1860"), ("P19", "Q64"), ("P36", "Q2807")}
    assert snips[("P36", "Q2807")][1]["name"] == "Anna Smith"
    stats = load_tfidf(FIXTURES / "idf.npy", FIXTURES / "tfidf_vocab.json")
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [s["text"] for v in snips.values() for s in v]
    vec = TfidfVectorizer().fit(docs)
    assert stats.vocabulary == vec.vocabulary_
    np.testing.assert_allclose(stats.idf, vec.idf_)


def _mutate(path, tmp_path, index, edit):
    data = json.loads(path.read_text())
    edit(data[index])
    out = tmp_path / path.name
    out.write_text(json.dumps(data))
    return out


def _set(keys, value):
    def edit(rec):
        node = rec
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return edit


CF_BAD = [
    (("requested_rewrite",), KeyError, "field 'requested_rewrite.prompt' is missing"),
    (("requested_rewrite", "prompt"), "The mother tongue is", "must contain exactly one"),
    (("requested_rewrite", "subject"), "", "field 'requested_rewrite.subject' must be a non-empty string"),
    (("requested_rewrite", "target_new", "str"), 5, "field 'requested_rewrite.target_new.str'"),
    # target_true.id and relation_id are read only with snippets: tests/llm_experiments/data/test_formats.py
    (("paraphrase_prompts",), "one prompt", "field 'paraphrase_prompts' must be a list"),
    (("neighborhood_prompts",), ["ok", 3], "field 'neighborhood_prompts' must be a list"),
    (("generation_prompts",), [""], "field 'generation_prompts' must be a list of non-empty strings"),
    (("case_id",), 0, "field 'case_id' repeats record 0's id 0"),
]


@pytest.mark.parametrize(("keys", "value", "message"), CF_BAD)
def test_bad_counterfact_record_is_named(tmp_path, keys, value, message):
    bad = _mutate(CF, tmp_path, 1, _set(keys, value))
    case = "0" if keys == ("case_id",) else "1"
    with pytest.raises(DataError, match=rf"counterfact\.json: record 1 \(case_id {case}\): .*") as info:
        load_counterfact(bad)
    assert message in str(info.value)


ZSRE_BAD = [
    (("src",), KeyError, "field 'src' is missing"),
    (("answers",), [], "field 'answers' must hold at least one answer"),
    (("answers",), "German", "field 'answers' must be a list"),
    (("subject",), "Nobody Here", "'Nobody Here' does not occur in src"),
    (("loc_ans",), "", "field 'loc_ans' must be a non-empty string"),
    (("rephrase",), None, "field 'rephrase' must be a non-empty string"),
    (("src",), "Which {language} does Toko Yasuda speak?", "field 'src' contains a brace"),
]


@pytest.mark.parametrize(("keys", "value", "message"), ZSRE_BAD)
def test_bad_zsre_record_is_named(tmp_path, keys, value, message):
    bad = _mutate(ZSRE, tmp_path, 1, _set(keys, value))
    with pytest.raises(DataError, match=r"zsre_mend_eval\.json: record 1: ") as info:
        load_zsre(bad)
    assert message in str(info.value)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_counterfact(tmp_path / "missing.json")
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(DataError, match=r"a.json: not valid JSON"):
        load_zsre(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(DataError, match=r"b.json: expected a JSON list"):
        load_counterfact(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("[3]")
    with pytest.raises(DataError, match=r"c.json: record 0: expected a JSON object"):
        load_counterfact(tmp_path / "c.json")
    with pytest.raises(DataError, match="limit"):
        load_counterfact(CF, limit=-1)
    snips = json.loads(SNIPPETS.read_text())
    broken = copy.deepcopy(snips)
    broken[2]["samples"][1]["text"] = None
    (tmp_path / "s.json").write_text(json.dumps(broken))
    with pytest.raises(DataError, match=r"s.json: record 2: field 'samples\[1\].text' must be a string"):
        load_attribute_snippets(tmp_path / "s.json")
    vocab = json.loads((FIXTURES / "tfidf_vocab.json").read_text())
    vocab["zzz"] = 0  # column 0 twice
    (tmp_path / "v.json").write_text(json.dumps(vocab))
    with pytest.raises(DataError, match=r"v.json / idf.npy: vocabulary columns"):
        load_tfidf(FIXTURES / "idf.npy", tmp_path / "v.json")
