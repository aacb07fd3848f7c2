"""Every genuine format loads (fixtures with invented records in each layout), for the suite that reads it.

Each check is a function of the loader (or of one of its parts), run on the real loader and on a
mutant that it must catch: a loader that still demands ``alt``, reads the wrong case ids, ignores
the locality answers, keeps the last alias, drops later rewrites, detects the format from the first
record only, or validates fields that nothing reads.
"""

from __future__ import annotations

import copy
import json

import pytest

from llm_experiments.data import loaders
from llm_experiments.data.loaders import (
    DataError,
    detect_format,
    load_attribute_snippets,
    load_benchmark,
    load_counterfact,
    load_zsre,
)
from tests.paths import FIXTURES

FORMATS = FIXTURES / "formats"


def fixture(name: str):
    """A fixture file: the data-format fixtures live in tests/fixtures/formats/, the others beside it."""
    return FORMATS / name if (FORMATS / name).exists() else FIXTURES / name


MEND_TRAIN = FORMATS / "zsre_mend_train.json"
MCF = FORMATS / "multi_counterfact.json"
EE_CF = FORMATS / "easyedit_counterfact.json"
EE_ZSRE = FORMATS / "easyedit_zsre.json"
MQUAKE = FORMATS / "mquake.json"
SNIPPETS = FIXTURES / "attribute_snippets.json"


def test_each_fixture_is_detected_as_its_format():
    expected = {"counterfact.json": "counterfact", "multi_counterfact.json": "counterfact",
                "zsre_mend_eval.json": "zsre", "zsre_mend_train.json": "zsre", "easyedit_counterfact.json": "easyedit",
                "easyedit_zsre.json": "easyedit", "mquake.json": "mquake"}
    for name, fmt in expected.items():
        assert detect_format(json.loads(fixture(name).read_text())) == fmt, name
        assert {r.extra["format"] for r in load_zsre(fixture(name))} == {fmt}


# -- MEND's ZsRE train split: "alt": "" where the ZsRE suite never reads alt ---------------------------
def check_mend_train(load):
    reqs = load(MEND_TRAIN)
    assert [r.case_id for r in reqs] == [0, 1, 2]
    assert [r.target_new for r in reqs] == [" Berlin", " English", " Spanish"]
    r = reqs[0]
    assert (r.prompt, r.subject) == ("Which city was {} born in?", "Anna Smith")
    assert r.paraphrase_prompts == ("In which city was Anna Smith born?",)
    assert r.neighborhood_pairs() == [("nq question: where is the capital city of the river?", " Paris")]
    assert reqs[1].extra["alt"] is None and reqs[2].extra["answers"] == ("Spanish", "Castilian")


def demands_alt(path, **kwargs):
    """The mutant: the loader before this fix, which required a non-empty alt whatever the target."""
    for i, raw in enumerate(json.loads(path.read_text())):
        if not (isinstance(raw.get("alt"), str) and raw["alt"].strip()):
            raise DataError(f"{path.name}: record {i}: field 'alt' must be a non-empty string, got {raw.get('alt')!r}")
    return load_zsre(path, **kwargs)


def test_mend_train_loads_for_the_zsre_suite_and_a_loader_demanding_alt_fails():
    check_mend_train(load_zsre)
    with pytest.raises(DataError, match="record 1: field 'alt'"):
        check_mend_train(demands_alt)


def test_mend_train_alt_is_required_where_it_is_read():
    for load in (lambda p: load_zsre(p, target="alt"), load_counterfact):
        with pytest.raises(DataError, match=r"zsre_mend_train\.json: record 1: field 'alt' must be a non-empty "):
            load(MEND_TRAIN)
    # the CounterFact suite reads alt as the new target and answers[0] as the answer it replaces
    eval_reqs = load_counterfact(FIXTURES / "zsre_mend_eval.json")
    assert (eval_reqs[0].target_new, eval_reqs[0].target_true) == (" University of Michigan",
                                                                   " Illinois Institute of Technology")
    with pytest.raises(DataError, match="only with target='alt'"):
        load_benchmark(MEND_TRAIN, suite="counterfact", target="answers")


