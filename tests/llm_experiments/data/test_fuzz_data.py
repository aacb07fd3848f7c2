"""Bad input for the data loaders and the command line (hypothesis).

Valid CounterFact, ZsRE, attribute-snippet, TF-IDF and fact-world files are built here, then damaged:
a field deleted or replaced by a value of the wrong type (None, numbers, NaN, Inf, lists, dicts,
nested junk, empty or brace-laden strings, unicode), the top level replaced, the text truncated,
re-encoded or emptied, the file missing or a directory. Every load either succeeds with a
consistent result or raises the loader's documented error (``DataError``, ``WorldConfigError``),
whose message names the file and, for a bad record, the record and a field the damage touched.
No other exception escapes. The command-line cases check that bad files and bad numbers end in a
non-zero exit with one line naming the problem, before any model is built.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_experiments.data.loaders import DataError, load_attribute_snippets, load_counterfact, load_tfidf, load_zsre
from llm_experiments.data.requests import EditRequest, RequestError
from llm_experiments.data.tfidf import TfidfStats
from llm_experiments.data.world import World, WorldConfig, WorldConfigError, load_world, write_world
from rlsedit_cli import main as cli_main

# Scaled from the active profile (conftest.py): 40 and 20 examples by default, ten times that under
# HYPOTHESIS_PROFILE=thorough. tmp_path is shared by a test's examples: each writes a fresh folder.
_N = settings.default.max_examples
FILES = settings(max_examples=2 * _N // 3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=_N // 3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SUBJECTS = ("Danielle Darrieux", "Anna Smith", "Toko Yasuda")


# -- valid records ------------------------------------------------------------------------------------
def cf_record(i: int) -> dict:
    s = SUBJECTS[i]
    return {
        "case_id": 100 + i,
        "pararel_idx": 7,
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is", "subject": s, "relation_id": "P103",
            "target_new": {"str": "English", "id": "Q1860"}, "target_true": {"str": "French", "id": "Q150"},
        },
        "paraphrase_prompts": [f"{s} speaks", f"{s} , a native speaker of"],
        "neighborhood_prompts": ["The mother tongue of John Brown is"],
        "attribute_prompts": ["The mother tongue of Anna Smith is"],
        "generation_prompts": [f"{s}'s mother tongue is"],
    }


def zsre_record(i: int) -> dict:
    s = SUBJECTS[i]
    return {"subject": s, "src": f"What language does {s} speak?", "pred": "French", "answers": ["English"],
            "alt": "German", "rephrase": f"Which language is spoken by {s}?",
            "loc": "nq question: who wrote the river song", "loc_ans": "John Brown", "cond": "x"}


def snippet_record(i: int) -> dict:
    return {"relation_id": "P103", "target_id": f"Q{1860 + i}",
            "samples": [{"name": "John Brown", "text": "John Brown speaks English."},
                        {"name": "Anna Smith", "text": "Anna Smith writes in English."}]}


VOCAB = {"john": 0, "brown": 1, "speaks": 2, "english": 3, "anna": 4}
IDF = np.array([1.5, 1.2, 2.0, 1.1, 1.7])


# -- damage -----------------------------------------------------------------------------------------------
BRACES = ["", " ", "{}", "{} {}", "{x}", "{0}", "{", "}", "{}{", "The {} of {", "\u00e9\u4e2d\U0001f600 {}",
          "\ud800", "\x00", "nan"]
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, True, False]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, 1e308]))
LEAVES = st.one_of(st.none(), NUMBERS, st.text(max_size=6), st.sampled_from(BRACES))
JUNK = st.recursive(LEAVES, lambda c: st.one_of(st.lists(c, max_size=3),
                                                st.dictionaries(st.text(max_size=4), c, max_size=3)),
                    max_leaves=5)


def leaf_paths(node, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value, containers included."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out += leaf_paths(v, (*prefix, k))
    return out


def value_at(node, path):
    for k in path:
        node = node[k]
    return node


def dotted(path) -> str:
    """A path as the loaders name fields: ``requested_rewrite.target_new.str``, ``samples[1].text``."""
    text = ""
    for k in path:
        text += f"[{k}]" if isinstance(k, int) else (f".{k}" if text else k)
    return text


def related(named: str, touched: str) -> bool:
    """The field an error names lies on the damaged path (it, an ancestor, or a descendant)."""
    def within(a, b):
        return a == b or a.startswith(b + ".") or a.startswith(b + "[")
    return within(named, touched) or within(touched, named)


@st.composite
def damaged_record(draw, record: dict):
    """``record`` with 1-2 fields deleted or replaced by junk; returns (record, touched field names)."""
    rec = copy.deepcopy(record)
    touched = []
    for _ in range(draw(st.integers(1, 2))):
        paths = leaf_paths(rec)
        strings = [p for p in paths if isinstance(value_at(rec, p), str)]
        if not paths:
            break
        path = draw(st.sampled_from(strings if strings and draw(st.booleans()) else paths))
        parent = rec
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["delete", "junk", "edit"]))
        value = parent[path[-1]]
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "edit" and isinstance(value, str):
            parent[path[-1]] = draw(st.sampled_from(STRING_EDITS))(value)
        else:
            parent[path[-1]] = draw(JUNK)
        touched.append(dotted(path))
    return rec, touched


# Plausible strings gone wrong: no placeholder, a stray or a named brace, only spaces, other words.
STRING_EDITS = [lambda s: s.replace("{}", ""), lambda s: s + " {", lambda s: "{x} " + s, lambda s: s + "}",
                lambda s: s.replace("{}", "{0}"), lambda s: s + " {}", lambda s: " " * len(s), lambda s: "",
                lambda s: s.upper(), lambda s: s.replace(" ", "{} ", 1), lambda s: "\u00e9\U0001f600" + s,
                lambda s: s[::-1]]


FILE_MODES = ["top", "truncate", "latin1", "utf16", "bom", "bad_utf8", "empty", "deep", "missing", "directory"]


@st.composite
def damaged_text(draw, doc, mode: str):
    """A writer of ``doc`` as JSON, damaged by ``mode`` (one of FILE_MODES, or "none")."""
    if mode == "top":  # the right content under the wrong top-level type
        doc = draw(JUNK.filter(lambda x: type(x) is not type(doc)))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if mode == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif mode == "deep":
        text = "[" * 100_000 + "]" * 100_000
    data = {
        "latin1": lambda: text.encode("utf-8", "surrogatepass") + "caf\u00e9".encode("latin-1"),
        "utf16": lambda: text.encode("utf-16"),
        "bom": lambda: text.encode("utf-8-sig"),
        "bad_utf8": lambda: text.encode("utf-8", "surrogatepass") + b"\xff\xfe",
        "empty": lambda: b"",
    }.get(mode, lambda: text.encode("utf-8", "surrogatepass"))()

    def write(path: Path) -> None:
        if mode == "directory":
            path.mkdir()
        elif mode != "missing":
            path.write_bytes(data)

    return write


@st.composite
def damaged_files(draw, make, n=3):
    """A file of ``n`` valid records, damaged in one record or as a whole.

    Returns (write(path), index of the damaged record or None, the damaged fields, mode)."""
    records = [make(i) for i in range(n)]
    mode = draw(st.sampled_from(["record"] * 4 + ["nan_literal", *FILE_MODES]))
    index, touched = None, []
    if mode == "record":
        index = draw(st.integers(0, n - 1))
        records[index], touched = draw(damaged_record(records[index]))
    if mode == "nan_literal":  # bare NaN / Infinity where strings belong (Python's json reads them)
        index, before = 0, records[0]
        records[0] = json.loads(json.dumps(before).replace('"English"', "NaN", 1).replace(
            '"John Brown"', "Infinity", 1))
        touched = [dotted(p) for p in leaf_paths(before) if isinstance(value_at(records[0], p), float)]
    write = draw(damaged_text(records, mode if mode in FILE_MODES else "none"))
    return write, index, touched, mode


def fresh_path(tmp_path: Path, name: str) -> Path:
    """A path not used by an earlier example of the same test (tmp_path is shared by the examples)."""
    k = sum(1 for _ in tmp_path.iterdir())
    folder = tmp_path / f"case{k}"
    folder.mkdir()
    return folder / name


def assert_named(exc: DataError, path: Path, index, touched) -> None:
    """The message names the file, and for a damaged record its index and a damaged field."""
    msg = str(exc)
    assert "\n" not in msg, msg
    assert path.name in msg, msg
    if index is None or "record" not in msg:
        return
    record = re.search(r": record (\d+)", msg)
    if record and int(record.group(1)) != index:
        # a case_id that now repeats a later record's id is reported at the later record
        assert f"repeats record {index}'s id" in msg, msg
        return
    field = re.search(r"field '([^']+)'", msg)
    assert field, msg
    # ZsRE's subject must occur in src: damage to either may be reported at the other
    assert any(related(field.group(1), t) or {field.group(1), t} <= {"src", "subject"} for t in touched), \
        (msg, touched)


# -- CounterFact ------------------------------------------------------------------------------------------
LIMITS = st.sampled_from([None, None, None, 0, 2, 10, -1, True, 1.5, "2"])


@FILES
@given(case=damaged_files(cf_record), limit=LIMITS, with_snippets=st.booleans())
def test_damaged_counterfact_files_load_or_raise_a_named_data_error(tmp_path, case, limit, with_snippets):
    write, index, touched, mode = case
    path = fresh_path(tmp_path, "counterfact.json")
    write(path)
    snippets = {("P103", "Q1860"): ({"name": "a", "text": "reference"},)} if with_snippets else None
    try:
        reqs = load_counterfact(path, snippets=snippets, limit=limit)
    except DataError as exc:
        if str(exc).startswith("limit must be"):
            assert limit is not None
            return
        assert_named(exc, path, index, touched)
        return
    assert mode == "record"
    records = json.loads(path.read_text())
    assert len(reqs) == min(len(records), 10 if limit is None else limit)
    assert len({r.case_id for r in reqs}) == len(reqs)
    for r, raw in zip(reqs, records, strict=False):
        assert r.case_id == raw["case_id"] and isinstance(r.case_id, int | str) and not isinstance(r.case_id, bool)
        assert r.full_prompt == raw["requested_rewrite"]["prompt"].format(raw["requested_rewrite"]["subject"])
        assert r.target_new.startswith(" ") and r.target_new.strip()
        assert all(isinstance(p, str) and p.strip() for p in (*r.paraphrase_prompts, *r.neighborhood_prompts))
        assert len(r.neighborhood_pairs()) == len(r.neighborhood_prompts)  # a list may be empty


# -- ZsRE ------------------------------------------------------------------------------------------------
@FILES
@given(case=damaged_files(zsre_record), limit=LIMITS, target=st.sampled_from(["answers", "alt", "pred", None]))
def test_damaged_zsre_files_load_or_raise_a_named_data_error(tmp_path, case, limit, target):
    write, index, touched, mode = case
    path = fresh_path(tmp_path, "zsre_mend_eval.json")
    write(path)
    try:
        reqs = load_zsre(path, target=target, limit=limit)
    except DataError as exc:
        if str(exc).startswith(("limit must be", "target must be")):
            assert limit is not None or target not in ("answers", "alt")
            return
        assert_named(exc, path, index, touched)
        return
    assert mode == "record"
    records = json.loads(path.read_text())
    assert len(reqs) == min(len(records), 10 if limit is None else limit)
    for i, (r, raw) in enumerate(zip(reqs, records, strict=False)):
        assert r.case_id == i and r.full_prompt == raw["src"]
        new = raw["answers"][0] if target == "answers" else raw["alt"]
        assert r.target_new.strip() == new.strip() and r.target_new.startswith(" ")
        assert r.neighborhood_pairs() == [(raw["loc"] + "?", r.neighborhood_targets[0])]


# -- attribute snippets -------------------------------------------------------------------------------------
@FILES
@given(case=damaged_files(snippet_record))
def test_damaged_snippet_files_load_or_raise_a_named_data_error(tmp_path, case):
    write, index, touched, mode = case
    path = fresh_path(tmp_path, "attribute_snippets.json")
    write(path)
    try:
        snippets = load_attribute_snippets(path)
    except DataError as exc:
        assert_named(exc, path, index, touched)
        return
    assert mode == "record"
    records = json.loads(path.read_text())
    assert sum(len(v) for v in snippets.values()) == sum(len(r["samples"]) for r in records)
    for key, samples in snippets.items():
        assert all(isinstance(k, str) and k.strip() for k in key)
        assert all(isinstance(s["text"], str) and isinstance(s["name"], str) for s in samples)


def test_a_counterfact_file_with_damaged_snippets_names_the_snippet_file(tmp_path):
    good = tmp_path / "counterfact.json"
    good.write_text(json.dumps([cf_record(0)]))
    bad = tmp_path / "attribute_snippets.json"
    bad.write_text(json.dumps([{"relation_id": "P103", "target_id": "Q1860", "samples": [{"text": 3}]}]))
    with pytest.raises(DataError, match=r"attribute_snippets\.json: record 0: field 'samples\[0\]\.text'"):
        load_counterfact(good, snippets=bad)


# -- TF-IDF ------------------------------------------------------------------------------------------------
IDF_ARRAYS = st.sampled_from([
    IDF, IDF[:4], np.append(IDF, 1.0), IDF.reshape(1, 5), IDF[:1].reshape(()), np.array([]),
    np.where(np.arange(5) == 2, np.nan, IDF), np.where(np.arange(5) == 0, np.inf, IDF), -IDF, np.zeros(5),
    IDF.astype(np.float32), np.array([1, 2, 3, 4, 5]), np.ones(5, dtype=bool), IDF.astype(np.complex128),
    np.array(["a", "b", "c", "d", "e"]), np.zeros(5, dtype=[("a", "f8")]), np.full(5, 1e308), IDF.astype(np.float16),
])


@st.composite
def vocabularies(draw):
    vocab = dict(VOCAB)
    for _ in range(draw(st.integers(0, 2))):
        term = draw(st.sampled_from([*sorted(vocab), "new"]))
        if term in vocab and draw(st.booleans()):
            del vocab[term]
        else:
            vocab[term] = draw(st.one_of(st.sampled_from([0, 4, 5, -1, 3.0, "3", None, True, [1], 2**70]), JUNK))
    return vocab


@FILES
@given(idf=IDF_ARRAYS, vocab=vocabularies(), idf_damage=st.sampled_from(["none", "none", "none", "bytes", "truncate",
                                                                         "npz", "pickle", "missing", "directory",
                                                                         "empty", "text"]),
       vocab_mode=st.sampled_from(["none"] * 6 + FILE_MODES), data=st.data())
def test_damaged_tfidf_files_load_or_raise_a_named_data_error(tmp_path, idf, vocab, idf_damage, vocab_mode, data):
    idf_path = fresh_path(tmp_path, "idf.npy")
    vocab_path = idf_path.with_name("tfidf_vocab.json")
    buf = io.BytesIO()
    np.save(buf, idf, allow_pickle=True)
    blob = buf.getvalue()
    if idf_damage == "bytes":
        blob = b"\x93NUMPY\x01\x00garbage" + blob[-7:]
    elif idf_damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif idf_damage in ("empty", "text"):
        blob = b"" if idf_damage == "empty" else b"1.5 1.2 2.0 1.1 1.7\n"
    elif idf_damage == "npz":
        buf = io.BytesIO()
        np.savez(buf, idf=idf)
        blob = buf.getvalue()
    elif idf_damage == "pickle":
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        blob = buf.getvalue()
    if idf_damage == "directory":
        idf_path.mkdir()
    elif idf_damage != "missing":
        idf_path.write_bytes(blob)
    data.draw(damaged_text(vocab, vocab_mode))(vocab_path)
    try:
        stats = load_tfidf(idf_path, vocab_path)
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg and (idf_path.name in msg or vocab_path.name in msg), msg
        return
    assert stats.idf.ndim == 1 and stats.idf.dtype == np.float64 and np.all(np.isfinite(stats.idf))
    assert np.all(stats.idf > 0) and sorted(stats.vocabulary.values()) == list(range(len(stats.idf)))
    v = stats.vector("John Brown speaks English, john")
    assert np.all(np.isfinite(v)) and (np.linalg.norm(v) == pytest.approx(1.0) or not v.any())


# -- the fact world ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world_doc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    write_world(World(WorldConfig(n_people=6, n_relations=2, pool_size=3, renderings=1)), folder, n_edits=3)
    return json.loads((folder / "world.json").read_text())


SMALL_JUNK = JUNK.filter(lambda x: not (isinstance(x, int) and not isinstance(x, bool) and x > 50))


@FEW
@given(data=st.data(), mode=st.sampled_from(["field", "field", "field", "top", "truncate", "bad_utf8",
                                             "missing", "directory"]))
def test_damaged_world_files_load_or_raise_a_world_config_error(tmp_path, world_doc, data, mode):
    doc = copy.deepcopy(world_doc)
    folder = fresh_path(tmp_path, "w")
    path = folder.with_name("world.json")
    if mode == "field":
        # sizes are drawn small: a world.json may ask for any size, and the world is regenerated from it
        paths = [p for p in leaf_paths(doc) if len(p) <= 3]
        path_in_doc = data.draw(st.sampled_from(paths))
        parent = doc
        for k in path_in_doc[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path_in_doc[-1]]
        else:
            parent[path_in_doc[-1]] = data.draw(SMALL_JUNK)
    elif mode == "top":
        doc = data.draw(JUNK.filter(lambda x: not isinstance(x, dict)))
    text = json.dumps(doc)
    if mode == "truncate":
        text = text[: data.draw(st.integers(0, len(text) - 1))]
    if mode == "directory":
        path.mkdir()
    elif mode != "missing":
        path.write_bytes(text.encode() + (b"\xff" if mode == "bad_utf8" else b""))
    try:
        world = load_world(path)
    except WorldConfigError as exc:
        assert "\n" not in str(exc) and "world.json" in str(exc), str(exc)
        return
    assert list(world.people) == world_doc["people"]
    assert [list(r) for r in world.objects] == world_doc["facts"]


# -- what the fuzzing found, pinned ---------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["The {} of {", "{x} speaks {}", "{} is }", "a {{}} b"])
def test_a_prompt_with_a_stray_brace_is_refused_where_it_is_read(tmp_path, prompt):
    rec = cf_record(0)
    rec["requested_rewrite"]["prompt"] = prompt
    (tmp_path / "cf.json").write_text(json.dumps([rec]))
    with pytest.raises(DataError, match=r"cf\.json: record 0 \(case_id 100\): field 'requested_rewrite\.prompt'"):
        load_counterfact(tmp_path / "cf.json")
    with pytest.raises(RequestError, match="prompt"):  # and by EditRequest itself (rlsedit llm-edit's records)
        EditRequest(case_id=0, prompt=prompt, subject="Anna Smith", target_new=" English")
    with pytest.raises(RequestError, match="case_id"):
        EditRequest(case_id=None, prompt="{} speaks", subject="Anna Smith", target_new=" English")


@pytest.mark.parametrize(("blob", "message"), [
    (b"[" * 100_000, "JSON nested too deeply"),
    (b'[{"case_id": "caf\xe9"}]', "not UTF-8"),
    ("\ufeff[]".encode(), "not valid JSON"),
])
def test_unreadable_json_is_a_data_error(tmp_path, blob, message):
    (tmp_path / "x.json").write_bytes(blob)
    for load in (load_counterfact, load_zsre, load_attribute_snippets):
        with pytest.raises(DataError, match=rf"x\.json: {message}"):
            load(tmp_path / "x.json")
    with pytest.raises(DataError, match="is a directory"):
        load_counterfact(tmp_path)


@pytest.mark.parametrize(("write", "message"), [
    (lambda p: np.save(p, IDF.astype(np.complex128)), "real numbers"),
    (lambda p: np.save(p, np.array(list("abcde"))), "real numbers"),
    (lambda p: np.savez(p.with_suffix(""), idf=IDF) or p.with_suffix(".npz").rename(p), "npz"),
    (lambda p: p.write_bytes(b""), "not a numpy array"),
])
def test_an_idf_file_that_is_not_a_real_vector_is_a_data_error(tmp_path, write, message):
    write(tmp_path / "idf.npy")
    (tmp_path / "v.json").write_text(json.dumps(VOCAB))
    with pytest.raises(DataError, match=message):
        load_tfidf(tmp_path / "idf.npy", tmp_path / "v.json")


def test_huge_idf_weights_give_finite_tfidf_vectors():
    stats = TfidfStats(VOCAB, np.full(5, 1e308))
    assert stats.similarity("John Brown speaks", "john speaks English") == pytest.approx(2 / 3)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("people"), "field 'people'"),
    (lambda d: d.__setitem__("config", [1]), "field 'config' must be a JSON object"),
    (lambda d: d["config"].__setitem__("question_fraction", "x"), "question_fraction.*must be a number"),
    (lambda d: d["config"].__setitem__("zzz", 1), "WorldConfig: unknown option"),
])
def test_a_damaged_world_file_is_a_world_config_error(tmp_path, world_doc, change, message):
    doc = copy.deepcopy(world_doc)
    change(doc)
    (tmp_path / "world.json").write_text(json.dumps(doc))
    with pytest.raises(WorldConfigError, match=rf"world\.json: .*{message}"):
        load_world(tmp_path)


# -- the command line ---------------------------------------------------------------------------------------
def run_cli(argv) -> tuple[int, str]:
    """Run ``rlsedit argv``; return (exit code, the one line it wrote to stderr or raised)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = cli_main([str(a) for a in argv])
            message = err.getvalue()
        except SystemExit as exc:
            if isinstance(exc.code, str):
                code, message = 1, exc.code
            else:
                code, message = exc.code, err.getvalue()
    assert "Traceback" not in message, message
    return code, message.strip()


