"""``rlsedit edit-table``: the paper's main table and stream figures from ``rlsedit edit`` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_experiments.table import TableError, draw_figures, read_run, report

NAME = "edit-table"
GROUP = "LLM editing"
HELP = "the paper's main table and stream figures from `rlsedit edit` runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR",
                   help="run folders written by `rlsedit edit` (one table row each, in this order)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also write the markdown table to FILE (figures go beside it when the runs have "
                        "along-stream results)")
    p.add_argument("--no-figures", action="store_true", help="write the table only")


def run(args: argparse.Namespace) -> int:
    try:
        summaries = [read_run(d) for d in args.runs]
    except TableError as exc:
        raise SystemExit(f"rlsedit edit-table: {exc}") from exc
    table = report(summaries)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        if not args.no_figures:
            for path in draw_figures(summaries, out.parent):
                print(f"wrote {path}")
    return 0
