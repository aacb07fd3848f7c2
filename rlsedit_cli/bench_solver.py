"""``rlsedit bench-solver``: the benchmark suite (:mod:`benchmarks.suite`) from the command line."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from rlsedit_cli.args import thread_count

NAME = "bench-solver"
GROUP = "benchmarks"
HELP = "time the Woodbury solver against this machine's matmul and bandwidth limits"


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        sizes = tuple(tuple(int(n) for n in item.split("x")) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 14336x4096,1024x256, got {text!r}") from None
    if any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive pairs d_kxd_v, got {text!r}")
    return sizes


def _dtypes(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    if not set(names) <= {"float32", "float64"}:
        raise argparse.ArgumentTypeError(f"dtypes must be float32 and/or float64, got {text!r}")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True,
                   help="folder for results.json, report.md and figure.png (created if missing)")
    p.add_argument("--quick", action="store_true",
                   help="sizes up to 4096 x 1024 and 3 repeats, sized for about a minute on a quiet two-core "
                        "CPU; without it the run adds 14336 x 4096 and 18944 x 3584 and takes 5 repeats "
                        "(tens of minutes)")
    p.add_argument("--long", action="store_true",
                   help="also stream 10,000 edits (100 batches of 100) at 14336 x 4096, float32, "
                        "and time C_0's factorisation once; minutes, needs about 4 GiB")
    p.add_argument("--sizes", type=_sizes, default=None, metavar="DKxDV[,DKxDV...]",
                   help="replace the sizes of the update and memory cases, e.g. 14336x4096,18944x3584; "
                        "the history, re-solve and precision cases keep theirs")
    p.add_argument("--dtypes", type=_dtypes, default=None, metavar="DTYPE[,DTYPE]",
                   help="replace the dtypes of the update and memory cases: float32, float64 or both")
    p.add_argument("--threads", type=thread_count, default=torch.get_num_threads(),
                   help="torch threads for every case; the default is torch's own choice on this machine")
    p.add_argument("--seed", type=int, default=0, help="seed of every random weight and batch")


def run(args: argparse.Namespace) -> int:
    from benchmarks.suite import FULL, QUICK, write_results
    from benchmarks.suite import run as run_suite

    torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(QUICK if args.quick else FULL, long=args.long, seed=args.seed)
    if args.sizes is not None:
        cfg = dataclasses.replace(cfg, sizes=args.sizes, memory_sizes=args.sizes)
    if args.dtypes is not None:
        cfg = dataclasses.replace(cfg, dtypes=args.dtypes)
    results = run_suite(cfg, log=lambda msg: print(msg, flush=True))
    for path in write_results(results, args.out):
        print(f"wrote {path}")
    return 0
