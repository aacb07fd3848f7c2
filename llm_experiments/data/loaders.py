"""Loaders for the field's editing benchmarks, from local files, into :class:`EditRequest`.

A file is read for one *metric suite* (:mod:`llm_experiments.evaluate.metrics`): ``"counterfact"``
(:func:`load_counterfact`: MEMIT's probability comparisons, Fluency, Consistency) or ``"zsre"``
(:func:`load_zsre`: token accuracy). Its *format* is detected from its records (:func:`detect_format`:
the layout most records have) or named with ``format=``. Every record is validated; a record is
refused, with a :class:`DataError` naming the file, the record (index, and id where it has one) and
the field, only when a field that the chosen suite (or target, or snippets) reads is missing or
malformed. Fields that nothing reads may be absent or of any type; the well-formed ones are kept
in ``EditRequest.extra``.

Formats (public releases, and what each suite reads; docs/evaluation.md has the same table):

``counterfact``: ROME/MEMIT's ``counterfact.json`` and MEMIT's ``multi_counterfact.json``
    A JSON list of records::

        {"case_id": 0,
         "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                               "relation_id": "P103",
                               "target_new": {"str": "English", "id": "Q1860"},
                               "target_true": {"str": "French", "id": "Q150"}},
         "paraphrase_prompts": [...], "neighborhood_prompts": [...],
         "attribute_prompts": [...], "generation_prompts": [...]}

    Both suites read ``case_id``, the prompt template, subject, both targets' ``str``, the
    paraphrase and neighbourhood prompts (whose answer to keep is ``target_true``); the CounterFact
    suite also ``generation_prompts`` when present (Fluency, Consistency); snippets, when given,
    ``relation_id`` and ``target_new.id``. Targets are stored without their leading space; the
    request gets it (" English"), as the model would write the word after the prompt.

``zsre``: MEND's ``zsre_mend_eval.json`` and ``zsre_mend_train.json``
    A JSON list of ``{"subject", "src", "answers": [...], "alt", "rephrase", "loc", "loc_ans",
    "pred", "cond"}``. As in MEMIT/AlphaEdit: the prompt is ``src`` with the subject replaced by
    ``{}``, the paraphrase is ``rephrase``, and the neighbourhood prompt ``loc + "?"`` must keep
    the answer ``loc_ans``. The new target is ``answers[0]`` (``target="answers"``, the ZsRE
    suite's default, as MEMIT and AlphaEdit) or ``alt`` (``target="alt"``, the CounterFact suite's
    reading: ``alt`` is the counterfactual, ``answers[0]`` the answer it replaces). ``alt`` is read
    only with ``target="alt"``: the train split's records with ``"alt": ""`` load for the ZsRE
    suite. The record's index in the file is its ``case_id``.

``easyedit``: EasyEdit's flat records (its CounterFact and ZsRE files, KnowEdit)
    ``{"prompt": "The mother tongue of Danielle Darrieux is", "subject": ..., "target_new": ...,
    "ground_truth": ..., "rephrase_prompt": ..., "locality_prompt": ..., "locality_ground_truth":
    ..., "case_id"?, "portability"?, ...}``. ``prompt`` is the full prompt: the subject's first
    occurrence becomes ``{}``. ``ground_truth`` (a string, or a list of aliases: the first) is the
    answer replaced, read by the CounterFact suite. ``rephrase_prompt`` (or ``rephrase``) and the
    locality prompts may each be a string or a list; KnowEdit's ``"locality": {name: [{"prompt",
    "ground_truth"}, ...]}`` is read when the flat locality fields are absent. Without a
    ``case_id`` the record's index is its id.

``mquake``: MQuAKE (``MQuAKE-CF-3k.json``, ``MQuAKE-T.json``)
    ``{"case_id", "requested_rewrite": [{"prompt", "subject", "target_new": {"str", "id"},
    "target_true": {"str", "id"}, "relation_id", "question"}, ...], "questions", "new_answer",
    "answer", ...}``. Each requested rewrite is one request, ``case_id`` ``"<case_id>:<j>"``; its
    single-hop ``question`` is the paraphrase. MQuAKE has no neighbourhood prompts (Specificity is
    absent) and the multi-hop questions are kept in ``extra["multi_hop"]`` but scored by neither
    suite.

``requests``: a plain request stream (:func:`load_requests`, ``rlsedit edit --dataset requests``)
    A JSON list of objects with :class:`EditRequest`'s own fields; never detected, always named.

``attribute_snippets.json`` (reference texts for Consistency)
    A JSON list of ``{"relation_id": "P103", "target_id": "Q1860", "samples": [{"name": ..., "text":
    ...}, ...]}``: Wikipedia snippets about subjects whose ``relation_id`` is ``target_id``. A
    request's ``reference_texts`` are the texts of all samples under ``(relation_id, target_new.id)``
    (CounterFact and MQuAKE records carry both ids).

``idf.npy`` + ``tfidf_vocab.json`` (TF-IDF statistics for Consistency)
    A 1-D float array of inverse document frequencies and a JSON object ``{term: column}``, the
    ``idf_`` and ``vocabulary_`` of a scikit-learn ``TfidfVectorizer`` fitted on the snippets.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_experiments.data.requests import EditRequest, RequestError, template_problem
from llm_experiments.data.tfidf import TfidfStats

FORMATS = ("counterfact", "zsre", "easyedit", "mquake")
SUITES = ("counterfact", "zsre")


class DataError(ValueError):
    """A benchmark file or record that cannot be read; the message names the file, record and field."""


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")


class JSONFileError(DataError):
    """A JSON file that cannot be read or parsed; ``why`` is the reason without the path."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