# -- MultiCounterFact -----------------------------------------------------------------------------------
def check_multi_counterfact(load):
    reqs = load(MCF)
    assert [r.case_id for r in reqs] == [7, 19, 23]
    r = reqs[0]
    assert (r.full_prompt, r.target_new, r.target_true) == ("The mother tongue of Danielle Darrieux is",
                                                            " English", " French")
    assert r.neighborhood_pairs() == [("The mother tongue of Anna Smith is", " French"),
                                      ("The mother tongue of John Brown is", " French")]
    assert reqs[1].extra["attribute_prompts"] == () and len(reqs[2].generation_prompts) == 1
    texts = [s["text"] for s in load_attribute_snippets(SNIPPETS)[("P103", "Q1860")]]
    assert reqs[0].reference_texts == tuple(texts) and reqs[1].reference_texts == ()


def index_ids(path, **kwargs):
    """The mutant: record indices instead of the file's case ids."""
    import dataclasses

    return [dataclasses.replace(r, case_id=i) for i, r in enumerate(load_counterfact(path, **kwargs))]


def test_multi_counterfact_loads_and_index_ids_fail():
    check_multi_counterfact(lambda p: load_counterfact(p, snippets=SNIPPETS))
    with pytest.raises(AssertionError):
        check_multi_counterfact(lambda p: index_ids(p, snippets=SNIPPETS))


# -- EasyEdit's flat records ------------------------------------------------------------------------------
def check_easyedit_counterfact(load):
    reqs = load(EE_CF)
    assert [r.case_id for r in reqs] == [0, 1, 2]
    r = reqs[0]
    assert (r.prompt, r.subject, r.target_new, r.target_true) == ("The mother tongue of {} is", "Danielle Darrieux",
                                                                  " English", " French")
    assert r.paraphrase_prompts == ("Danielle Darrieux is a native speaker of",)
    assert r.neighborhood_pairs() == [("The mother tongue of Anna Smith is", " German")]
    assert reqs[2].paraphrase_prompts == ("Anna Smith has its capital city in", "The capital of Anna Smith is")
    assert reqs[2].neighborhood_pairs() == [("The capital city of John Brown is", " London"),
                                            ("The capital city of Toko Yasuda is", " Madrid")]


def keep_target_true(path, **kwargs):
    """The mutant: CounterFact's convention (neighbours keep target_true) instead of locality_ground_truth."""
    import dataclasses

    return [dataclasses.replace(r, neighborhood_targets=()) for r in load_counterfact(path, **kwargs)]


def test_easyedit_counterfact_loads_and_ignoring_its_locality_answers_fails():
    check_easyedit_counterfact(load_counterfact)
    check_easyedit_counterfact(load_zsre)  # the same requests; ground_truth is kept when well formed
    with pytest.raises(AssertionError):
        check_easyedit_counterfact(keep_target_true)


def check_knowedit(load):
    reqs = load(EE_ZSRE)
    assert [r.case_id for r in reqs] == [0, 1, 2]
    r = reqs[0]
    assert (r.prompt, r.target_new, r.target_true) == ("Which language does {} speak?", " Spanish", " German")
    assert r.neighborhood_pairs() == [("The mother tongue of Toko Yasuda is", " German")]
    assert reqs[1].neighborhood_pairs() == [("John Brown speaks", " English"),
                                            ("The capital city of John Brown is", " London"),
                                            ("John Brown was born in the city of", " London")]
    # the flat variant: MEND's "rephrase" name, one locality prompt with its answer as a one-alias list
    assert reqs[2].paraphrase_prompts == ("Where was Danielle Darrieux born?",)
    assert reqs[2].neighborhood_pairs() == [("Anna Smith was born in", " Berlin")]


def test_knowedit_records_load_and_a_last_alias_reader_fails(monkeypatch):
    check_knowedit(load_counterfact)
    check_knowedit(load_zsre)

    def last_alias(node):
        while isinstance(node, list) and node:
            node = node[-1]
        return node if isinstance(node, str) and node.strip() else None

    monkeypatch.setattr(loaders, "_first_answer", last_alias)
    with pytest.raises(AssertionError):
        check_knowedit(load_zsre)


# -- MQuAKE ----------------------------------------------------------------------------------------------
def check_mquake(load):
    reqs = load(MQUAKE)
    assert [r.case_id for r in reqs] == ["1:0", "1:1", "2:0"]
    r = reqs[0]
    assert (r.full_prompt, r.target_new, r.target_true) == ("Anna Smith was born in", " Madrid", " Berlin")
    assert r.paraphrase_prompts == ("In which city was Anna Smith born?",) and r.neighborhood_prompts == ()
    assert reqs[1].subject == "Madrid" and reqs[1].extra["multi_hop"]["new_answer"] == "London"
    assert reqs[2].extra["multi_hop"]["questions"] == ("Which language was the mother tongue of Danielle Darrieux?",)
    texts = [s["text"] for s in load_attribute_snippets(SNIPPETS)[("P103", "Q1860")]]
    assert reqs[2].reference_texts == tuple(texts)


