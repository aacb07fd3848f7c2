"""``rlsedit edit-table``: the paper's main table and the stream figures, drawn from run folders only.

Reads what ``rlsedit edit`` wrote (``summary.json``; ``along_stream/metrics.jsonl`` for the
figures) and computes nothing else: one row per run in the layout of the paper's main table
(Efficacy, Generalization, Specificity, Fluency, Consistency; mean +- standard error over the
edits, percent, Fluency as 100 x bits; a metric the run could not report is a dash whose
footnote gives the reason recorded in ``summary.json``'s ``absent``), and, for runs made with
``--along-stream``:

- ``metrics_vs_edits.png``: efficacy, generalization and specificity of the edits made so far,
  at each checkpoint of the stream;
- ``cohort_retention.png``: each early-edit cohort's efficacy at every checkpoint from the one
  where it was written (the first point is the cohort before any edit);
- ``capability_vs_edits.png``: general capability at each checkpoint, when the run recorded it
  (tiny models: the world's language apart from its facts, :mod:`llm_experiments.evaluate.world_capability`).

:func:`capability_table` lists general capability before and after the stream (``summary.json``'s
``capability``), one row per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llm_experiments.experiment import TABLE_METRICS

HEADERS = ("Efficacy", "Generalization", "Specificity", "Fluency", "Consistency")


class TableError(ValueError):
    """A run folder that holds no usable results (names the folder and the missing file or key)."""


def read_run(path: str | Path) -> dict:
    """A run's ``summary.json`` (:class:`TableError` if missing, or without one of the table's
    probability metrics and no reason for its absence in ``absent``)."""
    path = Path(path)
    file = path / "summary.json"
    if not file.is_file():
        raise TableError(f"{path}: no summary.json (not a finished `rlsedit edit` run)")
    summary = json.loads(file.read_text())
    absent = summary.get("absent") or {}
    missing = [m for m in ("efficacy", "generalization", "specificity") if m not in summary and m not in absent]
    if missing:
        raise TableError(f"{file}: missing {missing}")
    summary["_path"] = str(path)
    return summary


def labels(summaries: list[dict]) -> list[str]:
    """Each run's label: its editor, or ``editor (folder)`` when several runs share an editor."""
    editors = [s.get("editor") or Path(s["_path"]).name for s in summaries]
    return [e if editors.count(e) == 1 else f"{e} ({Path(s['_path']).name})"
            for e, s in zip(editors, summaries, strict=True)]


def _cell(summary: dict, metric: str, notes: dict[str, int]) -> str:
    """``mean +- sem``; ``-`` when absent, with ``[n]``, the footnote giving the reason, when the run
    recorded one (``notes`` maps each footnote's text to its number and grows here)."""
    if summary.get(metric) is None:
        why = (summary.get("absent") or {}).get(metric)
        if why is None:
            return "-"
        note = f"{HEADERS[TABLE_METRICS.index(metric)]}: {why}"
        number = notes.setdefault(note, len(notes) + 1)
        return f"- [{number}]"
    sem = summary.get(f"{metric}_sem")
    return f"{summary[metric]:.2f}" + ("" if sem is None else f" +- {sem:.2f}")


def markdown_table(summaries: list[dict]) -> str:
    """The paper's main-table layout: one row per run (its editor), the five metrics as columns.

    A metric a run could not report is a dash with a footnote number; the footnotes, one line each
    below the table, say why (``summary.json``'s ``absent``)."""
    lines = ["| Editor | Edits | " + " | ".join(HEADERS) + " |",
             "|---|---|" + "---|" * len(HEADERS)]
    notes: dict[str, int] = {}
    for label, s in zip(labels(summaries), summaries, strict=True):
        lines.append(f"| {label} | {s.get('n_edits', '-')} | "
                     + " | ".join(_cell(s, m, notes) for m in TABLE_METRICS) + " |")
    if notes:
        lines.append("")
        lines += [f"[{number}] {note}." for note, number in notes.items()]
    return "\n".join(lines)


#: capability measures drawn and tabulated: (measure, field, label, scale)
CAPABILITY = (("template", "template_nll", "template NLL (nats/token)", 1.0),
              ("template", "template_accuracy", "template accuracy, %", 100.0),
              ("type", "type_accuracy", "type accuracy, %", 100.0))


def _capability_value(record: dict, measure: str, field: str) -> float | None:
    value = record.get(measure, {}).get(field) if isinstance(record, dict) else None
    return None if value is None else float(value)