def read_json_file(path: str | Path):
    """The JSON document in ``path``, or :class:`JSONFileError` saying why it cannot be had
    (missing, a directory, unreadable, not UTF-8, not JSON, nested too deeply)."""
    path = Path(path)
    if path.is_dir():
        raise JSONFileError(path, "is a directory, not a file")
    if not path.is_file():
        raise JSONFileError(path, "no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise JSONFileError(path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except OSError as exc:
        raise JSONFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONFileError(path, f"not valid JSON ({exc})") from exc
    except RecursionError as exc:  # json's decoder recurses once per nesting level
        raise JSONFileError(path, "JSON nested too deeply to read") from exc


def _read_json(path: str | Path, expected: type):
    path = Path(path)
    data = read_json_file(path)
    if not isinstance(data, expected):
        raise DataError(f"{path.name}: expected a JSON {expected.__name__}, got {type(data).__name__}")
    return data


_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def _path(field: str) -> list[str | int]:
    """``"requested_rewrite[1].target_new.str"`` -> ``["requested_rewrite", 1, "target_new", "str"]``."""
    return [int(p[1:-1]) if p.startswith("[") else p for p in _PATH_PART.findall(field)]


def _nonempty(x) -> bool:
    return isinstance(x, str) and bool(x.strip())


def _first_answer(node):
    """An answer given as a string or as a list of aliases (possibly nested): the first; None if none."""
    while isinstance(node, list) and node:
        node = node[0]
    return node if _nonempty(node) else None


class _Record:
    """Field access with errors that name the file, the record and the field's path."""

    def __init__(self, file: str, index: int, raw, label: str | None = None):
        self.where = f"{file}: record {index}" + (f" ({label})" if label else "")
        if not isinstance(raw, dict):
            raise DataError(f"{self.where}: expected a JSON object, got {type(raw).__name__}")
        self.raw, self.index = raw, index

    def fail(self, field: str, problem: str):
        return DataError(f"{self.where}: field {field!r} {problem}")

    def has(self, field: str) -> bool:
        node = self.raw
        for part in _path(field):
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    return False
            elif not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def get(self, field: str, kind: str, *, optional: bool = False):
        """The field's value checked as ``kind``: ``str`` (non-empty), ``str_list`` (a tuple of
        non-empty strings), ``texts`` (one string or a list of them, as a tuple), ``answer`` (a
        string or a list of aliases: the first), ``id`` (an integer or a string), ``template`` (a
        prompt with one ``{}``) or ``any``. ``optional``: None when the field is absent."""
        if not self.has(field):
            if optional:
                return None
            raise self.fail(field, "is missing")
        node = self.raw
        for part in _path(field):
            node = node[part]
        if kind in ("str", "template"):
            if not _nonempty(node):
                raise self.fail(field, f"must be a non-empty string, got {node!r}")
            problem = template_problem(node) if kind == "template" else None
            if problem:
                raise self.fail(field, f"{problem}, got {node!r}")
        elif kind == "str_list":
            if not isinstance(node, list) or not all(_nonempty(x) for x in node):
                raise self.fail(field, "must be a list of non-empty strings")
            node = tuple(node)
        elif kind == "texts":
            if _nonempty(node):
                node = (node,)
            elif isinstance(node, list) and all(_nonempty(x) for x in node):
                node = tuple(node)
            else:
                raise self.fail(field, "must be a non-empty string or a list of them")
        elif kind == "answer":
            answer = _first_answer(node)
            if answer is None:
                raise self.fail(field, f"must be a non-empty string or a list of them, got {node!r}")
            node = answer
        elif kind == "id":
            if isinstance(node, bool) or not isinstance(node, int | str):
                raise self.fail(field, f"must be an integer or a string, got {node!r}")
        return node

    def peek(self, field: str, kind: str):
        """The field's value if it is present and well formed, else None: for fields nothing reads
        (kept in ``extra`` for reference, never a reason to refuse the record)."""
        try:
            return self.get(field, kind, optional=True)
        except DataError:
            return None

    def template_from(self, text_field: str, subject_field: str) -> tuple[str, str]:
        """A prompt template from a full prompt: the subject's first occurrence becomes ``{}``
        (so that ``template.format(subject)`` gives the text back). Returns (template, subject)."""
        text = self.get(text_field, "str")
        subject = self.get(subject_field, "str")
        if subject not in text:
            raise self.fail(subject_field, f"{subject!r} does not occur in {text_field} {text!r}")
        if "{" in text or "}" in text:
            raise self.fail(text_field, f"contains a brace, which a prompt template cannot hold: {text!r}")
        return text.replace(subject, "{}", 1), subject


def _with_space(text: str) -> str:
    """A target as the model writes it after a prompt: with one leading space."""
    return text if text.startswith(" ") else " " + text


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise DataError(f"limit must be a non-negative integer or None, got {limit!r}")


def load_attribute_snippets(path: str | Path) -> dict[tuple[str, str], tuple[dict, ...]]:
    """``attribute_snippets.json`` as ``{(relation_id, target_id): ({"name", "text"}, ...)}``."""
    path = Path(path)
    data = _read_json(path, list)
    out: dict[tuple[str, str], list[dict]] = {}
    for i, raw in enumerate(data):
        rec = _Record(path.name, i, raw)
        key = (rec.get("relation_id", "str"), rec.get("target_id", "str"))
        samples = rec.get("samples", "any")
        if not isinstance(samples, list):
            raise rec.fail("samples", "must be a list")
        for j, sample in enumerate(samples):
            if not isinstance(sample, dict) or not isinstance(sample.get("text"), str):
                raise rec.fail(f"samples[{j}].text", "must be a string")
            if not isinstance(sample.get("name", ""), str):
                raise rec.fail(f"samples[{j}].name", "must be a string")
            out.setdefault(key, []).append({"name": sample.get("name", ""), "text": sample["text"]})
    return {k: tuple(v) for k, v in out.items()}


def load_tfidf(idf_path: str | Path, vocab_path: str | Path) -> TfidfStats:
    """MEMIT's TF-IDF statistics (``idf.npy``, ``tfidf_vocab.json``) as :class:`TfidfStats`."""
    idf_path = Path(idf_path)
    _check_file(idf_path)
    try:
        idf = np.load(idf_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{idf_path.name}: not a numpy array file ({exc})") from exc
    if not isinstance(idf, np.ndarray):  # np.load opens an .npz archive instead
        idf.close()
        raise DataError(f"{idf_path.name}: an .npz archive, not a .npy array")
    vocab = _read_json(vocab_path, dict)
    try:
        return TfidfStats(vocabulary=vocab, idf=idf)
    except ValueError as exc:
        raise DataError(f"{Path(vocab_path).name} / {idf_path.name}: {exc}") from exc


# -- formats --------------------------------------------------------------------------------------
def record_format(raw) -> str | None:
    """The format a record's layout belongs to (by its key fields), or None if none."""
    if not isinstance(raw, dict):
        return None
    rewrite = raw.get("requested_rewrite")
    if isinstance(rewrite, dict):
        return "counterfact"
    if isinstance(rewrite, list):
        return "mquake"
    if "src" in raw:
        return "zsre"
    if "prompt" in raw and "target_new" in raw:
        return "easyedit"
    return None


def detect_format(records: list, name: str = "file") -> str:
    """The format of a file's records: the layout most of them have (the first seen on a tie).

    A record of another layout is then refused by the field it lacks. :class:`DataError` when no
    record has a known layout."""
    votes = Counter(f for f in map(record_format, records) if f is not None)
    if not votes:
        if not records:
            return "counterfact"  # an empty list: every format reads it as no requests
        for i, raw in enumerate(records):
            _Record(name, i, raw)  # a record that is not an object is named as such
        raise DataError(f"{name}: not a known benchmark format: no object has the key fields of one "
                        "(requested_rewrite: CounterFact or MQuAKE; src: ZsRE; prompt and target_new: EasyEdit)")
    top = max(votes.values())
    return next(f for f in map(record_format, records) if f is not None and votes[f] == top)


@dataclass(frozen=True)
class _Reading:
    """What one load reads: the metric suite, ZsRE's target field, the snippets (or None)."""

    suite: str
    target: str
    snippets: Mapping[tuple[str, str], tuple[dict, ...]] | None

    @property
    def counterfact(self) -> bool:
        return self.suite == "counterfact"


def _references(rec: _Record, how: _Reading, rewrite: str) -> tuple[tuple[str, ...], str]:
    """The snippets' texts about the new target (when snippets are given) and the relation id."""
    if how.snippets is None:
        return (), rec.peek(f"{rewrite}.relation_id", "str") or ""
    relation_id = rec.get(f"{rewrite}.relation_id", "str")
    new_id = rec.get(f"{rewrite}.target_new.id", "id")
    return tuple(s["text"] for s in how.snippets.get((relation_id, str(new_id)), ())), relation_id


def _counterfact_requests(rec: _Record, how: _Reading) -> list[dict]:
    rw = "requested_rewrite"
    references, relation_id = _references(rec, how, rw)
    return [dict(
        case_id=rec.get("case_id", "id"), prompt=rec.get(f"{rw}.prompt", "template"),
        subject=rec.get(f"{rw}.subject", "str"), target_new=_with_space(rec.get(f"{rw}.target_new.str", "str")),
        # both suites read target_true: the CounterFact suite's comparisons, the neighbourhood's answer
        target_true=_with_space(rec.get(f"{rw}.target_true.str", "str")),
        paraphrase_prompts=rec.get("paraphrase_prompts", "str_list"),
        neighborhood_prompts=rec.get("neighborhood_prompts", "str_list"),
        generation_prompts=(rec.get("generation_prompts", "str_list", optional=True) or ()) if how.counterfact else (),
        reference_texts=references, relation_id=relation_id,
        extra={"target_new_id": rec.peek(f"{rw}.target_new.id", "id"),
               "target_true_id": rec.peek(f"{rw}.target_true.id", "id"),
               "attribute_prompts": rec.peek("attribute_prompts", "str_list") or ()},
    )]


def _zsre_requests(rec: _Record, how: _Reading) -> list[dict]:
    prompt, subject = rec.template_from("src", "subject")
    if how.target == "answers":
        answers = rec.get("answers", "str_list")
        if not answers:
            raise rec.fail("answers", "must hold at least one answer")
        new, true = answers[0], ""
    else:
        new = rec.get("alt", "str")
        true = ""
        if how.counterfact:  # the answer that alt replaces
            answers = rec.get("answers", "str_list")
            if not answers:
                raise rec.fail("answers", "must hold at least one answer")
            true = answers[0]
    return [dict(
        case_id=rec.index, prompt=prompt, subject=subject, target_new=_with_space(new),
        target_true=_with_space(true) if true else "",
        paraphrase_prompts=(rec.get("rephrase", "str"),), neighborhood_prompts=(rec.get("loc", "str") + "?",),
        neighborhood_targets=(_with_space(rec.get("loc_ans", "str")),),
        extra={"answers": rec.peek("answers", "str_list"), "alt": rec.peek("alt", "str"),
               "pred": rec.peek("pred", "str")},
    )]


def _knowedit_locality(rec: _Record) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """KnowEdit's ``locality: {name: [{"prompt", "ground_truth"}, ...]}`` as (prompts, answers)."""
    groups = rec.get("locality", "any")
    if not isinstance(groups, dict):
        raise rec.fail("locality", "must be an object {name: [{prompt, ground_truth}, ...]}")
    prompts: list[str] = []
    answers: list[str] = []
    for name, entries in groups.items():
        if not isinstance(entries, list):
            raise rec.fail(f"locality.{name}", "must be a list of {prompt, ground_truth} objects")
        for j in range(len(entries)):
            field = f"locality.{name}[{j}]"
            p = rec.get(f"{field}.prompt", "texts")
            if len(p) == 1:
                a = (rec.get(f"{field}.ground_truth", "answer"),)
            else:  # several prompts: one answer (or alias list) for each
                a = rec.get(f"{field}.ground_truth", "any")
                if not isinstance(a, list) or len(a) != len(p):
                    raise rec.fail(f"{field}.ground_truth", f"must hold one answer for each of its {len(p)} prompts")
                a = tuple(rec.get(f"{field}.ground_truth[{k}]", "answer") for k in range(len(p)))
            prompts += p
            answers += a
    return tuple(prompts), tuple(answers)


def _easyedit_requests(rec: _Record, how: _Reading) -> list[dict]:
    prompt, subject = rec.template_from("prompt", "subject")
    true = rec.get("ground_truth", "answer") if how.counterfact else rec.peek("ground_truth", "answer")
    rephrase = "rephrase_prompt" if rec.has("rephrase_prompt") or not rec.has("rephrase") else "rephrase"
    paraphrases = rec.get(rephrase, "texts", optional=True) or ()
    if rec.has("locality_prompt") or rec.has("locality_ground_truth"):
        loc = rec.get("locality_prompt", "texts")
        if len(loc) == 1:
            loc_ans = (rec.get("locality_ground_truth", "answer"),)
        else:
            loc_ans = rec.get("locality_ground_truth", "texts")
            if len(loc_ans) != len(loc):
                raise rec.fail("locality_ground_truth", f"must hold one answer for each of the {len(loc)} "
                                                        "locality prompts")
    elif rec.has("locality"):
        loc, loc_ans = _knowedit_locality(rec)
    else:
        loc, loc_ans = (), ()
    case_id = rec.get("case_id", "id") if rec.has("case_id") else rec.index
    return [dict(
        case_id=case_id, prompt=prompt, subject=subject, target_new=_with_space(rec.get("target_new", "str")),
        target_true=_with_space(true) if true else "", paraphrase_prompts=paraphrases,
        neighborhood_prompts=loc, neighborhood_targets=tuple(_with_space(a) for a in loc_ans),
    )]


def _mquake_requests(rec: _Record, how: _Reading) -> list[dict]:
    case = rec.get("case_id", "id") if rec.has("case_id") else rec.index
    rewrites = rec.get("requested_rewrite", "any")
    if not rewrites:
        raise rec.fail("requested_rewrite", "must be a non-empty list of rewrites")
    multi_hop = {"questions": rec.peek("questions", "str_list"), "new_answer": rec.peek("new_answer", "str"),
                 "answer": rec.peek("answer", "str")}
    out = []
    for j in range(len(rewrites)):
        rw = f"requested_rewrite[{j}]"
        if not isinstance(rewrites[j], dict):
            raise rec.fail(rw, f"must be an object, got {type(rewrites[j]).__name__}")
        references, relation_id = _references(rec, how, rw)
        true = rec.get(f"{rw}.target_true.str", "str") if how.counterfact else rec.peek(f"{rw}.target_true.str", "str")
        out.append(dict(
            case_id=f"{case}:{j}", prompt=rec.get(f"{rw}.prompt", "template"), subject=rec.get(f"{rw}.subject", "str"),
            target_new=_with_space(rec.get(f"{rw}.target_new.str", "str")),
            target_true=_with_space(true) if true else "",
            paraphrase_prompts=(rec.get(f"{rw}.question", "str"),), reference_texts=references,
            relation_id=relation_id,
            extra={"case_id": case, "rewrite": j, "target_new_id": rec.peek(f"{rw}.target_new.id", "id"),
                   "multi_hop": multi_hop},
        ))
    return out


_READERS: dict[str, Callable[[_Record, _Reading], list[dict]]] = {
    "counterfact": _counterfact_requests, "zsre": _zsre_requests, "easyedit": _easyedit_requests,
    "mquake": _mquake_requests,
}


def load_benchmark(
    path: str | Path,
    *,
    suite: str = "counterfact",
    format: str = "auto",
    target: str | None = None,
    snippets: str | Path | Mapping[tuple[str, str], tuple[dict, ...]] | None = None,
    limit: int | None = None,
) -> list[EditRequest]:
    """Read a benchmark file (any of :data:`FORMATS`) into edit requests for a metric suite.

    Args:
        path: the JSON file.
        suite: ``"counterfact"`` or ``"zsre"``, the metric suite the requests are for; it decides
            which fields must be there (see the module docstring).
        format: one of :data:`FORMATS`, or ``"auto"`` (:func:`detect_format`).
        target: ZsRE files only: ``"answers"`` (the new target is ``answers[0]``) or ``"alt"``;
            None: the suite's reading (ZsRE suite ``"answers"``, CounterFact suite ``"alt"``).
        snippets: ``attribute_snippets.json`` (path or the result of :func:`load_attribute_snippets`);
            when given, each request's ``reference_texts`` are the snippets about its new target.
        limit: keep the first ``limit`` requests (all records are still validated).
    """
    _check_limit(limit)
    if suite not in SUITES:
        raise DataError(f"suite must be one of {SUITES}, got {suite!r}")
    if format != "auto" and format not in FORMATS:
        raise DataError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if target not in (None, "answers", "alt"):
        raise DataError(f"target must be 'answers' or 'alt', got {target!r}")
    path = Path(path)
    data = _read_json(path, list)
    fmt = detect_format(data, path.name) if format == "auto" else format
    if target is not None and fmt != "zsre" and target != "answers":
        raise DataError(f"{path.name}: target={target!r} chooses between a ZsRE record's answers and alt; "
                        f"a {fmt} record has one new target")
    target = target or ("answers" if suite == "zsre" else "alt")
    if fmt == "zsre" and suite == "counterfact" and target == "answers":
        raise DataError(f"{path.name}: the CounterFact suite compares the new target with the answer it replaces; "
                        "a ZsRE record has one only with target='alt' (alt replaces answers[0])")
    if snippets is not None and fmt in ("zsre", "easyedit"):
        raise DataError(f"{path.name}: attribute snippets are found by relation_id and target_new.id, which "
                        f"{fmt} records do not have")
    if snippets is not None and not isinstance(snippets, Mapping):
        snippets = load_attribute_snippets(snippets)
    how = _Reading(suite, target, snippets)
    requests: list[EditRequest] = []
    seen: dict = {}
    for i, raw in enumerate(data):
        label = f"case_id {raw.get('case_id')!r}" if isinstance(raw, dict) and "case_id" in raw else None
        rec = _Record(path.name, i, raw, label)
        for fields in _READERS[fmt](rec, how):
            case_id = fields["case_id"]
            if case_id in seen:
                raise rec.fail("case_id", f"repeats record {seen[case_id]}'s id {case_id!r}")
            seen[case_id] = i
            try:
                request = EditRequest(**fields)
            except RequestError as exc:
                raise DataError(f"{rec.where}: {exc}") from exc
            request.extra["format"] = fmt
            requests.append(request)
    return requests if limit is None else requests[:limit]


def load_counterfact(
    path: str | Path,
    *,
    snippets: str | Path | Mapping[tuple[str, str], tuple[dict, ...]] | None = None,
    limit: int | None = None,
    format: str = "auto",
) -> list[EditRequest]:
    """Requests for the CounterFact suite: ``counterfact.json`` / ``multi_counterfact.json``, or any
    other format whose records give the answer each edit replaces (:func:`load_benchmark`).

    Args:
        path: the JSON file.
        snippets: ``attribute_snippets.json`` (path or the result of :func:`load_attribute_snippets`);
            when given, each request's ``reference_texts`` are the snippets about its new target.
        limit: keep the first ``limit`` requests (all records are still validated).
        format: one of :data:`FORMATS`, or ``"auto"``.
    """
    return load_benchmark(path, suite="counterfact", format=format, snippets=snippets, limit=limit)


def load_zsre(
    path: str | Path, *, target: str = "answers", limit: int | None = None, format: str = "auto",
) -> list[EditRequest]:
    """Requests for the ZsRE suite: ``zsre_mend_eval.json`` / ``zsre_mend_train.json`` read as
    MEMIT/AlphaEdit do, or any other format (:func:`load_benchmark`).

    Args:
        path: the JSON file.
        target: ``"answers"`` (``answers[0]`` is the new target, as MEMIT and AlphaEdit) or ``"alt"``
            (ZsRE files; other formats have one new target).
        limit: keep the first ``limit`` requests (all records are still validated).
        format: one of :data:`FORMATS`, or ``"auto"``.
    """
    if target not in ("answers", "alt"):
        raise DataError(f"target must be 'answers' or 'alt', got {target!r}")
    return load_benchmark(path, suite="zsre", format=format, target=target, limit=limit)


def load_requests(path: str | Path, *, limit: int | None = None) -> list[EditRequest]:
    """A JSON list of objects with :class:`EditRequest`'s fields (``case_id``, ``prompt`` with one
    ``{}``, ``subject``, ``target_new``, optional ``target_true``, prompt lists, ...): the plain
    request stream of ``rlsedit edit --dataset requests``. An unknown field is refused by name; every
    record is validated, then the first ``limit`` are kept."""
    import dataclasses

    _check_limit(limit)
    path = Path(path)
    data = _read_json(path, list)
    fields = {f.name for f in dataclasses.fields(EditRequest)}
    out = []
    for i, raw in enumerate(data):
        where = f"{path.name}: request {i}"
        if not isinstance(raw, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise DataError(f"{where} has unknown fields {unknown}; EditRequest's fields: {sorted(fields)}")
        try:
            out.append(EditRequest(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}))
        except (RequestError, TypeError) as exc:
            raise DataError(f"{where}: {exc}") from exc
    return out if limit is None else out[:limit]
