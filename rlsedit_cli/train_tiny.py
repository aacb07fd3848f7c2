"""``rlsedit train-tiny``: train (or reuse) a tiny Llama/Qwen2 on a fact world."""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from llm_experiments.data.world import WorldConfig, WorldConfigError
from llm_experiments.tiny.training import (
    ARCHS,
    QUICK_TRAIN,
    QUICK_WORLD,
    CacheMismatchError,
    TrainConfig,
    TrainConfigError,
    train_or_load,
)
from rlsedit_cli.args import thread_count
from rlsedit_cli.world import add_world_arguments, world_config_from_args

NAME = "train-tiny"
GROUP = "LLM editing"
HELP = "train (or reuse) a tiny Llama/Qwen2 on a fact world"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--arch", choices=ARCHS, default=d.arch, help="model class: LlamaForCausalLM or Qwen2ForCausalLM")
    p.add_argument("--out", required=True,
                   help="cache directory: reused if it holds a model trained with the same settings, "
                        "refused if it holds another; trained and written if new or empty")
    p.add_argument("--quick", action="store_true",
                   help="a 16-person world and a 2-layer hidden-32 model that train in seconds (smoke tests); "
                        "ignores the world and size options below")
    add_world_arguments(p)
    p.add_argument("--hidden", type=int, default=d.hidden, help="hidden size")
    p.add_argument("--layers", type=int, default=d.layers, help="number of transformer layers")
    p.add_argument("--heads", type=int, default=d.heads, help="attention heads")
    p.add_argument("--d-ff", type=int, default=d.d_ff, help="MLP width (the dimension of the edit keys)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="steps of linear warm-up")
    p.add_argument("--constant-fraction", type=float, default=d.constant_fraction,
                   help="share of the steps at the full learning rate before the linear decay")
    p.add_argument("--epochs", type=float, default=d.epochs, help="passes over the world's training corpus")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation and batch order")
    p.add_argument("--threads", type=thread_count, default=2, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def configs_from_args(args: argparse.Namespace) -> tuple[WorldConfig, TrainConfig]:
    if args.quick:
        return QUICK_WORLD, replace(QUICK_TRAIN, arch=args.arch, seed=args.seed)
    train_config = TrainConfig(arch=args.arch, hidden=args.hidden, layers=args.layers, heads=args.heads,
                               d_ff=args.d_ff, lr=args.lr, batch_size=args.batch_size,
                               weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                               constant_fraction=args.constant_fraction, epochs=args.epochs, seed=args.seed)
    return world_config_from_args(args), train_config


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    try:
        world_config, train_config = configs_from_args(args)
        tiny = train_or_load(world_config, train_config, args.out, progress=not args.no_progress)
    except (WorldConfigError, TrainConfigError, CacheMismatchError) as exc:
        raise SystemExit(f"rlsedit train-tiny: {exc}") from exc
    m = tiny.metadata
    acc = m["accuracy"]
    print(f"{'reused' if tiny.reused else 'trained'} {train_config.arch} in {tiny.path}: "
          f"{m['n_facts']} facts, {m['n_params']} parameters, {m['steps']} steps in {m['train_seconds']:.1f} s")
    print(f"accuracy: trained wordings {acc['trained']:.1%}, held-out wordings {acc['heldout']:.1%}, "
          f"held-out questions {acc['question']:.1%}")
    return 0
