"""The ``rlsedit`` command: subcommands discovered from this package's modules.

Each command is one module of this package that declares::

    NAME = "edit"                      # the subcommand
    GROUP = "LLM editing"              # its heading in ``rlsedit --help`` (one of GROUPS)
    HELP = "one line"                  # its line in ``rlsedit --help``
    def add_arguments(parser): ...     # its options
    def run(args) -> int: ...          # what it does (exit status)

Adding a command is adding a module here: nothing lists it (docs/architecture.md). Command modules
import their heavy dependencies (torch, transformers) inside ``run``, so ``rlsedit --help`` stays
fast; only the chosen command's options are built. The solver package :mod:`rlsedit` knows nothing
of this package.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from dataclasses import dataclass
from types import ModuleType

from rlsedit_cli.args import MAX_THREADS, thread_count

# headings of ``rlsedit --help``, in this order
GROUPS = ("solver", "theory", "LLM editing", "benchmarks")


@dataclass(frozen=True)
class Command:
    name: str
    group: str
    help: str
    module: str


def _declares_command(module: ModuleType) -> bool:
    return all(hasattr(module, a) for a in ("NAME", "GROUP", "HELP", "add_arguments", "run"))


def discover() -> dict[str, Command]:
    """Every command module of this package, by subcommand name, grouped in :data:`GROUPS` order."""
    found: list[Command] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "args":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not _declares_command(module):
            continue
        if module.GROUP not in GROUPS:
            raise RuntimeError(f"{module.__name__}: GROUP {module.GROUP!r} is not one of {GROUPS}")
        found.append(Command(module.NAME, module.GROUP, module.HELP, module.__name__))
    names = [c.name for c in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"two command modules declare the same NAME: {duplicates}")
    found.sort(key=lambda c: (GROUPS.index(c.group), c.name))
    return {c.name: c for c in found}


def _overview(commands: dict[str, Command]) -> str:
    """``rlsedit --help``'s list of commands: a table of contents, one heading per group."""
    width = max(len(name) for name in commands) + 2
    lines = []
    for group in GROUPS:
        members = [c for c in commands.values() if c.group == group]
        if members:
            lines.append(f"{group}:")
            lines.extend(f"  {c.name:<{width}}{c.help}" for c in members)
            lines.append("")
    lines.append("`rlsedit COMMAND --help` explains every option of COMMAND.")
    return "\n".join(lines)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s options are built (its module's ``add_arguments``)."""
    from rlsedit import __version__

    commands = discover()
    parser = argparse.ArgumentParser(
        prog="rlsedit",
        usage="rlsedit [-h] [--version] COMMAND [options]",
        description="Lifelong editing with RLSEdit, a soft recursive least-squares editor.",
        epilog=_overview(commands),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rlsedit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    for name, c in commands.items():
        p = sub.add_parser(name, prog=f"rlsedit {name}", description=c.help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(_module=c.module)
        if name == command:
            importlib.import_module(c.module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    from rlsedit.errors import RLSEditError

    try:
        return int(module.run(args) or 0)
    except RLSEditError as exc:  # a bad value reached the solver: say what, no traceback
        print(f"rlsedit {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


__all__ = ["GROUPS", "MAX_THREADS", "Command", "build_parser", "discover", "main", "thread_count"]
