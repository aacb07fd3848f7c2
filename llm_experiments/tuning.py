"""The editing benchmark's regimes, its tuning protocol, and the settings the protocol chose.

docs/edit-benchmark.md ("How the settings were chosen") states the protocol in prose; this module
is that protocol as code, so that ``rlsedit tune`` reruns it and ``rlsedit compare`` reports with
what it chose. Nothing here edits a model: every run is an ``rlsedit edit`` command line
(:func:`edit_argv`), run by the command modules.

Regimes. A regime is a tiny model's size and a stream: ``edits / d_k`` (edits per edited layer
over the key dimension) is what separates the paper's setting (Llama-3-8B: 10,000 edits, five
layers of d_k = 14,336, 0.7 per layer) from a crowded one (the earlier 10,000 edits on one layer of
d_k = 2,048: 4.9). ``matched`` and ``crowded`` share the world, the model's hidden size and the
stream (the same 700 edits); only the MLP width d_ff (the key dimension) differs. ``demo`` is the
README's first command: small enough to train and run in minutes on two CPU cores.

The split. Tuning runs use world seed :data:`TUNING_WORLD_SEED` (its own tiny models, trained
and cached like any other) and edit seeds :data:`TUNING_EDIT_SEEDS`; reported runs use world
seed :data:`REPORT_WORLD_SEED` and edit seeds :data:`REPORT_EDIT_SEEDS`. No seed is in both
(:func:`check_split`).

The procedure, the same for every editor, declared before any tuning run:

1. *Target values* (shared by all editors): each of :data:`VALUE_CANDIDATES` is run with every
   editor at its reference knobs (:data:`REFERENCE`) on the first batch of each tuning stream
   (one write into the unedited model). Criterion: the mean over editors and tuning streams of
   :func:`criterion`.
2. *Editor knobs*: with the chosen values, each editor runs every point of its grid
   (:data:`EDITOR_GRIDS`, four points each: the same budget) on the whole tuning stream.
   Criterion: the mean over tuning streams of :func:`criterion`. When the best point lies on the
   grid's edge, one more point beyond that edge is run (:func:`extension`) and takes part in the
   choice (added before any stage-2 result was seen, after stage 1 showed that AlphaEdit's
   reference point writes nothing on two of the three models).

:func:`criterion` is MEMIT's Score, the harmonic mean of Efficacy, Generalization and Specificity
after the stream (protocol ``after_stream``). The highest mean wins; candidates within
:data:`TIE` points of the best count as tied, and a tie goes to the cheaper value candidate (fewer
optimisation steps) or the earlier grid point.

Rules rather than numbers, so that a setting chosen on the tuning model carries to another model
or stream: the anchor weight is ``n_w = r * n_edits`` (the paper's form: 15,000 for 10,000 edits is
``r = 1.5``); AlphaEdit's null-space threshold is the ``q``-quantile of the eigenvalues of the edited
layer's E[kk^T] (the null space holds about a fraction ``q`` of the directions); FT's entrywise
bound is ``c`` times the mean ``|W0|`` entry of the edited matrix (0: none).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from llm_experiments.table import run_values

EDITORS = ("rlsedit", "memit", "alphaedit", "rome", "ft")

TUNING_WORLD_SEED = 1
TUNING_EDIT_SEEDS = (100,)
REPORT_WORLD_SEED = 0
REPORT_EDIT_SEEDS = (0, 1, 2)
#: score points within which two candidates count as tied
TIE = 0.5


class TuningError(ValueError):
    """A tuning or comparison that cannot be made as asked (the message names what is wrong)."""


@dataclass(frozen=True)
class Regime:
    """A tiny model's size and the stream edited into it.

    Attributes:
        name, description: how tables and commands name it.
        people, hidden, d_ff: the tiny model (``rlsedit edit --people --hidden --d-ff``; 4 layers, layer 0
            edited). ``d_ff`` is the key dimension d_k.
        n_edits, batch_size: the stream.
        cohorts: early-edit cohorts as numbers of first batches (``--cohorts``).
        generation_every: reported runs' Fluency and Consistency on every k-th edit (0: none).
        report_seeds: the edit seeds ``rlsedit compare`` reports by default.
    """

    name: str
    description: str
    people: int
    hidden: int
    d_ff: int
    n_edits: int
    batch_size: int
    cohorts: tuple[int, ...]
    generation_every: int
    report_seeds: tuple[int, ...] = REPORT_EDIT_SEEDS

    @property
    def ratio(self) -> float:
        """Edits per edited layer over the key dimension."""
        return self.n_edits / self.d_ff

    def model_argv(self, world_seed: int) -> list[str]:
        return ["--people", str(self.people), "--hidden", str(self.hidden), "--d-ff", str(self.d_ff),
                "--world-seed", str(world_seed)]


REGIMES: dict[str, Regime] = {r.name: r for r in (
    Regime("matched", "the paper's regime: 700 edits on d_k = 1024 (0.68 per key dimension)",
           people=300, hidden=64, d_ff=1024, n_edits=700, batch_size=100, cohorts=(1, 3), generation_every=10),
    Regime("crowded", "a crowded layer: the same 700 edits on d_k = 144 (4.9 per key dimension)",
           people=300, hidden=64, d_ff=144, n_edits=700, batch_size=100, cohorts=(1, 3), generation_every=10),
    Regime("demo", "the README's demo: 128 edits on d_k = 192 (0.67 per key dimension)",
           people=60, hidden=64, d_ff=192, n_edits=128, batch_size=16, cohorts=(2, 4), generation_every=0,
           report_seeds=(0, 1, 2, 3, 4)),
)}

#: stage 1: the target-value settings tried (``rlsedit edit``'s value options). The first is the
#: authors' Llama-3-8B setting; the others keep no weight decay and vary steps / lr, the clamp and KL.
VALUE_CANDIDATES: tuple[dict, ...] = (
    {"name": "authors", "steps": 25, "lr": 0.1, "clamp": 0.75, "kl": 0.0625, "weight_decay": 0.5},
    {"name": "short", "steps": 30, "lr": 0.5, "clamp": 1.5, "kl": 0.0625, "weight_decay": 0.0},
    {"name": "long", "steps": 60, "lr": 0.3, "clamp": 1.5, "kl": 0.0625, "weight_decay": 0.0},
    {"name": "long-wide", "steps": 60, "lr": 0.3, "clamp": 3.0, "kl": 0.0625, "weight_decay": 0.0},
    {"name": "long-kl", "steps": 60, "lr": 0.3, "clamp": 1.5, "kl": 1.0, "weight_decay": 0.0},
)

_PRIOR_GRID = ({"r": 0.01, "lam": 1e-3}, {"r": 0.1, "lam": 1e-3}, {"r": 1.0, "lam": 1e-3}, {"r": 0.1, "lam": 1.0})
#: stage 2: each editor's knobs, four points each (the same budget). r: n_w = r * n_edits; q: AlphaEdit's
#: null space is the eigen-directions of E[kk^T] below its q-quantile; c: FT's bound, c * mean |W0| (0: none).
EDITOR_GRIDS: dict[str, tuple[dict, ...]] = {
    "rlsedit": _PRIOR_GRID,
    "memit": _PRIOR_GRID,
    "rome": _PRIOR_GRID,
    "alphaedit": ({"q": 0.75, "l2": 10.0}, {"q": 0.9, "l2": 10.0}, {"q": 0.97, "l2": 10.0}, {"q": 0.9, "l2": 1.0}),
    "ft": ({"steps": 25, "lr": 1.0, "c": 0.0}, {"steps": 10, "lr": 1.0, "c": 0.0},
           {"steps": 25, "lr": 0.5, "c": 0.0}, {"steps": 25, "lr": 1.0, "c": 1.0}),
}
#: AlphaEdit's first grid, replaced after its stage-2 runs: on the demo model no point of it wrote
#: anything (Score 0 throughout), on the crowded one its Score still rose at the grid's edge. Its runs
#: stay in the tuning records as superseded; the choice is made on the grid above.
SUPERSEDED_GRIDS: dict[str, tuple[dict, ...]] = {
    "alphaedit": ({"q": 0.25, "l2": 10.0}, {"q": 0.5, "l2": 10.0}, {"q": 0.75, "l2": 10.0}, {"q": 0.5, "l2": 1.0}),
}
#: stage 1's knobs: each grid's second point (AlphaEdit's: its first grid's, the one stage 1 ran with)
REFERENCE: dict[str, dict] = {e: (SUPERSEDED_GRIDS.get(e) or grid)[1] for e, grid in EDITOR_GRIDS.items()}

#: what ``rlsedit tune`` chose for each regime (docs/edit_benchmark_data/tuning_<regime>.json holds the
#: runs; tests/llm_experiments/test_tuning.py checks that selecting from them gives exactly this).
TUNED: dict[str, dict] = {
    "matched": {
        "values": {"name": "long-wide", "steps": 60, "lr": 0.3, "clamp": 3.0, "kl": 0.0625, "weight_decay": 0.0},
        "rlsedit": {"r": 1.0, "lam": 0.001}, "memit": {"r": 1.0, "lam": 0.001}, "rome": {"r": 0.01, "lam": 0.001},
        "alphaedit": {"q": 0.97, "l2": 10.0}, "ft": {"steps": 25, "lr": 1.0, "c": 0.0},
    },
    "demo": {
        "values": {"name": "short", "steps": 30, "lr": 0.5, "clamp": 1.5, "kl": 0.0625, "weight_decay": 0.0},
        "rlsedit": {"r": 0.1, "lam": 0.001}, "memit": {"r": 0.1, "lam": 0.001}, "rome": {"r": 0.1, "lam": 0.001},
        "alphaedit": {"q": 0.9, "l2": 0.1}, "ft": {"steps": 10, "lr": 1.0, "c": 0.0},
    },
    "crowded": {
        "values": {"name": "long-wide", "steps": 60, "lr": 0.3, "clamp": 3.0, "kl": 0.0625, "weight_decay": 0.0},
        "rlsedit": {"r": 0.001, "lam": 0.001}, "memit": {"r": 0.01, "lam": 0.001}, "rome": {"r": 0.01, "lam": 0.001},
        "alphaedit": {"q": 0.9, "l2": 0.1}, "ft": {"steps": 10, "lr": 1.0, "c": 0.0},
    },
}


def check_split() -> None:
    """The tuning and reported seeds are disjoint (a reported stream never chose a setting)."""
    if TUNING_WORLD_SEED == REPORT_WORLD_SEED:
        raise TuningError(f"tuning and reports share world seed {TUNING_WORLD_SEED}")
    shared = set(TUNING_EDIT_SEEDS) & set(REPORT_EDIT_SEEDS)
    if shared:
        raise TuningError(f"tuning and reports share edit seeds {sorted(shared)}")


def criterion(summary: dict) -> float:
    """MEMIT's Score of one run: the harmonic mean of Efficacy, Generalization, Specificity (%)."""
    return run_values(summary)["score"]


