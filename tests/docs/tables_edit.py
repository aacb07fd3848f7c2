"""Builders of docs/edit-benchmark.md's tables, from docs/edit_benchmark_data/.

Data files (small: no per-record data):

- ``tuning_<regime>.json``: what ``rlsedit tune --regime <regime>`` wrote (every tuning run's
  scores, the model facts the rules read, the selection);
- ``<regime>.json``, ``<regime>_zsre.json``: what ``rlsedit compare --regime <regime> [--zsre]``
  wrote as ``aggregate.json`` (each run's compact summary: metrics, cohorts, capability, seconds,
  seeds, setting).

Every table is formatted by llm_experiments.table (the multi-seed tables) or from the tuning
record's own numbers, so a page's table is exactly what the commands print for the same data.
"""

from __future__ import annotations

from tests.docs.tables import DOCS, builder, markdown, read_json

DATA = "edit_benchmark_data"
EDITORS = ("rlsedit", "memit", "alphaedit", "rome", "ft")


def _aggs(name: str):
    from llm_experiments.table import aggregate

    runs = read_json(f"{DATA}/{name}.json")["runs"]
    order = {e: i for i, e in enumerate(EDITORS)}
    runs = sorted(runs, key=lambda r: order.get(r["editor"], len(order)))
    return aggregate(runs)


