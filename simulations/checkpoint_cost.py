"""Time and size of an RLSEditor checkpoint (save = serialise + checksum + atomic write with fsync;
load = header checks + read + checksum + rebuild), with and without the float64 information matrix.

    python simulations/checkpoint_cost.py --d-k 4096 --d-v 256 --dir /tmp
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import rlsedit
from rlsedit_cli.args import thread_count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-k", type=int, default=4096)
    p.add_argument("--d-v", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    W0 = torch.randn(args.d_k, args.d_v, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for every in (None, 10):
            ed = rlsedit.RLSEditor(W0, lam=1.0, refactor_every=every)
            path = Path(d) / "editor.safetensors"
            save_s, load_s = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                ed.save(path)
                save_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                back = rlsedit.RLSEditor.load(path, shape=(args.d_k, args.d_v), dtype=torch.float32)
                load_s.append(time.perf_counter() - start)
            assert torch.equal(back.C, ed.C)
            print(json.dumps({"d_k": args.d_k, "d_v": args.d_v, "refactor_every": every,
                              "file_bytes": path.stat().st_size, "file_MB": round(path.stat().st_size / 2**20, 1),
                              "save_s_min": round(min(save_s), 3), "load_s_min": round(min(load_s), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