# ------------------------------------------------------------------------------------------------
# What a rule needs to know about a model: the spectrum of E[kk^T] and the scale of W0
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelFacts:
    """The edited layer's E[kk^T] eigenvalues (ascending) and mean |W0| entry, read from the caches."""

    eigenvalues: tuple[float, ...]
    w0_mean_abs: float

    def quantile(self, q: float) -> float:
        """The q-quantile of the eigenvalues (linear interpolation, as numpy's default)."""
        import numpy as np

        return float(np.quantile(np.asarray(self.eigenvalues), q))

    def to_dict(self) -> dict:
        return {"eigenvalues_min": self.eigenvalues[0], "eigenvalues_max": self.eigenvalues[-1],
                "quartiles": [self.quantile(q) for q in (0.25, 0.5, 0.75)], "d_k": len(self.eigenvalues),
                "w0_mean_abs": self.w0_mean_abs}


def model_facts(model_dir: str | Path, stats_dir: str | Path, layer: int = 0) -> ModelFacts:
    """Read the facts of ``layer``'s edited module from a model's directory and the statistics cache.

    The statistic is the one in ``stats_dir`` computed for this model (its config and weights, by
    :func:`llm_experiments.edit.statistics.load_second_moments`), whichever other models' files the
    cache also holds.
    """
    import torch
    from transformers.utils import logging as hf_logging

    from llm_experiments.edit.statistics import StatsCacheMissError, load_second_moments
    from llm_experiments.model.loading import ModelPathError, load_model
    from llm_experiments.model.sites import site_for

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a read between runs: no loading bar in the middle of a report
    try:
        model, _ = load_model(model_dir, load_tokenizer=False)
    except ModelPathError as exc:
        raise TuningError(str(exc)) from exc
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    try:
        moment = load_second_moments(model, [layer], stats_dir)[layer]
    except StatsCacheMissError as exc:
        raise TuningError(f"no cached E[kk^T] for {model_dir}: {exc} (run an editor with statistics first)") from exc
    weight = model.get_submodule(site_for(model).module_path(layer)).weight.detach()
    m = moment.moment().double()
    eig = torch.linalg.eigvalsh((m + m.T) / 2)
    return ModelFacts(tuple(float(x) for x in eig), float(weight.abs().mean()))