def _fmt(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main_table(name: str) -> str:
    from llm_experiments.table import aggregate_table

    return aggregate_table(_aggs(name))


def retention(name: str) -> str:
    from llm_experiments.table import retention_table

    return retention_table(_aggs(name))


def paired(name: str) -> str:
    from llm_experiments.table import paired_table

    return paired_table(_aggs(name), "rlsedit")


def timing(name: str) -> str:
    """Mean seconds per run by phase (over the seeds), and the runs' total."""
    rows = []
    for a in _aggs(name):
        secs = [r["seconds"] for r in a.runs]
        mean = {k: sum(s.get(k, 0.0) for s in secs) / len(secs)
                for k in ("editing", "along_stream_evaluation", "after_stream_evaluation", "total")}
        rows.append([a.label, str(a.n), _fmt(mean["editing"], 0), _fmt(mean["along_stream_evaluation"], 0),
                     _fmt(mean["after_stream_evaluation"], 0), _fmt(mean["total"], 0),
                     _fmt(sum(s["total"] for s in secs), 0)])
    return markdown(["Editor", "Seeds", "editing, s", "along-stream evaluation, s", "after-stream evaluation, s",
                     "total per run, s", "all seeds, s"], rows)


def tuning_values(regime: str) -> str:
    """Stage 1: each value candidate's Score with each editor (first batch of the tuning stream)."""
    from llm_experiments.tuning import VALUE_CANDIDATES

    record = read_json(f"{DATA}/tuning_{regime}.json")
    rows = record["values"]["rows"]
    chosen = record["values"]["selection"]["chosen"]
    means = record["values"]["selection"]["means"]
    editors = [e for e in EDITORS if any(r["editor"] == e for r in rows)]
    out = []
    for c in VALUE_CANDIDATES:
        cells = []
        for e in editors:
            score = [r["score"] for r in rows if r["candidate"] == c["name"] and r["editor"] == e]
            cells.append(_fmt(sum(score) / len(score)) if score else "-")
        mean = _fmt(means[c["name"]])
        out.append([c["name"] + (" (chosen)" if c["name"] == chosen else ""), str(c["steps"]), str(c["lr"]),
                     str(c["clamp"]), str(c["kl"]), str(c["weight_decay"]), *cells,
                     f"**{mean}**" if c["name"] == chosen else mean])
    return markdown(["values", "steps", "lr", "clamp", "KL", "decay", *editors, "mean Score"], out)


def _knobs(editor: str, knobs: dict, facts: dict | None) -> str:
    if editor in ("rlsedit", "memit", "rome"):
        return f"r = {knobs['r']:g}, lam = {knobs['lam']:g}"
    if editor == "alphaedit":
        return f"q = {knobs['q']:g}, l2 = {knobs['l2']:g}"
    return f"steps {knobs['steps']}, lr {knobs['lr']:g}, c = {knobs['c']:g}"


def tuning_editors(regime: str) -> str:
    """Stage 2: each editor's grid on the whole tuning stream(s), with the chosen values."""
    record = read_json(f"{DATA}/tuning_{regime}.json")
    out = []
    for editor in EDITORS:
        part = record["editors"].get(editor)
        if not part:
            continue
        chosen = part["selection"]["chosen"]
        for i, mean in enumerate(part["selection"]["means"]):
            runs = [r for r in part["rows"] if r["point"] == i]
            avg = {k: sum(r[k] for r in runs) / len(runs) for k in ("efficacy", "generalization", "specificity")}
            types = [r["type_accuracy"] for r in runs if r.get("type_accuracy") is not None]
            score = _fmt(mean)
            out.append([editor if i == 0 else "", _knobs(editor, runs[0]["knobs"], record.get("model_facts")),
                        f"**{score}** (chosen)" if i == chosen else score, _fmt(avg["efficacy"]),
                        _fmt(avg["generalization"]), _fmt(avg["specificity"]),
                        _fmt(sum(types) / len(types)) if types else "-", _fmt(sum(r["seconds"] for r in runs), 0)])
        for r in part.get("superseded", []):  # a replaced grid's runs: shown, never chosen from
            out.append(["", _knobs(editor, r["knobs"], None) + " (first grid, replaced)", _fmt(r["score"]),
                        _fmt(r["efficacy"]), _fmt(r["generalization"]), _fmt(r["specificity"]),
                        _fmt(r.get("type_accuracy")), _fmt(r["seconds"], 0)])
    return markdown(["editor", "knobs", "Score", "Efficacy", "Generalization", "Specificity", "type accuracy, %",
                     "seconds"], out)


@builder("edit_regimes")
def regimes() -> str:
    """The regimes as llm_experiments.tuning defines them."""
    from llm_experiments.tuning import REGIMES

    rows = []
    for r in REGIMES.values():
        model = f"{r.people} people ({5 * r.people:,} facts), hidden {r.hidden}, d_ff = d_k = {r.d_ff}"
        rows.append([f"`{r.name}`", model,
                     f"{r.n_edits} edits in batches of {r.batch_size}", f"{r.ratio:.2f}",
                     ", ".join(str(s) for s in r.report_seeds)])
    return markdown(["regime", "model (4 layers, layer 0 edited)", "stream", "edits / d_k", "reported edit seeds"],
                    rows)


@builder("edit_grids")
def grids() -> str:
    """Each editor's stage-2 grid, the points the edge rule adds, and AlphaEdit's replaced grid."""
    from llm_experiments.tuning import EDITOR_GRIDS, REFERENCE, SUPERSEDED_GRIDS, extension

    rows = []
    for editor in EDITORS:
        grid = EDITOR_GRIDS[editor]
        points = "; ".join(_knobs(editor, k, None) for k in grid)
        beyond = "; ".join(f"{_knobs(editor, k, None)} -> {_knobs(editor, e, None)}"
                           for k in grid if (e := extension(editor, k)) is not None)
        old = SUPERSEDED_GRIDS.get(editor)
        rows.append([editor, points, beyond, _knobs(editor, REFERENCE[editor], None),
                     "; ".join(_knobs(editor, k, None) for k in old) if old else "-"])
    return markdown(["editor", "grid (four points)", "edge rule: chosen point -> the point beyond",
                     "stage 1's reference", "replaced grid"], rows)


@builder("edit_models")
def models() -> str:
    """The tiny models of each regime (their tiny_model.json): size, accuracy, training time."""
    rows = []
    for m in read_json(f"{DATA}/models.json")["models"]:
        acc = " / ".join(f"{100 * m['accuracy'][k]:.1f}" for k in ("trained", "heldout", "question"))
        seed = f"{m['world_seed']} ({'tuning' if m['world_seed'] == 1 else 'reported'})"
        rows.append([m["regime"], seed, f"{m['people']} people, d_ff {m['d_ff']}", f"{m['n_params']:,}", acc,
                     str(m["steps"]), f"{m['train_seconds']:.0f}"])
    return markdown(["regime", "world seed", "model", "parameters", "accuracy, %: trained / held-out / questions",
                     "steps", "seconds"], rows)


@builder("edit_writes")
def writes() -> str:
    """The first and the last write of each stream (metrics.jsonl of every run, mean over seeds): the share
    of the batch's residual ||V - K W|| the write closed, and the weight change ||W - W_prev||_F."""
    data = read_json(f"{DATA}/writes.json")
    labels = {"matched": "matched", "crowded": "crowded, own settings", "crowded_rules": "crowded, matched's rules"}
    rows = []
    for name, editors in data.items():
        for editor in EDITORS:
            if editor not in editors:
                continue
            runs = editors[editor]["batches"]
            cells = []
            for b in (0, -1):
                before = sum(r[b]["residual_before"] for r in runs) / len(runs)
                after = sum(r[b]["residual_after"] for r in runs) / len(runs)
                dw = sum(r[b]["weight_change"] for r in runs) / len(runs)
                cells += [f"{before:.0f} -> {after:.0f} ({100 * (1 - after / before):.0f}%)", f"{dw:.1f}"]
            rows.append([labels.get(name, name), editor, str(len(runs)), *cells])
    return markdown(["regime", "editor", "seeds", "first batch: residual (closed)", "first batch: ||dW||",
                     "last batch: residual (closed)", "last batch: ||dW||"], rows)


@builder("edit_efficacy_ranking")
def efficacy_ranking() -> str:
    """Efficacy across the regimes: the ranking the intervals support and RLSEdit's paired differences."""
    from llm_experiments.table import paired_difference, ranking
    from llm_experiments.tuning import REGIMES

    rows = []
    for name, label, regime in (("matched", "matched", "matched"), ("crowded", "crowded, own settings", "crowded"),
                                ("crowded_rules", "crowded, matched's rules", "crowded")):
        aggs = _aggs(name)
        ref = next(a for a in aggs if a.label == "rlsedit")
        cells = []
        for other in ("memit", "alphaedit"):
            mean, half, _ = paired_difference(ref, next(a for a in aggs if a.label == other), "efficacy")
            cells.append(f"{mean:+.1f} ± {half:.1f}")
        means = ", ".join(f"{a.label} {a.mean['efficacy']:.1f}" for a in aggs)
        rows.append([label, f"{REGIMES[regime].ratio:.2f}", means, ranking(aggs, "efficacy"), *cells])
    return markdown(["regime", "edits / d_k", "Efficacy (mean over seeds)", "ranking where the 95% intervals separate",
                     "RLSEdit - MEMIT, paired", "RLSEdit - AlphaEdit, paired"], rows)


def _register() -> None:
    data = DOCS / DATA
    for path in sorted(data.glob("tuning_*.json")) if data.is_dir() else []:
        regime = path.stem.removeprefix("tuning_")
        builder(f"edit_tuning_values_{regime}")(lambda r=regime: tuning_values(r))
        builder(f"edit_tuning_editors_{regime}")(lambda r=regime: tuning_editors(r))
    for path in sorted(data.glob("*.json")) if data.is_dir() else []:
        name = path.stem
        if name.startswith("tuning_") or "runs" not in read_json(f"{DATA}/{name}.json"):
            continue  # tuning records and the other data (models, writes, timings) have builders of their own
        builder(f"edit_{name}_main")(lambda n=name: main_table(n))
        builder(f"edit_{name}_retention")(lambda n=name: retention(n))
        builder(f"edit_{name}_paired")(lambda n=name: paired(n))
        builder(f"edit_{name}_timing")(lambda n=name: timing(n))


_register()
