"""Running ``rlsedit edit`` from another command with its output kept in a file."""

from __future__ import annotations

import contextlib
from pathlib import Path


def edit_logged(argv: list[str], log: Path) -> int:
    """``rlsedit edit ARGV`` in this process, everything it prints (its tables, its progress bars and
    those of transformers) written to ``log`` instead of the terminal; the exit status.

    A refusal (``SystemExit`` with a message) is written to the log and returns 1; any other
    exception propagates, with the terminal restored, after its traceback is written to the log.
    """
    import traceback

    from rlsedit_cli import main

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            return main(["edit", *argv])
        except SystemExit as exc:
            if isinstance(exc.code, int):
                return exc.code
            print(exc.code, file=fh)
            return 1
        except BaseException:
            traceback.print_exc(file=fh)
            raise


def tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of ``log`` (for a failure message)."""
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(text[-lines:])
