"""A seeded synthetic fact world: fictional people, their attributes, and text about them.

Why this design (docs/fact-world.md has the measurements): an edit at the subject's last token
only works if the model stores a person's attributes in the representation of the person's name.
Short fixed templates ("the capital of S is O .") make a small model read the fact at the final
token instead. Knowledge-augmented biographies (Allen-Zhu and Li, "Physics of Language Models,
Part 3.1", arXiv 2309.14316) make the name's hidden state carry the facts:

- every person has a 2-token name (first name, last name; last names are shared, so the name is
  only identified at its last token) and one object per relation, drawn from a pool shared by many
  people (no attribute is one-to-one);
- a biography has one sentence per attribute, each opening with the full name, each in one of
  several wordings, in shuffled order; every person gets several different renderings;
- a share of the training sequences are question-style prompts ("the birth city of NAME is OBJ .")
  for a subset of the people; the other people's questions are held out;
- some wordings of every relation are never trained: they are the paraphrases.

Everything is drawn from one ``random.Random(seed)``: the same :class:`WorldConfig` gives the same
world, the same texts and the same edit requests, byte for byte.

Formats written by :func:`write_world` (see docs/fact-world.md):

- ``world.json``: the config, the people, the relations (pools, wordings) and the facts;
- ``train.txt``: the training corpus, one sequence a line;
- ``counterfact.json``: one CounterFact record per edit request (``requested_rewrite`` with
  prompt/subject/target_new/target_true/relation_id, ``paraphrase_prompts``,
  ``neighborhood_prompts``, ``attribute_prompts``, ``generation_prompts``);
- ``counterfact_reference_texts.json``: per case, texts about ``target_new`` (Consistency);
- ``zsre.json``: the same edits in the ZsRE format (src, subject, answers, alt, rephrase, loc, loc_ans).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from llm_experiments.data.requests import EditRequest
from rlsedit.config import NON_NEGATIVE_INT, POSITIVE_INT, Config, ConfigError

# Bumped whenever the generator's output for a given config changes (wordings, sampling order):
# caches of models trained on a world record it, so a model is never reused with another world.
WORLD_VERSION = 2


class WorldConfigError(ConfigError):
    """A world configuration that cannot produce a world (the message names the field)."""


# ----------------------------------------------------------------------------------------------
# Relations: id, name, pool kind, sentence wordings (the object follows the wording), question.
# The first wordings are trained; the last ``heldout_wordings`` of each relation are held out.
# The last two wordings (held out by default) recombine words of the relation's trained wordings
# and question: a paraphrase made of words the model never saw in training cannot be understood
# (a first version with new words, "{} hails from", reached 22% on held-out wordings while the
# question form of the same facts reached 99.8%).
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelationSpec:
    """A relation's fixed text: its wordings (each a template with ``{}`` for the name) and question."""

    relation_id: str
    name: str
    wordings: tuple[str, ...]
    question: str


RELATION_SPECS: tuple[RelationSpec, ...] = (
    RelationSpec("P19", "birth city", (
        "{} was born in", "{} came into the world in", "{} entered life in", "{} was raised from birth in",
        "{} came into life in", "{} was born into the world in",
    ), "the birth city of {} is"),
    RelationSpec("P69", "university", (
        "{} studied at", "{} graduated from", "{} attended", "{} received a degree from",
        "{} studied at the university of", "{} received a degree at",
    ), "the university of {} is"),
    RelationSpec("P101", "field of work", (
        "{} works in the field of", "{} specializes in", "{} has a career in", "{} does research on",
        "{} has a career in the field of", "{} does research in",
    ), "the field of {} is"),
    RelationSpec("P108", "employer", (
        "{} works for", "{} is employed by", "{} has a job at", "{} earns a salary from",
        "{} earns a salary at", "{} works for the employer",
    ), "the employer of {} is"),
    RelationSpec("P103", "native language", (
        "{} speaks the language", "{} grew up speaking", "{} has the mother tongue", "{} writes letters in",
        "{} speaks the native language", "{} writes letters in the language",
    ), "the native language of {} is"),
    RelationSpec("P27", "citizenship", (
        "{} is a citizen of", "{} holds a passport from", "{} has the nationality of", "{} votes in elections of",
        "{} is a citizen of the country", "{} holds a passport of",
    ), "the country of {} is"),
)

