"""``rlsedit edit-table``: the paper's main table and stream figures from ``rlsedit edit`` runs.

With ``--seeds`` the runs are seeds of settings: runs that share a label (their editor, or
``--labels``) must differ only in their seeds, and each label becomes one row with the mean over
its runs and the 95% interval (:func:`llm_experiments.table.aggregate`), the early-edit retention
and capability over seeds, and the rankings that the intervals support.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_experiments.table import (
    TableError,
    aggregate,
    aggregate_report,
    compact,
    draw_figures,
    read_run,
    report,
)

NAME = "edit-table"
GROUP = "LLM editing"
HELP = "the paper's main table and stream figures from `rlsedit edit` runs (several seeds: mean and 95% interval)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR",
                   help="run folders written by `rlsedit edit` (one table row each, in this order)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also write the markdown table to FILE (figures go beside it when the runs have "
                        "along-stream results)")
    p.add_argument("--no-figures", action="store_true", help="write the table only (always, with --seeds)")
    p.add_argument("--seeds", action="store_true",
                   help="aggregate over seeds: runs sharing a label (editor, or --labels) are one setting's seeds; "
                        "one row per label, mean and 95%% interval over its runs")
    p.add_argument("--labels", default=None,
                   help="with --seeds: comma-separated labels, one per run (default: each run's editor)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="with --seeds: also write the runs' compact summaries (no per-record data) to FILE")


def run(args: argparse.Namespace) -> int:
    try:
        summaries = [read_run(d) for d in args.runs]
        if args.seeds:
            names = None if args.labels is None else [x.strip() for x in args.labels.split(",")]
            aggs = aggregate(summaries, names)
            table = aggregate_report(aggs)
        elif args.labels or args.json:
            raise TableError("--labels and --json go with --seeds")
        else:
            table = report(summaries)
    except TableError as exc:
        raise SystemExit(f"rlsedit edit-table: {exc}") from exc
    print(table)
    if args.seeds and args.json:
        runs = []
        for a in aggs:
            runs += [{**compact(r), "label": a.label} for r in a.runs]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        if not args.no_figures and not args.seeds:  # the figures draw one curve per run
            for path in draw_figures(summaries, out.parent):
                print(f"wrote {path}")
    return 0