def assert_refused(argv, *needles, command=None):
    code, message = run_cli(argv)
    assert code != 0, message
    command = command or argv[0]
    last = message.splitlines()[-1] if message else ""
    if code == 2 and "usage:" in message:  # argparse: usage line, then one error line
        assert last.startswith(f"rlsedit {command}: error:"), message
    else:
        assert len(message.splitlines()) == 1 and last.startswith(f"rlsedit {command}:"), message
    for needle in needles:
        assert needle in last, (needle, message)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """A missing file, a directory, and damaged CounterFact / ZsRE / TF-IDF / text files."""
    d = tmp_path_factory.mktemp("bad")
    (d / "folder.json").mkdir()
    (d / "truncated.json").write_text(json.dumps([cf_record(0)])[:40])
    (d / "latin1.json").write_bytes(json.dumps([cf_record(0)]).replace("English", "Engl\u00efsh", 1)
                                    .encode("latin-1", "ignore").replace(b"Engl", b"Engl\xef", 1))
    (d / "object.json").write_text(json.dumps({"records": [cf_record(0)]}))
    bad_cf = [cf_record(0), cf_record(1)]
    bad_cf[1]["requested_rewrite"]["prompt"] = "The {} of {"
    (d / "badprompt.json").write_text(json.dumps(bad_cf))
    no_subject = [cf_record(0), cf_record(1)]
    del no_subject[1]["requested_rewrite"]["subject"]
    (d / "nosubject.json").write_text(json.dumps(no_subject))
    zsre = [zsre_record(0), zsre_record(1)]
    zsre[1]["answers"] = [None]
    (d / "zsre.json").write_text(json.dumps(zsre))
    (d / "good_cf.json").write_text(json.dumps([cf_record(i) for i in range(3)]))
    (d / "snips.json").write_text(json.dumps([{"relation_id": "P103"}]))
    np.save(d / "idf.npy", np.array([np.nan, 1.0]))
    (d / "vocab.json").write_text(json.dumps({"a": 0, "b": "1"}))
    (d / "text.txt").write_bytes(b"caf\xe9 au lait\n\nmore text\n")
    (d / "model").mkdir()
    return d


