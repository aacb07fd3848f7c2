"""Loaders for the field's editing benchmarks, from local files, into :class:`EditRequest`.

Formats (the public releases used by ROME, MEMIT and AlphaEdit):

``counterfact.json`` / ``multi_counterfact.json``
    A JSON list of records::

        {"case_id": 0,
         "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                               "relation_id": "P103",
                               "target_new": {"str": "English", "id": "Q1860"},
                               "target_true": {"str": "French", "id": "Q150"}},
         "paraphrase_prompts": [...], "neighborhood_prompts": [...],
         "attribute_prompts": [...], "generation_prompts": [...]}

    Targets are stored without their leading space; the request gets it (" English"), as the
    model would write the word after the prompt. ``attribute_prompts`` and the target ids go to
    ``EditRequest.extra``.

``attribute_snippets.json`` (reference texts for Consistency)
    A JSON list of ``{"relation_id": "P103", "target_id": "Q1860", "samples": [{"name": ..., "text":
    ...}, ...]}``: Wikipedia snippets about subjects whose ``relation_id`` is ``target_id``. A
    CounterFact request's ``reference_texts`` are the texts of all samples under
    ``(relation_id, target_new.id)``.

``idf.npy`` + ``tfidf_vocab.json`` (TF-IDF statistics for Consistency)
    A 1-D float array of inverse document frequencies and a JSON object ``{term: column}``, the
    ``idf_`` and ``vocabulary_`` of a scikit-learn ``TfidfVectorizer`` fitted on the snippets.

``zsre_mend_eval.json``
    A JSON list of ``{"subject", "src", "answers": [...], "alt", "rephrase", "loc", "loc_ans", ...}``.
    As in MEMIT/AlphaEdit: the prompt is ``src`` with the subject replaced by ``{}``, the new target
    is ``answers[0]`` (``target="alt"`` takes ``alt`` instead), the paraphrase is ``rephrase``, and
    the neighbourhood prompt ``loc + "?"`` must keep the answer ``loc_ans``. The record's index in
    the file is its ``case_id``.

Every record is validated; a bad one raises :class:`DataError` naming the file, the record (index
and id) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from llm_experiments.data.requests import EditRequest, RequestError, template_problem
from llm_experiments.data.tfidf import TfidfStats


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


class _Record:
    """Field access with errors that name the file, the record and the field's path."""

    def __init__(self, file: str, index: int, raw, label: str | None = None):
        self.where = f"{file}: record {index}" + (f" ({label})" if label else "")
        if not isinstance(raw, dict):
            raise DataError(f"{self.where}: expected a JSON object, got {type(raw).__name__}")
        self.raw = raw

    def fail(self, field: str, problem: str):
        return DataError(f"{self.where}: field {field!r} {problem}")

    def get(self, field: str, kind: str, *, optional: bool = False):
        node = self.raw
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                if optional:
                    return None
                raise self.fail(field, "is missing")
            node = node[part]
        if kind == "str":
            if not isinstance(node, str) or not node.strip():
                raise self.fail(field, f"must be a non-empty string, got {node!r}")
        elif kind == "str_list":
            if not isinstance(node, list) or not all(isinstance(x, str) and x.strip() for x in node):
                raise self.fail(field, "must be a list of non-empty strings")
            node = tuple(node)
        elif kind == "id":
            if isinstance(node, bool) or not isinstance(node, int | str):
                raise self.fail(field, f"must be an integer or a string, got {node!r}")
        return node


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