def capability_table(summaries: list[dict]) -> str | None:
    """Markdown: general capability before -> after the stream, one row per run (None if none has it)."""
    rows = []
    for label, s in zip(labels(summaries), summaries, strict=True):
        cap = s.get("capability") or {}
        cells = []
        for measure, field, _, scale in CAPABILITY:
            before = _capability_value(cap.get("before", {}), measure, field)
            after = _capability_value(cap.get("after", {}), measure, field)
            cells.append("-" if after is None else
                         (f"{scale * after:.3f}" if before is None else f"{scale * before:.3f} -> {scale * after:.3f}"))
        if any(c != "-" for c in cells):
            rows.append(f"| {label} | {s.get('n_edits', '-')} | " + " | ".join(cells) + " |")
    if not rows:
        return None
    head = "| Editor | Edits | " + " | ".join(lab for _, _, lab, _ in CAPABILITY) + " |"
    return "\n".join([head, "|---|---|" + "---|" * len(CAPABILITY), *rows])


def report(summaries: list[dict]) -> str:
    """The main table, then the general-capability table when the runs recorded capability."""
    table = markdown_table(summaries)
    capability = capability_table(summaries)
    if capability is not None:
        table += "\n\nGeneral capability, before -> after the stream:\n\n" + capability
    return table


def read_along(path: str | Path) -> list[dict]:
    """The along-stream checkpoints of a run (empty when it was made without ``--along-stream``)."""
    file = Path(path) / "along_stream" / "metrics.jsonl"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_figures(summaries: list[dict], out_dir: str | Path) -> list[Path]:
    """Draw the two stream figures from the runs' files into ``out_dir``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    along = {label: read_along(s["_path"]) for label, s in zip(labels(summaries), summaries, strict=True)}
    along = {k: v for k, v in along.items() if v}
    if not along:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    names = ("efficacy", "generalization", "specificity")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), sharex=True)
    for ax, metric in zip(axes, names, strict=True):
        for editor, lines in along.items():
            pts = [(h["n_edits"], 100 * h["edited"][metric]["mean"]) for h in lines
                   if "edited" in h and metric in h["edited"]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=editor)
        ax.set_title(metric.capitalize())
        ax.set_xlabel("edits made")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of the edits made so far")
    axes[-1].legend(fontsize=8)
    written.append(_save(fig, out / "metrics_vs_edits.png"))

    cohorts = sorted({c for lines in along.values() for h in lines for c in h.get("cohorts", {})},
                     key=lambda c: int(c.split("_")[1]))
    fig, axes = plt.subplots(1, len(cohorts), figsize=(4 * len(cohorts), 3.2), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts, strict=True):
        for editor, lines in along.items():
            pts = [(h["n_edits"], 100 * h["cohorts"][cohort]["metrics"]["efficacy"]["mean"]) for h in lines
                   if cohort in h.get("cohorts", {}) and "efficacy" in h["cohorts"][cohort]["metrics"]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=editor)
        size = next(h["cohorts"][cohort]["size"] for lines in along.values() for h in lines if cohort in h["cohorts"])
        ax.set_title(f"first {size} edits")
        ax.set_xlabel("edits made")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cohort efficacy, %")
    axes[0][-1].legend(fontsize=8)
    written.append(_save(fig, out / "cohort_retention.png"))

    if any(h.get("capability") for lines in along.values() for h in lines):
        fig, axes = plt.subplots(1, len(CAPABILITY), figsize=(4 * len(CAPABILITY), 3.2), sharex=True)
        for ax, (measure, field, label, scale) in zip(axes, CAPABILITY, strict=True):
            for editor, lines in along.items():
                pts = [(h["n_edits"], scale * v) for h in lines
                       if (v := _capability_value(h.get("capability", {}), measure, field)) is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=editor)
            ax.set_title(label)
            ax.set_xlabel("edits made")
            ax.grid(alpha=0.3)
        axes[-1].legend(fontsize=8)
        written.append(_save(fig, out / "capability_vs_edits.png"))
    return written


# ------------------------------------------------------------------------------------------------
# Several seeds: runs that differ only in their seeds are one setting; one row per setting with the
# mean and a 95% interval over the seeds (Student's t), rankings only where intervals separate.
# ------------------------------------------------------------------------------------------------

#: the run options that name a seed (a setting's runs differ in these, and only these)
SEED_KEYS = ("edit_seed", "world_seed", "train_seed")
#: options that change where or how fast a run goes, not what it computes
MACHINE_KEYS = ("threads", "cache_dir", "device", "save_every")
#: options that name an input file: runs of one setting may read per-seed files of the same name
PATH_KEYS = ("source", "data", "snippets", "tfidf", "stats_corpus")
#: the confidence level of every interval
LEVEL = 0.95


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def setting_of(summary: dict) -> dict:
    """What a run computed apart from its seeds: its config (``summary.json``'s ``config`` without what
    was resolved from it), flattened to ``{"a.b": value}``, without the seed and machine options."""
    if "setting" in summary:  # a compact summary (:func:`compact`)
        return dict(summary["setting"])
    config = {k: v for k, v in (summary.get("config") or {}).items() if k != "resolved"}
    out = {}
    for k, v in _flatten(config).items():
        if _leaf(k) in SEED_KEYS + MACHINE_KEYS:
            continue
        out[k] = Path(v).name if _leaf(k) in PATH_KEYS and isinstance(v, str) else v
    return out


def seeds_of(summary: dict) -> dict:
    """The run's seeds ``{edit_seed, world_seed, train_seed}`` (those its config records)."""
    if "seeds" in summary:
        return dict(summary["seeds"])
    config = {k: v for k, v in (summary.get("config") or {}).items() if k != "resolved"}
    found: dict = {}
    for k, v in _flatten(config).items():
        if _leaf(k) in SEED_KEYS:
            found.setdefault(_leaf(k), v)
    return found


