"""Argument types shared by the commands."""

from __future__ import annotations

import argparse

from rlsedit.config import MAX_THREADS


def thread_count(text: str) -> int:
    """The ``type`` of every command's ``--threads`` option: an integer from 1 to :data:`MAX_THREADS`."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_THREADS}, got {n}")
    return n


def int_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; anything else is refused with the text quoted."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
