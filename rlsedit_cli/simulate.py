"""``rlsedit simulate EXPERIMENT [--quick] --out DIR``: run one experiment into a results folder.

Writes DIR/config.json, DIR/metrics.jsonl and DIR/summary.json. A run that stopped part-way
resumes where it stopped when started again with the same options.
"""

from __future__ import annotations

import argparse
import json
import sys

from rlsedit_cli.args import thread_count
from simulations.experiments import EXPERIMENTS

NAME = "simulate"
GROUP = "theory"
HELP = "run a theory/simulation experiment into a results folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    names = ", ".join(f"{k} ({v[1]})" for k, v in EXPERIMENTS.items())
    p.add_argument("experiment", choices=sorted(EXPERIMENTS), metavar="EXPERIMENT",
                   help=f"which experiment to run: {names}")
    p.add_argument("--out", required=True, help="results folder (created; an unfinished run there is resumed)")
    p.add_argument("--quick", action="store_true",
                   help="small preset that runs in seconds (the one CI and the notebooks use)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON file with config fields (e.g. a previous run's config.json), applied over the preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override one config field, repeatable; lists are comma-separated "
                        "(e.g. --set d_k=64 --set kinds=isotropic,powerlaw); --show-config lists the fields")
    p.add_argument("--fresh", action="store_true",
                   help="discard the results already in --out and start over (needed when the config changed)")
    p.add_argument("--threads", type=thread_count, default=1,
                   help="torch threads for the run (1 keeps a shared machine usable; the cost "
                        "experiment sets its own from its config)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--show-config", action="store_true",
                   help="print the resolved config (every field with its value) and exit without running")


def run(args: argparse.Namespace) -> int:
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads_before)


def _run(args: argparse.Namespace) -> int:
    from simulations.config import build_config, config_dict
    from simulations.run import experiment_module, run_experiment
    from simulations.sweep import SweepConfigError

    mod = experiment_module(args.experiment)
    try:
        config = build_config(mod.Config, quick=args.quick, file=args.config, sets=args.sets)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"rlsedit simulate: bad config: {exc}") from None
    if args.show_config:
        print(json.dumps(config_dict(args.experiment, config), indent=2))
        return 0
    try:
        summary = run_experiment(args.experiment, args.out, config=config, fresh=args.fresh,
                                 progress=not args.no_progress)
    except SweepConfigError as exc:
        raise SystemExit(f"rlsedit simulate: {exc}") from None
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0