def compact(summary: dict) -> dict:
    """A run's summary without its per-record parts: what a multi-seed table and its docs need.

    Keeps the table's metrics and their standard errors, the early-edit cohorts, general
    capability, the timing, the seeds and the setting; drops the config's resolved paths and the
    after-stream fractions (the same numbers as the percent fields)."""
    keep = ("editor", "model", "n_edits", "batch_size", "retention", "capability", "seconds")
    out = {k: summary[k] for k in keep if k in summary}
    for name in TABLE_METRICS:
        for key in (name, f"{name}_sem"):
            if key in summary:
                out[key] = summary[key]
    out["seeds"] = seeds_of(summary)
    out["setting"] = setting_of(summary)
    if "label" in summary:
        out["label"] = summary["label"]
    return out


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float | None]:
    """Mean and half-width of the two-sided ``level`` interval of the mean (Student's t, n - 1
    degrees of freedom); the half-width is None for fewer than two values."""
    import math

    from scipy.stats import t

    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def run_values(summary: dict) -> dict[str, float]:
    """The scalars one run contributes to a multi-seed table (percent unless named otherwise):
    the five metrics, ``score`` (MEMIT's Score: harmonic mean of Efficacy, Generalization and
    Specificity), each cohort's efficacy ``<cohort>.at_write`` / ``<cohort>.final``, and the
    capability after the stream (``type_accuracy``, ``template_accuracy`` in %, ``template_nll``)."""
    out = {m: float(summary[m]) for m in TABLE_METRICS if summary.get(m) is not None}
    if all(m in out for m in ("efficacy", "generalization", "specificity")):
        out["score"] = score(out)
    for name, cohort in (summary.get("retention") or {}).items():
        eff = cohort.get("efficacy") or {}
        for when in ("before", "at_write", "final"):
            if eff.get(when) is not None:
                out[f"{name}.{when}"] = 100.0 * float(eff[when])
    after = (summary.get("capability") or {}).get("after") or {}
    for measure, field, _, scale in CAPABILITY:
        value = _capability_value(after, measure, field)
        if value is not None:
            out[field] = scale * value
    return out


def score(values: dict) -> float:
    """MEMIT's Score: the harmonic mean of Efficacy, Generalization and Specificity (0 if any is 0)."""
    parts = [float(values[m]) for m in ("efficacy", "generalization", "specificity")]
    return 0.0 if min(parts) <= 0 else len(parts) / sum(1.0 / p for p in parts)


@dataclass
class Aggregate:
    """One setting over several seeds: its runs' values, their mean and 95% interval half-width."""

    label: str
    runs: list[dict]
    values: dict[str, list[float]]  # name -> one value per run, in the runs' order
    mean: dict[str, float]
    half: dict[str, float | None]

    @property
    def n(self) -> int:
        return len(self.runs)

    def interval(self, name: str) -> tuple[float, float]:
        h = self.half.get(name)
        m = self.mean[name]
        return (m, m) if h is None else (m - h, m + h)


