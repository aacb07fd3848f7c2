"""One edit request and its evaluation prompts, the common currency of loaders, editors and metrics.

CounterFact records, ZsRE records and the synthetic fact world all become :class:`EditRequest`.
A prompt is a template with one ``{}`` where the subject goes ("The mother tongue of {} is");
targets are the continuations, with their leading space (" French").
"""

from __future__ import annotations

from dataclasses import dataclass, field


class RequestError(ValueError):
    """A record that cannot be an edit request; the message names the record and the field."""


def template_problem(prompt) -> str | None:
    """Why ``prompt`` is not a prompt template (one ``{}`` and no other brace), or None if it is one.

    A stray or named brace ("{x}", "{0}", a lone "{") would make ``prompt.format(subject)`` fail or
    put the subject somewhere else than where ``prompt.index("{}")`` says it is.
    """
    if not isinstance(prompt, str) or prompt.count("{}") != 1:
        return "must contain exactly one '{}'"
    rest = prompt.replace("{}", "", 1)
    if "{" in rest or "}" in rest:
        return "must hold no brace besides its one '{}'"
    return None


@dataclass(frozen=True)
class EditRequest:
    """A counterfactual edit "subject's attribute becomes target_new", with its test prompts.

    Attributes:
        case_id: the record's id in its source file (named in every error about it).
        prompt: template with exactly one ``{}`` for the subject, and no other brace.
        subject: the subject string, substituted into ``prompt``.
        target_new: the new object (with its leading space, as the model would write it).
        target_true: the object the model knows before the edit ("" when unknown).
        paraphrase_prompts: full prompts (subject already in) asking the same fact differently.
        neighborhood_prompts: full prompts about other subjects that must keep their answers.
        neighborhood_targets: the answer each neighbourhood prompt must keep; empty means
            ``target_true`` for all (CounterFact's convention).
        generation_prompts: full prompts for free generation (Fluency, Consistency).
        reference_texts: texts about ``target_new`` that generations are compared with (Consistency).
        relation_id: the relation's id (e.g. CounterFact's "P103"), "" when unknown.
    """

    case_id: int | str
    prompt: str
    subject: str
    target_new: str
    target_true: str = ""
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    neighborhood_targets: tuple[str, ...] = ()
    generation_prompts: tuple[str, ...] = ()
    reference_texts: tuple[str, ...] = ()
    relation_id: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"record {self.case_id!r}"
        if isinstance(self.case_id, bool) or not isinstance(self.case_id, int | str):
            raise RequestError(f"{where}: case_id must be an integer or a string")
        problem = template_problem(self.prompt)
        if problem:
            raise RequestError(f"{where}: prompt {problem}, got {self.prompt!r}")
        if not isinstance(self.subject, str) or not self.subject.strip():
            raise RequestError(f"{where}: subject must be a non-empty string, got {self.subject!r}")
        if not isinstance(self.target_new, str) or not self.target_new.strip():
            raise RequestError(f"{where}: target_new must be a non-empty string, got {self.target_new!r}")
        for name in ("paraphrase_prompts", "neighborhood_prompts", "neighborhood_targets",
                     "generation_prompts", "reference_texts"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise RequestError(f"{where}: {name} must be a tuple of strings")
        if self.neighborhood_targets and len(self.neighborhood_targets) != len(self.neighborhood_prompts):
            raise RequestError(
                f"{where}: {len(self.neighborhood_targets)} neighborhood_targets for "
                f"{len(self.neighborhood_prompts)} neighborhood_prompts"
            )

    @property
    def full_prompt(self) -> str:
        """The edit prompt with the subject filled in."""
        return self.prompt.format(self.subject)

    def neighborhood_pairs(self) -> list[tuple[str, str]]:
        """(prompt, answer to keep) for every neighbourhood prompt."""
        targets = self.neighborhood_targets or (self.target_true,) * len(self.neighborhood_prompts)
        return list(zip(self.neighborhood_prompts, targets, strict=True))