# rlsedit evaluate reads every file before it loads the model: an empty folder stands in for the model
@pytest.mark.parametrize(("extra", "needles"), [
    (["--data", "{d}/missing.json"], ["missing.json", "no such file"]),
    (["--data", "{d}/folder.json"], ["folder.json", "directory"]),
    (["--data", "{d}/truncated.json"], ["truncated.json", "not valid JSON"]),
    (["--data", "{d}/latin1.json"], ["latin1.json", "UTF-8"]),
    (["--data", "{d}/object.json"], ["object.json", "expected a JSON list"]),
    (["--data", "{d}/badprompt.json"], ["badprompt.json", "record 1", "requested_rewrite.prompt"]),
    (["--data", "{d}/nosubject.json"], ["nosubject.json", "record 1", "requested_rewrite.subject", "missing"]),
    (["--data", "{d}/zsre.json", "--dataset", "zsre"], ["zsre.json", "record 1", "'answers'"]),
    (["--data", "{d}/good_cf.json", "--snippets", "{d}/snips.json"], ["snips.json", "record 0", "target_id"]),
    (["--data", "{d}/good_cf.json", "--generation", "--snippets", "{d}/snips.json", "--idf", "{d}/idf.npy",
      "--vocab", "{d}/vocab.json"], ["snips.json"]),
    (["--data", "{d}/good_cf.json", "--limit", "-1"], ["--limit"]),
    (["--data", "{d}/good_cf.json", "--batch-size", "0"], ["--batch-size"]),
    (["--data", "{d}/good_cf.json", "--top-k", "-3"], ["--top-k"]),
    (["--data", "{d}/good_cf.json", "--limit", "nan"], ["--limit", "invalid int"]),
    (["--heldout", "{d}/text.txt"], ["text.txt", "UTF-8"]),
    (["--heldout", "{d}/folder.json"], ["folder.json"]),
    (["--glue", "sst2={d}/latin1.json"], ["latin1.json"]),
])
def test_evaluate_refuses_bad_files_and_numbers_in_one_line(bad_files, tmp_path, extra, needles):
    extra = [a.format(d=bad_files) for a in extra]
    assert_refused(["evaluate", "--model", bad_files / "model", "--out", tmp_path / "o", *extra], *needles)
    assert not (tmp_path / "o").exists()