# ------------------------------------------------------------------------------------------------
# Settings -> `rlsedit edit` options
# ------------------------------------------------------------------------------------------------

def value_argv(values: dict) -> list[str]:
    """The target-value options of one candidate."""
    return ["--value-steps", str(values["steps"]), "--value-lr", repr(float(values["lr"])),
            "--clamp-factor", repr(float(values["clamp"])), "--kl-factor", repr(float(values["kl"])),
            "--value-weight-decay", repr(float(values["weight_decay"]))]


def knob_argv(editor: str, knobs: dict, n_edits: int, facts: ModelFacts | None) -> list[str]:
    """The editor's own options from its knobs, the rules applied to this stream and model."""
    if editor in ("rlsedit", "memit", "rome"):
        return ["--lam", repr(float(knobs["lam"])), "--mu", "1.0", "--n-w", repr(float(knobs["r"]) * n_edits)]
    if editor == "alphaedit":
        if facts is None:
            raise TuningError("alphaedit's threshold rule needs the model's E[kk^T] (ModelFacts)")
        # 6 significant digits: the same threshold whatever rounding the eigensolver's threads give
        return ["--l2", repr(float(knobs["l2"])), "--threshold", f"{facts.quantile(float(knobs['q'])):.6g}"]
    if editor == "ft":
        if knobs["c"] and facts is None:
            raise TuningError("ft's bound rule needs the model's W0 (ModelFacts)")
        bound = float(knobs["c"]) * facts.w0_mean_abs if knobs["c"] else 0.0
        return ["--ft-steps", str(knobs["steps"]), "--ft-lr", repr(float(knobs["lr"])),
                "--ft-norm-bound", f"{bound:.6g}"]
    raise TuningError(f"unknown editor {editor!r}; expected one of {EDITORS}")


