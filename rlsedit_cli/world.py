"""``rlsedit world``: write a synthetic fact world (CounterFact and ZsRE formats, training corpus)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_experiments.data.world import RELATION_SPECS, World, WorldConfig, WorldConfigError, write_world

NAME = "world"
GROUP = "LLM editing"
HELP = "write a synthetic fact world (CounterFact and ZsRE formats, training corpus)"


def add_world_arguments(p: argparse.ArgumentParser) -> None:
    """The WorldConfig options (shared with ``rlsedit train-tiny``)."""
    d = WorldConfig()
    p.add_argument("--people", type=int, default=d.n_people, help="number of fictional people")
    p.add_argument("--relations", type=int, default=d.n_relations,
                   help=f"attributes per person (1 to {len(RELATION_SPECS)}); facts = people x relations")
    p.add_argument("--pool-size", type=int, default=d.pool_size, help="objects per relation, shared by people")
    p.add_argument("--renderings", type=int, default=d.renderings, help="training biographies per person")
    p.add_argument("--heldout-wordings", type=int, default=d.heldout_wordings,
                   help="wordings per relation kept out of training (the paraphrases)")
    p.add_argument("--question-fraction", type=float, default=d.question_fraction,
                   help="share of people whose question-style prompts are trained")
    p.add_argument("--world-seed", type=int, default=d.seed, help="seed of the world")


def world_config_from_args(args: argparse.Namespace) -> WorldConfig:
    return WorldConfig(n_people=args.people, n_relations=args.relations, pool_size=args.pool_size,
                       renderings=args.renderings, heldout_wordings=args.heldout_wordings,
                       question_fraction=args.question_fraction, seed=args.world_seed)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory to write the world's files into")
    add_world_arguments(p)
    p.add_argument("--n-edits", type=int, default=None,
                   help="edit requests to write (default: one per fact, every fact edited once)")
    p.add_argument("--edit-seed", type=int, default=0, help="seed of the edit requests' order and new targets")


def run(args: argparse.Namespace) -> int:
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise SystemExit(f"rlsedit world: --out {args.out}: exists and is not a directory")
    try:
        world = World(world_config_from_args(args))
        paths = write_world(world, args.out, n_edits=args.n_edits, edit_seed=args.edit_seed)
    except WorldConfigError as exc:
        raise SystemExit(f"rlsedit world: {exc}") from exc
    except OSError as exc:  # --out is a file, or cannot be written
        raise SystemExit(f"rlsedit world: --out {args.out}: {exc.strerror or exc}") from exc
    n_texts = len(world.training_texts())
    print(f"world {world.config.digest()}: {world.config.n_people} people x {world.config.n_relations} relations "
          f"= {world.config.n_facts} facts, {n_texts} training sequences")
    for path in paths.values():
        print(f"  wrote {path}")
    return 0
