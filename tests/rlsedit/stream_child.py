"""A child process for the crash/resume tests: runs a synthetic stream with checkpoints.

    python -m tests.rlsedit.stream_child CHECKPOINT OUT [--kill-after-batch T | --pause-in-write N]

With ``--kill-after-batch T`` it prints ``READY`` after applying batch T (before that batch's
checkpoint, if one is due) and blocks on stdin; with ``--pause-in-write N`` it prints ``READY``
half way through writing its N-th checkpoint (the bytes are in the temporary file, the rename has
not happened) and blocks. The parent kills it with SIGKILL at that point: deterministic, no sleeps.
Without either option it runs to the end and writes the final W to OUT (safetensors).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from safetensors.torch import save_file

import rlsedit
import rlsedit.checkpoint
from rlsedit.stream import GaussianStream, run_stream

STREAM = GaussianStream(d_k=24, d_v=5, n_batches=9, batch_size=3, seed=7)
EVERY = 2


def new_editor() -> rlsedit.RLSEditor:
    g = torch.Generator().manual_seed(1)
    W0 = torch.randn(24, 5, generator=g, dtype=torch.float64).float()
    K0 = torch.randn(40, 24, generator=g, dtype=torch.float64).float()
    return rlsedit.RLSEditor(W0, lam=0.05, mu=1.0, anchor_keys=K0, refactor_every=3)


def block() -> None:
    print("READY", flush=True)
    sys.stdin.readline()  # the parent never answers: it kills this process
    raise SystemExit("parent did not kill the child")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--kill-after-batch", type=int)
    p.add_argument("--pause-in-write", type=int)
    args = p.parse_args()
    torch.set_num_threads(1)
    rlsedit.checkpoint._CHUNK = 64  # many small writes, so that "half way" exists
    writes = {"n": 0}

    def on_batch(t, record):
        if t == args.kill_after_batch:
            block()

    def on_progress(written, total):
        if written == min(64, total):
            writes["n"] += 1
        if writes["n"] == args.pause_in_write and written >= total // 2:
            block()

    run = run_stream(new_editor, STREAM, args.checkpoint, every=EVERY, on_batch=on_batch,
                     on_write_progress=on_progress)
    save_file({"W": run.editor.W.contiguous()}, args.out)
    print(json.dumps({"resumed_from": run.resumed_from, "written": run.checkpoints_written,
                      "stale_removed": run.stale_temporaries_removed}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
