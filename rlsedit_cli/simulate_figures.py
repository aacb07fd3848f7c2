"""``rlsedit simulate-figures --results DIR --out DIR``: draw the figures of results folders, from their files only."""

from __future__ import annotations

import argparse

NAME = "simulate-figures"
GROUP = "theory"
HELP = "draw the figures of `rlsedit simulate` results folders (PDF + PNG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", required=True,
                   help="a results folder written by `rlsedit simulate` (has config.json), or a folder "
                        "whose sub-folders are results folders (one figure set each)")
    p.add_argument("--out", required=True, help="folder for the figures (created)")
    p.add_argument("--formats", default="pdf,png",
                   help="comma-separated file formats, each one file per figure (pdf is vector)")


def run(args: argparse.Namespace) -> int:
    from simulations.figures import NotAResultsFolder, draw

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if not formats:
        raise SystemExit("rlsedit simulate-figures: --formats is empty")
    try:
        paths = draw(args.results, args.out, formats)
    except NotAResultsFolder as exc:
        raise SystemExit(f"rlsedit simulate-figures: {exc}") from None
    for p in paths:
        print(p)
    return 0