def first_rewrite_only(path, **kwargs):
    """The mutant: one request per MQuAKE case (its first rewrite), as a one-fact reader would make."""
    return [r for r in load_counterfact(path, **kwargs) if r.extra["rewrite"] == 0]


def test_mquake_gives_one_request_per_rewrite_and_a_first_rewrite_reader_fails():
    check_mquake(lambda p: load_counterfact(p, snippets=SNIPPETS))
    with pytest.raises(AssertionError):
        check_mquake(lambda p: first_rewrite_only(p, snippets=SNIPPETS))
    zsre = load_zsre(MQUAKE)
    assert [r.target_new for r in zsre] == [" Madrid", " London", " English"]


# -- detection ---------------------------------------------------------------------------------------------
def check_odd_record_is_named(tmp_path, detect):
    """A file of CounterFact records with one ZsRE record first: the odd record is the one refused."""
    records = [json.loads((FIXTURES / "zsre_mend_eval.json").read_text())[0],
               *json.loads((FIXTURES / "counterfact.json").read_text())]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(records))
    original = loaders.detect_format
    loaders.detect_format = detect
    try:
        with pytest.raises(DataError) as info:
            load_counterfact(path)
    finally:
        loaders.detect_format = original
    assert "mixed.json: record 0: field " in str(info.value), str(info.value)


