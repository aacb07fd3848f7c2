"""``rlsedit synthetic-stream``: a synthetic edit stream into RLSEditor, checkpointed and resumable.

Run it, kill it (Ctrl-C, SIGKILL, a power cut), run the same command again: it continues from the
last checkpoint and ends with the same W, bit for bit, as an uninterrupted run (same dtype, device
and thread count).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rlsedit.editor import RLSEditor
from rlsedit.stream import GaussianStream, run_stream
from rlsedit_cli.args import thread_count

NAME = "synthetic-stream"
GROUP = "solver"
HELP = "a synthetic edit stream into RLSEditor, checkpointed every N batches and resumable"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file (created or resumed)")
    p.add_argument("--every", type=int, default=10, help="write a checkpoint after every this many batches")
    p.add_argument("--d-k", type=int, default=256, help="key dimension (rows of W)")
    p.add_argument("--d-v", type=int, default=64, help="value dimension (columns of W)")
    p.add_argument("--batches", type=int, default=100, help="number of edit batches in the stream")
    p.add_argument("--batch-size", type=int, default=10, help="edits per batch (u)")
    p.add_argument("--lam", type=float, default=1.0, help="weight of ||W - W0||^2")
    p.add_argument("--refactor-every", type=int, default=None, help="re-factorise every N batches (off)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float32")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (bitwise resume needs the same)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    for name in ("every", "d_k", "d_v", "batches", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"rlsedit synthetic-stream: --{name.replace('_', '-')} must be >= 1")
    if args.seed < 0:
        raise SystemExit("rlsedit synthetic-stream: --seed must be >= 0")
    torch.set_num_threads(args.threads)
    stream = GaussianStream(args.d_k, args.d_v, args.batches, args.batch_size, args.seed)
    dtype = getattr(torch, args.dtype)

    def new_editor() -> RLSEditor:
        W0 = torch.zeros(args.d_k, args.d_v, dtype=dtype)
        return RLSEditor(W0, lam=args.lam, refactor_every=args.refactor_every)

    config = {"editor": "rlsedit", "lam": args.lam, "refactor_every": args.refactor_every, "dtype": args.dtype}
    def monitor(position: int, editor) -> None:
        h = editor.health()
        print(f"checkpoint at batch {position}: C positive definite {h.positive_definite}, "
              f"condition number ~{h.condition_number:.3g}", flush=True)

    done = run_stream(new_editor, stream, args.checkpoint, every=args.every, config=config,
                      on_checkpoint=monitor)
    ed = done.editor
    start = f"resumed at batch {done.resumed_from}" if done.resumed_from else "started fresh"
    print(f"rlsedit synthetic-stream: {start}; {ed.n_batches} batches, {ed.n_rows} edit rows; "
          f"{done.checkpoints_written} checkpoint(s) written to {args.checkpoint}")
    return 0
