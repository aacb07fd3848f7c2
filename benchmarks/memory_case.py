"""One memory case, run in its own process: ``python -m benchmarks.memory_case --d-k ... --d-v ...``.

Peak resident memory is a property of a whole process, so each case gets a fresh one. The process

1. imports torch and rlsedit and records its resident set (the interpreter's own memory);
2. builds the editor (``RLSEditor(W0, lam=1.0, keep_W0=False)``, see :mod:`benchmarks.cases`;
   ``--keep-W0`` keeps the editor's copy of W0, the default of the class) from a W0 that is then
   freed, records the construction's peak (W0, C_0's factorisation and inverse, the editor's copies),
   and resets the kernel's peak counter (``/proc/self/clear_refs``, Linux), so the construction's
   transient copies are not counted in the stream's peak;
3. streams ``--batches`` batches and records the resident set after each one and the peak.

It prints one JSON object on stdout. Linux only: elsewhere it exits with an error that says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import torch

from rlsedit_cli.args import thread_count

from .cases import batch, random_weight, rls_editor

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(f"{field} is not in {STATUS}")


def rss() -> int:
    """Resident set size now, in bytes."""
    return _status_bytes("VmRSS")


def peak_rss() -> int:
    """Peak resident set size since the process started or the last :func:`reset_peak`."""
    return _status_bytes("VmHWM")


def reset_peak() -> None:
    """Reset the kernel's peak RSS counter to the current RSS (``echo 5 > clear_refs``)."""
    CLEAR_REFS.write_text("5")


def measure(d_k: int, d_v: int, u: int, dtype: torch.dtype, batches: int, seed: int, keep_W0: bool = False) -> dict:
    gc.collect()
    baseline = rss()
    reset_peak()
    editor = rls_editor(random_weight(d_k, d_v, dtype, seed), keep_W0=keep_W0)
    gc.collect()
    construction_peak = peak_rss()
    reset_peak()
    start = rss()
    g = torch.Generator().manual_seed(seed + 1)
    after = []
    for _ in range(batches):
        K, V = batch(d_k, d_v, u, dtype, g)
        editor.update(K, V)
        after.append(rss())
    peak = peak_rss()
    item = torch.finfo(dtype).bits // 8
    floor = (d_k * d_k + d_k * d_v) * item
    return {
        "d_k": d_k, "d_v": d_v, "u": u, "dtype": str(dtype).removeprefix("torch."), "batches": batches,
        "keep_W0": keep_W0,
        "floor_bytes": floor,
        "editor_bytes": floor + (d_k * d_v * item if keep_W0 else 0),  # C, W and the editor's copy of W0, if kept
        "baseline_rss_bytes": baseline,
        "construction_peak_rss_bytes": construction_peak,
        "start_rss_bytes": start,
        "peak_rss_bytes": peak,
        "rss_after_batch_bytes": after,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory_case", description=__doc__.split("\n")[0])
    p.add_argument("--d-k", type=int, required=True, help="key dimension (rows of W, size of C)")
    p.add_argument("--d-v", type=int, required=True, help="value dimension (columns of W)")
    p.add_argument("--u", type=int, required=True, help="edits per batch")
    p.add_argument("--dtype", choices=["float32", "float64"], required=True, help="state dtype")
    p.add_argument("--batches", type=int, required=True, help="batches to stream")
    p.add_argument("--seed", type=int, default=0, help="seed of W0 and of the batches")
    p.add_argument("--threads", type=thread_count, required=True, help="torch threads")
    p.add_argument("--keep-W0", action="store_true",
                   help="build the editor with keep_W0=True (it keeps a copy of W0); default keep_W0=False")
    args = p.parse_args(argv)
    if not (STATUS.exists() and CLEAR_REFS.exists()):
        print("memory cases need Linux's /proc/self/status and /proc/self/clear_refs", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out = measure(args.d_k, args.d_v, args.u, getattr(torch, args.dtype), args.batches, args.seed,
                  keep_W0=args.keep_W0)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