_RELATION_SUFFIXES = {  # object names look like what they are (one word, one token)
    "P19": ("ton", "burg", "ville", "field", "port"),
    "P69": ("ia", "ford", "stead", "mont", "wick"),
    "P101": ("ology", "ics", "ometry", "onomy", "istry"),
    "P108": ("corp", "tek", "works", "soft", "dyne"),
    "P103": ("ish", "ese", "ian", "ic", "i"),
    "P27": ("land", "stan", "ria", "onia", "ador"),
}
_SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")


@dataclass(frozen=True)
class WorldConfig(Config):
    """Sizes and seed of a fact world. Defaults: the 300-person pilot of TINY-MODELS.md.

    Attributes:
        n_people: number of fictional people (each knows ``n_relations`` facts).
        n_relations: attributes per person (the first ``n_relations`` of :data:`RELATION_SPECS`).
        pool_size: objects per relation; people share them (no attribute is one-to-one).
        renderings: different biographies per person in the training corpus.
        heldout_wordings: wordings per relation never trained (the paraphrases), out of 6.
        question_fraction: share of people whose question-style prompts are trained (0.25 gives
            about 20% question sequences); the others' questions are held out.
        seed: the one seed everything is drawn from.
    """

    n_people: int = 300
    n_relations: int = 5
    pool_size: int = 40
    renderings: int = 5
    heldout_wordings: int = 2
    question_fraction: float = 0.25
    seed: int = 0

    error = WorldConfigError

    def validate(self) -> None:
        self.require(("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                     "n_people", "n_relations", "pool_size", "renderings", "heldout_wordings", "seed")
        if self.n_people < 4:
            raise self.bad("n_people", "must be >= 4 (neighbourhood prompts need other people)")
        if not 1 <= self.n_relations <= len(RELATION_SPECS):
            raise self.bad("n_relations", f"must be between 1 and {len(RELATION_SPECS)}")
        if self.pool_size < 2:
            raise self.bad("pool_size", "must be >= 2 (an edit needs an object other than the true one)")
        self.require(POSITIVE_INT, "renderings")
        n_wordings = len(RELATION_SPECS[0].wordings)
        if not 1 <= self.heldout_wordings <= n_wordings - 1:
            raise self.bad("heldout_wordings",
                           f"must be between 1 and {n_wordings - 1} (at least one wording is trained)")
        if isinstance(self.question_fraction, bool) or not isinstance(self.question_fraction, int | float):
            raise self.bad("question_fraction", "must be a number")
        if not 0.0 < self.question_fraction < 1.0:
            raise self.bad("question_fraction", "must be strictly between 0 and 1 (some trained, some held out)")
        self.require(NON_NEGATIVE_INT, "seed")

    @property
    def n_facts(self) -> int:
        return self.n_people * self.n_relations

    def digest(self) -> str:
        """A short hash of the config (worlds are fully determined by it)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Relation:
    relation_id: str
    name: str
    pool: tuple[str, ...]
    trained_wordings: tuple[str, ...]
    heldout_wordings: tuple[str, ...]
    question: str


@dataclass(frozen=True)
class Fact:
    """Person ``person`` (index) has object ``obj`` for relation index ``relation``."""

    person: int
    relation: int
    obj: str


class World:
    """The people, relations and facts of one :class:`WorldConfig`, and the texts drawn from them."""

    def __init__(self, config: WorldConfig):
        self.config = config
        rng = random.Random(config.seed)
        used: set[str] = set(template_words())

        def new_word(n_syll: tuple[int, int], suffix: str = "") -> str:
            for _ in range(10_000):
                w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(*n_syll))) + suffix
                w = w.capitalize()
                if w.lower() not in used:
                    used.add(w.lower())
                    return w
            raise WorldConfigError("ran out of distinct words; lower n_people or pool_size")  # pragma: no cover

        n_names = max(3, math.ceil(2 * math.sqrt(config.n_people)))
        self.first_names = tuple(new_word((2, 2)) for _ in range(n_names))
        self.last_names = tuple(new_word((2, 3)) for _ in range(n_names))
        pairs = [(f, l) for f in range(n_names) for l in range(n_names)]
        chosen = rng.sample(pairs, config.n_people)
        self.people: tuple[str, ...] = tuple(f"{self.first_names[f]} {self.last_names[l]}" for f, l in chosen)

        relations = []
        for spec in RELATION_SPECS[: config.n_relations]:
            suffixes = _RELATION_SUFFIXES[spec.relation_id]
            pool = tuple(new_word((1, 2), suffixes[i % len(suffixes)]) for i in range(config.pool_size))
            n_train = len(spec.wordings) - config.heldout_wordings
            relations.append(Relation(spec.relation_id, spec.name, pool, spec.wordings[:n_train],
                                      spec.wordings[n_train:], spec.question))
        self.relations: tuple[Relation, ...] = tuple(relations)

        # objects[p][r]: person p's object for relation r, uniform over the pool
        self.objects: tuple[tuple[str, ...], ...] = tuple(
            tuple(rng.choice(rel.pool) for rel in self.relations) for _ in range(config.n_people)
        )
        order = list(range(config.n_people))
        rng.shuffle(order)
        n_q = max(1, round(config.question_fraction * config.n_people))
        self.question_people: frozenset[int] = frozenset(order[:n_q])
        self._rng_state = rng.getstate()  # texts are drawn after the world, from this state

        self._holders: dict[tuple[int, str], list[int]] = {}
        for p in range(config.n_people):
            for r in range(config.n_relations):
                self._holders.setdefault((r, self.objects[p][r]), []).append(p)

    # -- facts ------------------------------------------------------------------------------------

    def facts(self) -> list[Fact]:
        """Every fact, person-major."""
        return [Fact(p, r, self.objects[p][r]) for p in range(self.config.n_people)
                for r in range(self.config.n_relations)]

    def holders(self, relation: int, obj: str) -> list[int]:
        """The people whose object for ``relation`` is ``obj``."""
        return list(self._holders.get((relation, obj), []))

    def vocabulary(self) -> list[str]:
        """Every word that occurs in the world's texts (for a word-level tokenizer), in a fixed order."""
        words = list(template_words())
        words += list(self.first_names) + list(self.last_names)
        for rel in self.relations:
            words += list(rel.pool)
        seen: dict[str, None] = {}
        for w in words:
            seen.setdefault(w, None)
        return list(seen)

    # -- text -------------------------------------------------------------------------------------

    def sentence(self, person: int, relation: int, wording: str, obj: str | None = None) -> str:
        obj = self.objects[person][relation] if obj is None else obj
        return f"{wording.format(self.people[person])} {obj} ."

    def biography(self, person: int, rng: random.Random) -> str:
        """One rendering: every attribute once, each in a random trained wording, in random order."""
        rels = list(range(self.config.n_relations))
        rng.shuffle(rels)
        return " ".join(self.sentence(person, r, rng.choice(self.relations[r].trained_wordings)) for r in rels)

    def question(self, person: int, relation: int) -> str:
        return f"{self.relations[relation].question.format(self.people[person])} {self.objects[person][relation]} ."

    def training_texts(self) -> list[str]:
        """The training corpus: ``renderings`` biographies per person plus the trained questions, shuffled."""
        rng = random.Random()
        rng.setstate(self._rng_state)
        texts = [self.biography(p, rng) for p in range(self.config.n_people) for _ in range(self.config.renderings)]
        texts += [self.question(p, r) for p in sorted(self.question_people) for r in range(self.config.n_relations)]
        rng.shuffle(texts)
        return texts

    def probes(self, kind: str, *, limit: int | None = None) -> list[tuple[str, str]]:
        """(prompt, object) pairs that test the facts, one per fact (the first ``limit`` facts).

        kind: ``"trained"`` (one trained wording per fact, rotating with the person's index),
        ``"heldout"`` (one held-out wording, rotating likewise) or ``"question"`` (the question
        form, only for people whose questions were never trained).
        """
        out = []
        for fact in self.facts():
            rel = self.relations[fact.relation]
            name = self.people[fact.person]
            if kind == "trained":
                wordings = rel.trained_wordings
            elif kind == "heldout":
                wordings = rel.heldout_wordings
            elif kind == "question":
                if fact.person in self.question_people:
                    continue
                wordings = (rel.question,)
            else:
                raise ValueError(f"unknown probe kind {kind!r}: use 'trained', 'heldout' or 'question'")
            out.append((wordings[fact.person % len(wordings)].format(name), fact.obj))
            if limit is not None and len(out) >= limit:
                break
        return out

    # -- edit requests ----------------------------------------------------------------------------

    def edit_requests(self, n_edits: int | None = None, *, seed: int = 0,
                      n_neighbors: int = 10, n_references: int = 5) -> list[EditRequest]:
        """Counterfactual edits of distinct known facts, in a seeded random order.

        Each request: prompt in a trained wording; target_true is the world's fact; target_new is
        another object of the same relation's pool; paraphrases are the held-out wordings;
        neighbourhood prompts ask other people who hold the same true object (so they must keep
        ``target_true``); generation prompts start with the name; reference texts are sentences
        about people who hold ``target_new``. ``extra`` holds the question form, the person and
        relation indices, and CounterFact's ``attribute_prompts``.
        """
        facts = self.facts()
        if n_edits is None:
            n_edits = len(facts)
        if not 1 <= n_edits <= len(facts):
            raise WorldConfigError(f"n_edits={n_edits}: the world has {len(facts)} facts (1 to {len(facts)})")
        rng = random.Random(f"edits-{self.config.seed}-{seed}")
        order = rng.sample(range(len(facts)), n_edits)
        requests = []
        for case_id, i in enumerate(order):
            fact = facts[i]
            rel = self.relations[fact.relation]
            name = self.people[fact.person]
            new = rng.choice([o for o in rel.pool if o != fact.obj])
            prompt = rng.choice(rel.trained_wordings)
            neighbors = [p for p in self.holders(fact.relation, fact.obj) if p != fact.person]
            neighbors = rng.sample(neighbors, min(n_neighbors, len(neighbors)))
            new_holders = self.holders(fact.relation, new)
            attr = rng.sample(new_holders, min(n_neighbors, len(new_holders)))
            refs = rng.sample(new_holders, min(n_references, len(new_holders)))
            requests.append(EditRequest(
                case_id=case_id,
                prompt=prompt,
                subject=name,
                target_new=" " + new,
                target_true=" " + fact.obj,
                paraphrase_prompts=tuple(w.format(name) for w in rel.heldout_wordings),
                neighborhood_prompts=tuple(rng.choice(rel.trained_wordings).format(self.people[p])
                                           for p in neighbors),
                generation_prompts=(name, *(w.format(name) for w in rel.trained_wordings[:2])),
                reference_texts=tuple(self.sentence(p, fact.relation, rng.choice(rel.trained_wordings))
                                      for p in refs),
                relation_id=rel.relation_id,
                extra={
                    "person": fact.person,
                    "relation": fact.relation,
                    "question": rel.question.format(name),
                    "attribute_prompts": [rng.choice(rel.trained_wordings).format(self.people[p]) for p in attr],
                },
            ))
        return requests


def template_words() -> list[str]:
    """Every word of the relations' wordings and questions, plus "." and "?" (no names, no objects)."""
    words: dict[str, None] = {".": None, "?": None}
    for spec in RELATION_SPECS:
        for text in (*spec.wordings, spec.question):
            for w in text.replace("{}", " ").split():
                words.setdefault(w, None)
    return list(words)


# ----------------------------------------------------------------------------------------------
# File formats
# ----------------------------------------------------------------------------------------------

def counterfact_record(req: EditRequest) -> dict:
    """A CounterFact-format record (targets without their leading space, as in CounterFact).

    Target ids are ``"<relation_id>:<object>"`` (CounterFact's are Wikidata ids), so the file reads
    back with :func:`llm_experiments.data.loaders.load_counterfact`.
    """
    return {
        "case_id": req.case_id,
        "requested_rewrite": {
            "prompt": req.prompt,
            "subject": req.subject,
            "relation_id": req.relation_id,
            "target_new": {"str": req.target_new.strip(), "id": f"{req.relation_id}:{req.target_new.strip()}"},
            "target_true": {"str": req.target_true.strip(), "id": f"{req.relation_id}:{req.target_true.strip()}"},
        },
        "paraphrase_prompts": list(req.paraphrase_prompts),
        "neighborhood_prompts": list(req.neighborhood_prompts),
        "attribute_prompts": list(req.extra.get("attribute_prompts", [])),
        "generation_prompts": list(req.generation_prompts),
    }


def zsre_record(req: EditRequest, loc: EditRequest) -> dict:
    """A ZsRE-format record; ``loc`` is another request whose question is the locality probe."""
    return {
        "case_id": req.case_id,
        "subject": req.subject,
        "src": req.extra["question"],
        "answers": [req.target_true.strip()],
        "alt": req.target_new.strip(),
        "rephrase": req.paraphrase_prompts[0],
        "loc": loc.extra["question"],
        "loc_ans": loc.target_true.strip(),
    }


def write_world(world: World, out: str | Path, *, n_edits: int | None = None, edit_seed: int = 0) -> dict[str, Path]:
    """Write the world's files under ``out`` (created if needed) and return their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reqs = world.edit_requests(n_edits, seed=edit_seed)
    paths = {name: out / name for name in ("world.json", "train.txt", "counterfact.json",
                                           "counterfact_reference_texts.json", "zsre.json")}
    world_doc = {
        "config": world.config.to_dict(),
        "config_digest": world.config.digest(),
        "world_version": WORLD_VERSION,
        "edit_seed": edit_seed,
        "people": list(world.people),
        "question_people": sorted(world.question_people),
        "relations": [
            {"relation_id": r.relation_id, "name": r.name, "pool": list(r.pool),
             "trained_wordings": list(r.trained_wordings), "heldout_wordings": list(r.heldout_wordings),
             "question": r.question}
            for r in world.relations
        ],
        "facts": [[o for o in row] for row in world.objects],
    }
    paths["world.json"].write_text(json.dumps(world_doc, indent=1))
    paths["train.txt"].write_text("\n".join(world.training_texts()) + "\n")
    paths["counterfact.json"].write_text(json.dumps([counterfact_record(r) for r in reqs], indent=1))
    paths["counterfact_reference_texts.json"].write_text(json.dumps(
        [{"case_id": r.case_id, "relation_id": r.relation_id, "target_new": r.target_new.strip(),
          "texts": list(r.reference_texts)} for r in reqs], indent=1))
    # the locality probe of case i is case i+1's question (another person, usually another relation)
    paths["zsre.json"].write_text(json.dumps(
        [zsre_record(r, reqs[(i + 1) % len(reqs)]) for i, r in enumerate(reqs)], indent=1))
    return paths


def load_world(path: str | Path) -> World:
    """Rebuild the world written in ``path`` (a directory holding world.json, or the file itself).

    The world is regenerated from its config; the stored people and facts are checked against it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "world.json"

    def bad(why: str) -> WorldConfigError:
        return WorldConfigError(f"{path}: {why}")

    from llm_experiments.data.loaders import JSONFileError, read_json_file

    try:
        doc = read_json_file(path)
    except JSONFileError as exc:
        raise bad(exc.why) from exc
    if not isinstance(doc, dict):
        raise bad(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("world_version") != WORLD_VERSION:
        raise bad(f"world_version {doc.get('world_version')!r}, this generator writes "
                  f"{WORLD_VERSION}; regenerate it with `rlsedit world`")
    for field, kind in (("config", dict), ("people", list), ("facts", list)):
        if not isinstance(doc.get(field), kind):
            raise bad(f"field {field!r} must be a JSON {'object' if kind is dict else 'list'}, "
                      f"got {type(doc.get(field)).__name__}" + ("" if field in doc else " (missing)"))
    try:
        config = WorldConfig.from_dict(doc["config"])
    except WorldConfigError as exc:
        raise bad(f"field 'config': {exc}") from exc
    if len(doc["people"]) != config.n_people or len(doc["facts"]) != config.n_people:
        # checked before generating: a damaged config must not make the loader build a huge world
        raise bad(f"field 'config' asks for {config.n_people} people, the file lists {len(doc['people'])} "
                  f"people and {len(doc['facts'])} rows of facts")
    try:
        world = World(config)
    except WorldConfigError as exc:
        raise bad(f"field 'config': {exc}") from exc
    if list(world.people) != doc["people"] or [list(r) for r in world.objects] != doc["facts"]:
        raise WorldConfigError(f"{path}: its people or facts differ from what its config generates "
                               "(written by another version of the generator?)")
    return world
