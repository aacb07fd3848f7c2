"""Running ``rlsedit edit`` from another command with its output kept in a file."""

from __future__ import annotations

import contextlib
import shutil
import time
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


def run_once(argv: list[str], out: Path, log: Path, label: str) -> int:
    """``rlsedit edit ARGV`` into ``out`` unless a finished run (its ``summary.json``) is there: an
    interrupted run's folder is removed first, its output goes to ``log``, and the terminal gets
    ``label``, then the seconds it took or the end of the log. The exit status (0 for a finished
    run, or one that ended without its summary is reported as failed: 1)."""
    if (out / "summary.json").is_file():
        return 0
    if out.exists():  # an interrupted run: its folder is not empty, start it again
        shutil.rmtree(out)
    print(f"  {label}: ", end="", flush=True)
    t0 = time.perf_counter()
    code = edit_logged(argv, log)
    if code == 0 and not (out / "summary.json").is_file():
        code = 1
    if code != 0:
        print(f"failed (status {code}); the end of {log}:\n{tail(log)}", flush=True)
    else:
        print(f"{time.perf_counter() - t0:.0f} s", flush=True)
    return code
