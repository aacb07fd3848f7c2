"""The ``rlsedit`` command. Each subcommand lives in its own module, imported only when it runs.

A module named in :data:`SUBCOMMANDS` provides ``add_arguments(parser)`` and ``run(args) -> int``.
Importing this module imports neither transformers nor any subcommand's module.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Later work adds one line here per subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("rlsedit.demo", "stream synthetic edits into an editor and compare with batch_solve"),
    "llm-stats": ("llm_experiments.stats_cli", "compute or import E[kk^T] of a local model's edited layers"),
    "llm-edit": ("llm_experiments.stream_edit_cli", "edit a local model with a stream of requests (JSON), resumably"),
    "llm-bench": ("llm_experiments.bench", "time the LLM editing machinery on a random Llama built from a config"),
    "evaluate": ("llm_experiments.eval_cli", "score a local checkpoint on CounterFact/ZsRE and general capability"),
    "simulate": ("simulations.cli_simulate", "run a theory/simulation experiment into a results folder"),
    "figures": ("simulations.cli_figures", "draw the figures of results folders (PDF + PNG)"),
    "bench": ("benchmarks.cli", "benchmark the solver against this machine's matmul and bandwidth limits"),
    "world": ("llm_experiments.world", "write a synthetic fact world (CounterFact and ZsRE formats, training corpus)"),
    "train-tiny": ("llm_experiments.tiny_models", "train (or reuse) a tiny Llama/Qwen2 on a fact world"),
    "stream": ("rlsedit.stream_cli", "a synthetic edit stream, checkpointed every N batches and resumable"),
    "edit": ("llm_experiments.edit_cli", "edit a tiny fact model or a checkpoint with a stream of edits, evaluate"),
    "edit-table": ("llm_experiments.edit_table", "the paper's main table and stream figures from `rlsedit edit` runs"),
}


# torch.set_num_threads(100000) kills the process (a segfault), so every --threads option is bounded.
MAX_THREADS = 1024


def thread_count(text: str) -> int:
    """The ``type`` of every subcommand's ``--threads`` option: an integer from 1 to :data:`MAX_THREADS`."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_THREADS}, got {n}")
    return n


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported, to add that subcommand's options."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="rlsedit",
        description="Lifelong editing with RLSEdit, a soft recursive least-squares editor.",
    )
    parser.add_argument("--version", action="version", version=f"rlsedit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    from .errors import RLSEditError

    try:
        return int(module.run(args) or 0)
    except RLSEditError as exc:  # a bad value reached the solver: say what, no traceback
        print(f"rlsedit {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