def test_evaluate_names_bad_tfidf_files(bad_files, tmp_path):
    good_snips = tmp_path / "s.json"
    good_snips.write_text(json.dumps([snippet_record(0)]))
    assert_refused(["evaluate", "--model", bad_files / "model", "--out", tmp_path / "o", "--data",
                    bad_files / "good_cf.json", "--generation", "--snippets", good_snips, "--idf",
                    bad_files / "idf.npy", "--vocab", bad_files / "vocab.json"], "idf.npy")


N3 = ("--n-edits", "3", "--no-generation")


# rlsedit edit: options are checked when the configuration is built, a --data file before any model is
# loaded or trained (the checkpoint folder here holds no model at all)
@pytest.mark.parametrize(("extra", "needles"), [
    (["--n-edits", "-3"], ["n_edits"]),
    (["--batch-size", "0"], ["batch_size"]),
    (["--lam", "nan"], ["lam"]),
    (["--mu", "inf"], ["mu"]),
    (["--lam", "-1"], ["lam"]),
    (["--n-w", "0"], ["n_w"]),
    (["--threads", "0"], ["threads"]),
    (["--threads", "100000"], ["threads"]),
    (["--layers", "1,0"], ["layers"]),
    (["--layers", "x"], ["--layers", "integers"]),
    (["--checkpoint-every", "7", "--along-stream"], ["checkpoint_every"]),
    (["--people", "2"], ["people"]),
    (["--data", "{d}/missing.json"], ["missing.json", "no such file"]),
    (["--data", "{d}/truncated.json"], ["truncated.json", "not valid JSON"]),
    (["--data", "{d}/badprompt.json"], ["badprompt.json", "record 1", "requested_rewrite.prompt"]),
    (["--data", "{d}/zsre.json", "--dataset", "zsre", "--no-generation"], ["zsre.json", "record 1", "'answers'"]),
    (["--data", "{d}/good_cf.json", "--snippets", "{d}/snips.json"], ["snips.json", "target_id"]),
    (["--data", "{d}/good_cf.json", "--n-edits", "5"], ["n_edits", "holds only 3 records"]),
    # without snippets the file is read (Consistency is then reported absent): the next problem is the model
    (["--data", "{d}/good_cf.json", "--n-edits", "3"], ["model", "config.json"]),
    (["--data", "{d}/good_cf.json", *N3, "--stats-corpus", "{d}/missing.txt"], ["missing.txt", "no such file"]),
    (["--data", "{d}/good_cf.json", *N3, "--stats-corpus", "{d}/folder.json"], ["folder.json", "directory"]),
    (["--data", "{d}/good_cf.json", *N3, "--stats-corpus", "{d}/text.txt"], ["text.txt", "UTF-8"]),
    (["--data", "{d}/good_cf.json", *N3], ["model", "config.json"]),
    (["--n-edits", "49"], ["n_edits", "48 facts"]),  # the quick world: 16 people x 3 relations
])
def test_edit_refuses_bad_files_and_numbers_before_any_model(bad_files, tmp_path, extra, needles):
    extra = [a.format(d=bad_files) for a in extra]
    model = ["--model", bad_files / "model", "--stats-corpus", bad_files / "good_cf.json"]
    if "--data" not in extra:
        model = ["--quick"]  # the quick tiny model: refused before it is trained, the cache stays empty
    elif "--stats-corpus" in extra:
        model = model[:2]
    assert_refused(["edit", *model, "--out", tmp_path / "o", "--cache", tmp_path / "cache", "--no-progress",
                    *extra], *needles)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("extra", "needles"), [
    (["--batch-size", "0"], ["--batch-size"]),
    (["--batches", "-1"], ["--batches"]),
    (["--every", "0"], ["--every"]),
    (["--d-k", "0"], ["--d-k"]),
    (["--lam", "nan"], ["lam", "finite"]),
    (["--lam", "-inf"], ["lam"]),
    (["--refactor-every", "0"], ["refactor_every"]),
    (["--threads", "100000"], ["--threads"]),
    (["--seed", "-1"], ["--seed"]),
    (["--dtype", "float16"], ["--dtype"]),
])
def test_stream_refuses_bad_numbers_in_one_line(tmp_path, extra, needles):
    assert_refused(["synthetic-stream", "--checkpoint", tmp_path / "s.safetensors", "--d-k", "4", "--d-v", "1",
                    "--batches", "2", *extra], *needles)
    assert not (tmp_path / "s.safetensors").exists()