def knob_slug(knobs: dict) -> str:
    """A run folder's name for a grid point: ``r0.1-lam0.001``, ``q0.9-l210``, ``steps25-lr1-c0``."""
    return "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in knobs.items())


def current_rows(editor: str, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split an editor's stage-2 rows into those of its current grid (and edge extension) and the
    superseded ones (run with a grid that was replaced): ``(current, superseded)``."""
    grid = EDITOR_GRIDS[editor]
    current, old = [], []
    for r in rows:
        i = r["point"]
        fits = (i < len(grid) and r["knobs"] == grid[i]) or (i == len(grid) and any(
            r["knobs"] == extension(editor, g) for g in grid))
        (current if fits else old).append(r)
    return current, old


def needs_facts(editor: str, knobs: dict) -> bool:
    return editor == "alphaedit" or (editor == "ft" and bool(knobs.get("c")))


def edit_argv(regime: Regime, editor: str, values: dict, knobs: dict, *, world_seed: int, edit_seed: int,
              out: str | Path, facts: ModelFacts | None = None, n_edits: int | None = None,
              along: bool = False, generation_every: int = 0, data: str | None = None,
              cache: str | None = None, threads: int = 1) -> list[str]:
    """The ``rlsedit edit`` command line of one run (without the leading ``edit``).

    ``n_edits`` shortens the stream (stage 1: the first batch); the rules still use the regime's
    length, so a stage-1 write is the tuning stream's first write. ``data``: a ZsRE file of the
    world's edits (:func:`write_zsre`) instead of the world in CounterFact form."""
    argv = [*regime.model_argv(world_seed), "--edit-seed", str(edit_seed), "--editor", editor,
            "--n-edits", str(n_edits or regime.n_edits), "--batch-size", str(regime.batch_size),
            *value_argv(values), *knob_argv(editor, knobs, regime.n_edits, facts),
            "--threads", str(threads), "--save-every", "0", "--no-progress", "--out", str(out)]
    if cache is not None:
        argv += ["--cache", str(cache)]
    if data is not None:
        argv += ["--data", str(data), "--dataset", "zsre", "--no-generation"]
    elif generation_every:
        argv += ["--generation-every", str(generation_every)]
    else:
        argv += ["--no-generation"]
    if along:
        argv += ["--along-stream", "--cohorts", ",".join(str(c) for c in regime.cohorts)]
    return argv


def write_zsre(regime: Regime, world_seed: int, edit_seed: int, path: str | Path) -> Path:
    """The world's edit stream in ZsRE form, with the counterfactual object as the edit target.

    ``rlsedit world`` writes ZsRE records with the true object as ``answers`` (what ZsRE calls the
    answer) and the counterfactual as ``alt``; ``rlsedit edit --dataset zsre`` edits toward
    ``answers[0]`` (MEMIT's and AlphaEdit's reading of ZsRE). The world's model already knows the
    true object, so here ``answers`` is the counterfactual: the same edits as the CounterFact form,
    asked as questions ("the birth city of NAME is"), scored by ZsRE's token accuracy."""
    from llm_experiments.data.world import World, WorldConfig, zsre_record

    world = World(WorldConfig(n_people=regime.people, seed=world_seed))
    reqs = world.edit_requests(regime.n_edits, seed=edit_seed)
    records = []
    for i, r in enumerate(reqs):
        rec = zsre_record(r, reqs[(i + 1) % len(reqs)])
        rec["answers"], rec["alt"] = [r.target_new.strip()], r.target_true.strip()
        records.append(rec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


# ------------------------------------------------------------------------------------------------
# Selection
# ------------------------------------------------------------------------------------------------

def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def select_values(rows: list[dict]) -> dict:
    """Stage 1's choice from its rows ``{"candidate", "editor", "edit_seed", "score"}``.

    Every candidate must have a score for every editor and seed that any candidate has (a missing
    run would bias the mean). Returns ``{"chosen": name, "means": {name: mean score}}``."""
    names = [c["name"] for c in VALUE_CANDIDATES]
    cells = {(r["candidate"], r["editor"], r["edit_seed"]): r["score"] for r in rows}
    pairs = sorted({(e, s) for _, e, s in cells})
    means = {}
    for name in names:
        missing = [p for p in pairs if (name, *p) not in cells]
        if missing:
            raise TuningError(f"value candidate {name!r} has no run for (editor, edit seed) {missing}")
        means[name] = _mean([cells[(name, *p)] for p in pairs])
    best = max(means.values())
    steps = {c["name"]: c["steps"] for c in VALUE_CANDIDATES}
    tied = [n for n in names if means[n] >= best - TIE]
    chosen = min(tied, key=lambda n: (steps[n], names.index(n)))
    return {"chosen": chosen, "means": means}


def extension(editor: str, knobs: dict) -> dict | None:
    """The point one step beyond the grid when ``knobs`` (the grid's choice) lies on its edge, else None.

    The rule (declared with the grids): r one decade further (0.001 or 10), lam from 1 to 30;
    AlphaEdit's q to 0.1 or 0.9, l2 from 1 to 0.1; FT's loosest point to 60 steps, its fewest steps
    to 4, its smallest step to 0.2, its bound to c = 0.25."""
    grid = EDITOR_GRIDS[editor]
    if knobs not in grid:
        return None
    step = {
        "rlsedit": {0: {"r": 0.001, "lam": 1e-3}, 2: {"r": 10.0, "lam": 1e-3}, 3: {"r": 0.1, "lam": 30.0}},
        "alphaedit": {0: {"q": 0.5, "l2": 10.0}, 2: {"q": 0.99, "l2": 10.0}, 3: {"q": 0.9, "l2": 0.1}},
        "ft": {0: {"steps": 60, "lr": 1.0, "c": 0.0}, 1: {"steps": 4, "lr": 1.0, "c": 0.0},
               2: {"steps": 25, "lr": 0.2, "c": 0.0}, 3: {"steps": 25, "lr": 1.0, "c": 0.25}},
    }
    table = step["rlsedit"] if editor in ("rlsedit", "memit", "rome") else step[editor]
    out = table.get(grid.index(knobs))
    return None if out is None else dict(out)


def _point_means(editor: str, rows: list[dict], points: int) -> list[float]:
    seeds = sorted({r["edit_seed"] for r in rows})
    cells = {(r["point"], r["edit_seed"]): r["score"] for r in rows}
    means = []
    for i in range(points):
        missing = [s for s in seeds if (i, s) not in cells]
        if missing or not seeds:
            raise TuningError(f"{editor}: grid point {i} has no run for edit seeds {missing or 'any'}")
        means.append(_mean([cells[(i, s)] for s in seeds]))
    return means


def _best(means: list[float]) -> int:
    best = max(means)
    return next(i for i, m in enumerate(means) if m >= best - TIE)


def select_knobs(editor: str, rows: list[dict]) -> dict:
    """Stage 2's choice for one editor from its rows ``{"point", "edit_seed", "score"}`` (point: the grid
    index; ``len(grid)``: the :func:`extension` point, run when the grid's choice lies on its edge).

    Returns ``{"chosen": index, "knobs": dict, "means": [mean score per point], "extension": knobs or
    None, "needs_extension": bool}`` (the last: the edge rule asks for a run not made yet)."""
    grid = EDITOR_GRIDS[editor]
    rows = current_rows(editor, rows)[0]
    means = _point_means(editor, [r for r in rows if r["point"] < len(grid)], len(grid))
    chosen = _best(means)
    ext = extension(editor, grid[chosen])
    rows = [r for r in rows if r["point"] < len(grid) or r["knobs"] == ext]
    has_ext = any(r["point"] == len(grid) for r in rows)
    if ext is not None and has_ext:
        means = _point_means(editor, rows, len(grid) + 1)
        chosen = _best(means)
    knobs = grid[chosen] if chosen < len(grid) else ext
    return {"chosen": chosen, "knobs": dict(knobs), "means": means, "extension": ext,
            "needs_extension": ext is not None and not has_ext}


def selection(record: dict) -> dict:
    """What a tuning record (``tuning.json``, :func:`record`) chose: the values and each editor's knobs."""
    values = select_values(record["values"]["rows"])
    chosen = {"values": next(c for c in VALUE_CANDIDATES if c["name"] == values["chosen"])}
    for editor, part in record.get("editors", {}).items():
        if current_rows(editor, part["rows"])[0]:
            chosen[editor] = select_knobs(editor, part["rows"])["knobs"]
    return chosen


def settings_for(regime: str) -> dict:
    """The chosen settings of a regime (:data:`TUNED`), refused by name when it was never tuned."""
    if regime not in TUNED:
        raise TuningError(f"regime {regime!r} has no tuned settings yet (run `rlsedit tune --regime {regime}`)")
    return TUNED[regime]


def describe(regime: Regime) -> dict:
    return {**asdict(regime), "ratio": regime.ratio, "split": {
        "tuning_world_seed": TUNING_WORLD_SEED, "tuning_edit_seeds": list(TUNING_EDIT_SEEDS),
        "report_world_seed": REPORT_WORLD_SEED, "report_edit_seeds": list(REPORT_EDIT_SEEDS)}}


def is_finite_score(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


__all__ = [
    "EDITORS",
    "EDITOR_GRIDS",
    "REFERENCE",
    "REGIMES",
    "REPORT_EDIT_SEEDS",
    "REPORT_WORLD_SEED",
    "SUPERSEDED_GRIDS",
    "TIE",
    "TUNED",
    "TUNING_EDIT_SEEDS",
    "TUNING_WORLD_SEED",
    "VALUE_CANDIDATES",
    "ModelFacts",
    "Regime",
    "TuningError",
    "check_split",
    "criterion",
    "current_rows",
    "edit_argv",
    "knob_argv",
    "knob_slug",
    "model_facts",
    "needs_facts",
    "select_knobs",
    "select_values",
    "selection",
    "settings_for",
    "value_argv",
    "write_zsre",
]