def test_format_is_the_majority_layout_and_first_record_detection_fails(tmp_path):
    check_odd_record_is_named(tmp_path, detect_format)
    with pytest.raises(AssertionError):
        check_odd_record_is_named(tmp_path, lambda records, name="file": loaders.record_format(records[0]))
    (tmp_path / "x.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    with pytest.raises(DataError, match=r"x\.json: not a known benchmark format"):
        load_zsre(tmp_path / "x.json")
    with pytest.raises(DataError, match="format must be"):
        load_counterfact(MQUAKE, format="mcf")
    with pytest.raises(DataError, match=r"record 0 \(case_id 1\): field 'requested_rewrite.prompt' is missing"):
        load_counterfact(MQUAKE, format="counterfact")  # a named format is read as named
    with pytest.raises(DataError, match=r"relation_id and target_new\.id"):
        load_counterfact(EE_CF, snippets=SNIPPETS)
    with pytest.raises(DataError, match="one new target"):
        load_zsre(MCF, target="alt")


# -- refused only when read ------------------------------------------------------------------------------
DELETE = object()

# (file, suite, snippets?, path into record 1, value, message when refused or None when it loads)
CASES = [
    ("counterfact.json", "counterfact", False, ("requested_rewrite", "target_true", "id"), None, None),
    ("counterfact.json", "counterfact", False, ("requested_rewrite", "relation_id"), DELETE, None),
    ("counterfact.json", "counterfact", True, ("requested_rewrite", "relation_id"), DELETE,
     "field 'requested_rewrite.relation_id' is missing"),
    ("counterfact.json", "counterfact", True, ("requested_rewrite", "target_new", "id"), None,
     "field 'requested_rewrite.target_new.id' must be an integer or a string"),
    ("counterfact.json", "counterfact", False, ("attribute_prompts",), 5, None),
    ("counterfact.json", "zsre", False, ("generation_prompts",), [3], None),
    ("counterfact.json", "counterfact", False, ("generation_prompts",), [3], "field 'generation_prompts' must be"),
    ("counterfact.json", "zsre", False, ("requested_rewrite", "target_true", "str"), "",
     "field 'requested_rewrite.target_true.str' must be a non-empty string"),
    ("zsre_mend_eval.json", "zsre", False, ("alt",), None, None),
    ("zsre_mend_eval.json", "zsre", False, ("pred",), 5, None),
    ("zsre_mend_eval.json", "zsre", False, ("loc_ans",), "", "field 'loc_ans' must be a non-empty string"),
    ("zsre_mend_eval.json", "counterfact", False, ("answers",), [], "field 'answers' must hold at least one"),
    ("zsre_mend_eval.json", "counterfact", False, ("rephrase",), DELETE, "field 'rephrase' is missing"),
    ("easyedit_counterfact.json", "zsre", False, ("ground_truth",), DELETE, None),
    ("easyedit_counterfact.json", "counterfact", False, ("ground_truth",), DELETE, "field 'ground_truth' is missing"),
    ("easyedit_counterfact.json", "counterfact", False, ("ground_truth",), [], "field 'ground_truth' must be"),
    ("easyedit_counterfact.json", "counterfact", False, ("locality_ground_truth",), DELETE,
     "field 'locality_ground_truth' is missing"),
    ("easyedit_counterfact.json", "counterfact", False, ("subject",), "Nobody", "'Nobody' does not occur in prompt"),
    ("easyedit_counterfact.json", "zsre", False, ("rephrase_prompt",), [""], "field 'rephrase_prompt' must be"),
    ("easyedit_zsre.json", "zsre", False, ("ground_truth",), {"x": 1}, None),
    ("easyedit_zsre.json", "zsre", False, ("locality", "Forgetfulness", 0, "ground_truth"), [],
     "field 'locality.Forgetfulness[0].ground_truth' must be"),
    ("easyedit_zsre.json", "zsre", False, ("locality", "Relation_Specificity", 0, "ground_truth"), [["English"]],
     "must hold one answer for each of its 2 prompts"),
    ("mquake.json", "zsre", False, ("requested_rewrite", 0, "target_true"), DELETE, None),
    ("mquake.json", "zsre", False, ("questions",), 7, None),
    ("mquake.json", "counterfact", False, ("requested_rewrite", 0, "target_true", "str"), DELETE,
     "field 'requested_rewrite[0].target_true.str' is missing"),
    ("mquake.json", "zsre", False, ("requested_rewrite", 0, "question"), DELETE,
     "field 'requested_rewrite[0].question' is missing"),
    ("mquake.json", "counterfact", True, ("requested_rewrite", 0, "target_new", "id"), DELETE,
     "field 'requested_rewrite[0].target_new.id' is missing"),
    ("mquake.json", "zsre", False, ("requested_rewrite",), [], "field 'requested_rewrite' must be a non-empty list"),
]


def _damaged(tmp_path, name, keys, value):
    records = json.loads(fixture(name).read_text())
    node = records[1]
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = copy.deepcopy(value)
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def _load(path, suite, snippets):
    return load_benchmark(path, suite=suite, snippets=SNIPPETS if snippets else None)


def _case_id(case):
    name, suite, _, keys, _, message = case
    return f"{name}:{suite}:{'.'.join(map(str, keys))}:{'refused' if message else 'loads'}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_a_record_is_refused_only_for_a_field_that_is_read(tmp_path, case):
    name, suite, snippets, keys, value, message = case
    path = _damaged(tmp_path, name, keys, value)
    if message is None:
        assert len(_load(path, suite, snippets)) == len(_load(fixture(name), suite, snippets))
    else:
        with pytest.raises(DataError, match=rf"{name}: record 1\b") as info:
            _load(path, suite, snippets)
        assert message in str(info.value)


@pytest.fixture()
def over_readers(monkeypatch):
    """Mutant loaders that read too much: every well-formed field checked, the CounterFact suite's
    fields whatever the suite, the snippets' ids whether or not snippets are given."""
    def strict_peek(self, field, kind):
        return self.get(field, kind, optional=True)

    original = loaders._Reading

    def make(patch):
        def load(path, suite, snippets):
            with monkeypatch.context() as m:
                patch(m)
                return _load(path, suite, snippets)
        return load

    return {
        "strict": make(lambda m: m.setattr(loaders._Record, "peek", strict_peek)),
        "counterfact suite always": make(lambda m: m.setattr(
            loaders, "_Reading", lambda suite, target, snippets: original("counterfact", target, snippets))),
        "snippets always": make(lambda m: m.setattr(
            loaders, "_Reading", lambda suite, target, snippets: original(suite, target, snippets or {}))),
    }


def test_each_loading_case_is_refused_by_a_loader_that_reads_too_much(tmp_path, over_readers):
    """The 'loads' rows are evidence: a loader that validates what its suite does not read fails them."""
    for case in CASES:
        name, suite, snippets, keys, value, message = case
        if message is not None:
            continue
        path = _damaged(tmp_path, name, keys, value)
        caught = []
        for label, load in over_readers.items():
            try:
                load(path, suite, snippets)
            except DataError:
                caught.append(label)
        assert caught, _case_id(case)
