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