def _same(a, b) -> bool:
    """Equal settings: floats to 1e-9 relative (a value computed twice may differ in its last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        import math

        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _describe(summary: dict) -> str:
    return str(summary.get("_path") or summary.get("label") or summary.get("editor"))


def aggregate(summaries: list[dict], names: list[str] | None = None) -> list[Aggregate]:
    """Group runs by label (``names``, or :func:`labels`'s editor names) and aggregate each group.

    A group's runs must be the same setting (:func:`setting_of`) with different seeds; otherwise
    :class:`TableError` names the runs and the first option that differs (or the repeated seeds)."""
    names = labels_by_editor(summaries) if names is None else list(names)
    if len(names) != len(summaries):
        raise TableError(f"{len(names)} labels for {len(summaries)} runs")
    groups: dict[str, list[dict]] = {}
    for name, s in zip(names, summaries, strict=True):
        groups.setdefault(name, []).append(s)
    out = []
    for name, runs in groups.items():
        first = setting_of(runs[0])
        for other in runs[1:]:
            setting = setting_of(other)
            diff = sorted(k for k in set(first) | set(setting) if not _same(first.get(k), setting.get(k)))
            if diff:
                k = diff[0]
                raise TableError(f"{name}: runs {_describe(runs[0])} and {_describe(other)} differ in {k} "
                                 f"({first.get(k)!r} vs {setting.get(k)!r}), not only in their seeds")
        seen: dict = {}
        for r in runs:
            key = tuple(sorted(seeds_of(r).items()))
            if key in seen:
                raise TableError(f"{name}: runs {_describe(seen[key])} and {_describe(r)} have the same seeds "
                                 f"{dict(key)}: one stream counted twice")
            seen[key] = r
        per_run = [run_values(r) for r in runs]
        common = [k for k in per_run[0] if all(k in v for v in per_run)]
        values = {k: [v[k] for v in per_run] for k in common}
        mean, half = {}, {}
        for k, vs in values.items():
            mean[k], half[k] = t_interval(vs)
        out.append(Aggregate(name, runs, values, mean, half))
    return out


def labels_by_editor(summaries: list[dict]) -> list[str]:
    """Each run's label for aggregation: its ``label`` if it has one, else its editor."""
    return [s.get("label") or s.get("editor") or Path(s["_path"]).name for s in summaries]


def separated(a: Aggregate, b: Aggregate, name: str) -> bool:
    """True when ``a``'s interval of ``name`` lies wholly above ``b``'s (both need two or more seeds)."""
    if a.half.get(name) is None or b.half.get(name) is None:
        return False
    return a.interval(name)[0] > b.interval(name)[1]


def ranking(aggs: list[Aggregate], name: str) -> str:
    """Which settings are above which on ``name``, stated only where the 95% intervals separate.

    E.g. ``"rlsedit > memit, alphaedit; memit > alphaedit"``, or ``"no separation"``."""
    parts = []
    for a in sorted(aggs, key=lambda g: -g.mean.get(name, float("-inf"))):
        if name not in a.mean:
            continue
        below = [b.label for b in aggs if b is not a and name in b.mean and separated(a, b, name)]
        if below:
            parts.append(f"{a.label} > {', '.join(below)}")
    return "; ".join(parts) if parts else "no separation"


def paired_difference(a: Aggregate, b: Aggregate, name: str) -> tuple[float, float | None, int]:
    """``a - b`` on ``name`` over the seeds both ran (paired by seeds): mean, 95% half-width, pairs."""
    index = {tuple(sorted(seeds_of(r).items())): v for r, v in zip(b.runs, b.values.get(name, []), strict=False)}
    diffs = [va - index[key] for r, va in zip(a.runs, a.values.get(name, []), strict=False)
             if (key := tuple(sorted(seeds_of(r).items()))) in index]
    if not diffs:
        raise TableError(f"{a.label} and {b.label} share no seeds for {name}")
    mean, half = t_interval(diffs)
    return mean, half, len(diffs)


def _pm(mean: float, half: float | None, digits: int = 1) -> str:
    return f"{mean:.{digits}f}" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def _cell_of(a: Aggregate, name: str, digits: int = 1) -> str:
    return "-" if name not in a.mean else _pm(a.mean[name], a.half[name], digits)


def aggregate_table(aggs: list[Aggregate], metrics: tuple[str, ...] = TABLE_METRICS, digits: int = 1) -> str:
    """The paper's main-table layout over seeds: one row per setting, each cell the mean over the
    seeds ± the half-width of its 95% interval (a single seed shows the mean alone)."""
    heads = [HEADERS[TABLE_METRICS.index(m)] if m in TABLE_METRICS else m for m in metrics]
    lines = ["| Editor | Seeds | Edits | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for a in aggs:
        edits = sorted({r.get("n_edits") for r in a.runs}, key=str)
        lines.append(f"| {a.label} | {a.n} | {', '.join(str(e) for e in edits)} | "
                     + " | ".join(_cell_of(a, m, digits) for m in metrics) + " |")
    return "\n".join(lines)


def cohort_names(aggs: list[Aggregate]) -> list[str]:
    """The early-edit cohorts every setting recorded, smallest first."""
    names = None
    for a in aggs:
        mine = {k.rsplit(".", 1)[0] for k in a.mean if k.startswith("first_") and k.endswith(".final")}
        names = mine if names is None else names & mine
    return sorted(names or (), key=lambda c: int(c.split("_")[1]))


def cohort_size(aggs: list[Aggregate], cohort: str) -> int:
    sizes = {r["retention"][cohort]["size"] for a in aggs for r in a.runs if cohort in (r.get("retention") or {})}
    return min(sizes) if sizes else int(cohort.split("_")[1])


def retention_table(aggs: list[Aggregate], digits: int = 1) -> str | None:
    """Early-edit retention and general capability over seeds: each cohort's efficacy when it was
    written and after the whole stream, the type accuracy and template NLL after the stream."""
    cohorts = cohort_names(aggs)
    caps = [c for c in ("type_accuracy", "template_nll") if all(c in a.mean for a in aggs)]
    if not cohorts and not caps:
        return None
    heads, names = [], []
    for c in cohorts:
        size = cohort_size(aggs, c)
        heads += [f"first {size}: at write", f"first {size}: after stream"]
        names += [f"{c}.at_write", f"{c}.final"]
    cap_heads = {"type_accuracy": "type accuracy after, %", "template_nll": "template NLL after"}
    heads += [cap_heads[c] for c in caps]
    names += caps
    lines = ["| Editor | Seeds | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for a in aggs:
        cells = [_cell_of(a, n, 3 if n == "template_nll" else digits) for n in names]
        lines.append(f"| {a.label} | {a.n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def key_metrics(aggs: list[Aggregate]) -> list[tuple[str, str]]:
    """``(name, label)`` of the metrics rankings are stated for: Efficacy, Generalization,
    Specificity, every cohort's efficacy after the stream ("first N kept") and the type accuracy
    after the stream (general capability)."""
    names = [(m, m) for m in ("efficacy", "generalization", "specificity")]
    names += [(f"{c}.final", f"first {cohort_size(aggs, c)} kept") for c in cohort_names(aggs)]
    names.append(("type_accuracy", "type accuracy after"))
    return [(n, lab) for n, lab in names if all(n in a.mean for a in aggs)]


def paired_table(aggs: list[Aggregate], reference: str, digits: int = 1) -> str | None:
    """``reference`` minus each other setting on the key metrics, paired by seeds: the mean
    difference ± its 95% half-width (None when ``reference`` is absent or nothing pairs)."""
    ref = next((a for a in aggs if a.label == reference), None)
    if ref is None or len(aggs) < 2:
        return None
    names = key_metrics(aggs)
    rows = []
    for other in aggs:
        if other is ref:
            continue
        cells = []
        for name, _ in names:
            try:
                mean, half, _ = paired_difference(ref, other, name)
            except TableError:
                cells.append("-")
                continue
            cells.append(_pm(mean, half, digits) + (" *" if half is not None and abs(mean) > half else ""))
        rows.append(f"| {reference} - {other.label} | " + " | ".join(cells) + " |")
    head = "| difference | " + " | ".join(label for _, label in names) + " |"
    return "\n".join([head, "|---|" + "---|" * len(names), *rows])


def aggregate_report(aggs: list[Aggregate], reference: str | None = "rlsedit") -> str:
    """The multi-seed main table, the retention/capability table, the rankings that the 95%
    intervals support (Efficacy, Generalization, Specificity, each cohort's final efficacy), and
    ``reference`` minus each other setting paired by seeds (* where the interval excludes 0)."""
    seeds = sorted({a.n for a in aggs})
    text = (f"Mean over seeds ± half-width of the {int(LEVEL * 100)}% interval (Student's t; "
            f"{'/'.join(str(s) for s in seeds)} seed(s) per row).\n\n" + aggregate_table(aggs))
    retention = retention_table(aggs)
    if retention is not None:
        text += "\n\nEarly-edit retention (cohort efficacy, %) and general capability after the stream:\n\n" + retention
    lines = [f"- {label}: {ranking(aggs, name)}" for name, label in key_metrics(aggs)]
    if lines and len(aggs) > 1:
        text += "\n\nRankings where the 95% intervals separate:\n\n" + "\n".join(lines)
    paired = None if reference is None else paired_table(aggs, reference)
    if paired is not None:
        text += (f"\n\n{reference} minus each other editor on the same streams (paired by seed; mean ± 95% "
                 "half-width, * where the interval excludes 0):\n\n" + paired)
    return text