def load_counterfact(
    path: str | Path,
    *,
    snippets: str | Path | Mapping[tuple[str, str], tuple[dict, ...]] | None = None,
    limit: int | None = None,
) -> list[EditRequest]:
    """Read ``counterfact.json`` / ``multi_counterfact.json`` into edit requests.

    Args:
        path: the JSON file.
        snippets: ``attribute_snippets.json`` (path or the result of :func:`load_attribute_snippets`);
            when given, each request's ``reference_texts`` are the snippets about its new target.
        limit: keep the first ``limit`` records (all are still validated).
    """
    _check_limit(limit)
    path = Path(path)
    data = _read_json(path, list)
    if snippets is not None and not isinstance(snippets, Mapping):
        snippets = load_attribute_snippets(snippets)
    requests: list[EditRequest] = []
    seen: dict = {}
    for i, raw in enumerate(data):
        label = f"case_id {raw.get('case_id')!r}" if isinstance(raw, dict) and "case_id" in raw else None
        rec = _Record(path.name, i, raw, label)
        case_id = rec.get("case_id", "id")
        if case_id in seen:
            raise rec.fail("case_id", f"repeats record {seen[case_id]}'s id {case_id!r}")
        seen[case_id] = i
        prompt = rec.get("requested_rewrite.prompt", "str")
        problem = template_problem(prompt)
        if problem:
            raise rec.fail("requested_rewrite.prompt", f"{problem}, got {prompt!r}")
        subject = rec.get("requested_rewrite.subject", "str")
        relation_id = rec.get("requested_rewrite.relation_id", "str")
        new_str = rec.get("requested_rewrite.target_new.str", "str")
        new_id = rec.get("requested_rewrite.target_new.id", "id")
        true_str = rec.get("requested_rewrite.target_true.str", "str")
        true_id = rec.get("requested_rewrite.target_true.id", "id")
        paraphrases = rec.get("paraphrase_prompts", "str_list")
        neighborhood = rec.get("neighborhood_prompts", "str_list")
        attribute = rec.get("attribute_prompts", "str_list", optional=True) or ()
        generation = rec.get("generation_prompts", "str_list", optional=True) or ()
        references: tuple[str, ...] = ()
        if snippets is not None:
            references = tuple(s["text"] for s in snippets.get((relation_id, str(new_id)), ()))
        try:
            request = EditRequest(
                case_id=case_id, prompt=prompt, subject=subject, target_new=_with_space(new_str),
                target_true=_with_space(true_str), paraphrase_prompts=paraphrases,
                neighborhood_prompts=neighborhood, generation_prompts=generation,
                reference_texts=references, relation_id=relation_id,
                extra={"target_new_id": new_id, "target_true_id": true_id, "attribute_prompts": attribute},
            )
        except RequestError as exc:
            raise DataError(f"{rec.where}: {exc}") from exc
        requests.append(request)
    return requests if limit is None else requests[:limit]


def load_zsre(path: str | Path, *, target: str = "answers", limit: int | None = None) -> list[EditRequest]:
    """Read ``zsre_mend_eval.json`` into edit requests (MEMIT/AlphaEdit's reading; see the module doc).

    Args:
        path: the JSON file.
        target: ``"answers"`` (``answers[0]`` is the new target, as MEMIT and AlphaEdit) or ``"alt"``.
        limit: keep the first ``limit`` records (all are still validated).
    """
    _check_limit(limit)
    if target not in ("answers", "alt"):
        raise DataError(f"target must be 'answers' or 'alt', got {target!r}")
    path = Path(path)
    data = _read_json(path, list)
    requests: list[EditRequest] = []
    for i, raw in enumerate(data):
        rec = _Record(path.name, i, raw)
        src = rec.get("src", "str")
        subject = rec.get("subject", "str")
        answers = rec.get("answers", "str_list")
        if not answers:
            raise rec.fail("answers", "must hold at least one answer")
        alt = rec.get("alt", "str")
        rephrase = rec.get("rephrase", "str")
        loc = rec.get("loc", "str")
        loc_ans = rec.get("loc_ans", "str")
        if subject not in src:
            raise rec.fail("subject", f"{subject!r} does not occur in src {src!r}")
        if "{" in src or "}" in src:
            raise rec.fail("src", f"contains a brace, which a prompt template cannot hold: {src!r}")
        # Only the first occurrence becomes the slot, so that prompt.format(subject) == src.
        prompt = src.replace(subject, "{}", 1)
        try:
            request = EditRequest(
                case_id=i, prompt=prompt, subject=subject,
                target_new=_with_space(answers[0] if target == "answers" else alt),
                paraphrase_prompts=(rephrase,), neighborhood_prompts=(loc + "?",),
                neighborhood_targets=(_with_space(loc_ans),),
                extra={"answers": answers, "alt": alt},
            )
        except RequestError as exc:
            raise DataError(f"{rec.where}: {exc}") from exc
        requests.append(request)
    return requests if limit is None else requests[:limit]


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