@pytest.mark.parametrize(("extra", "needles"), [
    (["--data", "{d}/missing.json"], ["missing.json"]),
    (["--data", "{d}/folder.json"], ["folder.json"]),
    (["--data", "{d}/truncated.json"], ["truncated.json", "JSON"]),
    (["--data", "{d}/latin1.json"], ["latin1.json", "UTF-8"]),
    (["--data", "{d}/object.json"], ["object.json", "list"]),
    (["--data", "{d}/requests.json", "--n-edits", "-1"], ["n_edits"]),
    (["--data", "{d}/requests.json", "--batch-size", "0"], ["batch_size"]),
    (["--data", "{d}/requests.json", "--layers", "x"], ["--layers"]),
    (["--data", "{d}/requests.json", "--save-every", "-1"], ["save_every"]),
    (["--data", "{d}/requests.json", "--preset", "gpt-9"], ["gpt-9"]),
    (["--data", "{d}/requests.json", "--config", "{d}/missing.json"], ["missing.json"]),
    (["--data", "{d}/requests.json", "--config", "{d}/good_cf.json"], ["good_cf.json"]),
    (["--data", "{d}/bad_requests.json"], ["request 1", "prompt"]),
])
def test_edit_refuses_bad_request_files_and_numbers_in_one_line(bad_files, tmp_path, extra, needles):
    """A plain request file (--dataset requests, the stream that `llm-edit` took before it was folded in)."""
    good = [{"case_id": 0, "prompt": "{} speaks", "subject": "Anna Smith", "target_new": " English"}]
    (bad_files / "requests.json").write_text(json.dumps(good))
    (bad_files / "bad_requests.json").write_text(json.dumps([*good, {**good[0], "prompt": "{x} speaks {}"}]))
    extra = [a.format(d=bad_files) for a in extra]
    n = [] if "--n-edits" in extra else ["--n-edits", "1"]
    assert_refused(["edit", "--model", bad_files / "model", "--dataset", "requests", "--stats-corpus",
                    bad_files / "good_cf.json", "--no-eval", "--out", tmp_path / "o", "--cache", tmp_path / "c",
                    *n, *extra], *needles)


def test_world_refuses_bad_numbers_and_an_output_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_refused(["world", "--out", tmp_path / "file", "--people", "6", "--relations", "2"], "file")
    assert_refused(["world", "--out", tmp_path / "w", "--question-fraction", "nan"], "question_fraction")
    assert_refused(["world", "--out", tmp_path / "w", "--people", "6", "--n-edits", "-1"], "n_edits")
    assert_refused(["world", "--out", tmp_path / "w", "--relations", "0"], "n_relations")
