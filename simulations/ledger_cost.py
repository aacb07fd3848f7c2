"""What the ledger of applied batches costs per update, against the update itself.

At d_k x d_v (default 14336 x 4096, a Llama-3-8B down_proj) and a batch of u rows (default 100), in
the editor's dtype, it times, best (and median) of ``--repeats``:

    digest   rlsedit.batch_digest(K, V): the sha256 of the batch that every update records
    copy     the copy of K and V that keep_batches=True adds
    step     rlsedit.recursion.rls_update(C, W, K, V, inplace=True): the Woodbury step alone
    update   RLSEditor.update(K, V): validation, digest, step, ledger entry
    update_without_ledger   the same with the ledger's two hooks disabled (what update cost before)

step, update and update_without_ledger are interleaved batch by batch on one editor (each of the
``--repeats`` batches goes through all three), so that a change in the machine's load reaches all
three alike.

The editor is built from a state dict with C = I (the per-batch cost does not depend on C's values;
the constructor's O(d_k^3) factorisation is skipped, as in benchmarks/cases.py). Memory: C, W and
W0 in the dtype (about 1.3 GB in float32 at the default size). One JSON line per dtype on stdout.

    python simulations/ledger_cost.py --threads 1 --out docs/solver_data/ledger_cost.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch

import rlsedit
from rlsedit.ledger import batch_digest
from rlsedit.recursion import rls_update


def editor_with_identity_C(W0: torch.Tensor) -> rlsedit.RLSEditor:
    """``RLSEditor(W0, lam=1.0)`` (C_0 = I) without the constructor's factorisation."""
    state = rlsedit.RLSEditor(torch.zeros(2, 1, dtype=W0.dtype), lam=1.0).state_dict()
    state.update(W0=W0, W=W0.clone(), C=torch.eye(W0.shape[0], dtype=W0.dtype))
    return rlsedit.RLSEditor.from_state_dict(state)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summary(seconds: list[float]) -> dict[str, float]:
    return {"min_s": float(f"{min(seconds):.4g}"), "median_s": float(f"{statistics.median(seconds):.4g}")}


def measure(dtype: torch.dtype, d_k: int, d_v: int, u: int, repeats: int, g: torch.Generator) -> dict:
    W0 = (torch.randn(d_k, d_v, generator=g, dtype=torch.float64) / d_k**0.5).to(dtype)
    ed = editor_with_identity_C(W0)
    batches = [(torch.randn(u, d_k, generator=g, dtype=torch.float64).to(dtype) / d_k**0.5,
                torch.randn(u, d_v, generator=g, dtype=torch.float64).to(dtype)) for _ in range(repeats)]
    K, V = batches[0]
    digest = timed(partial(batch_digest, K, V), 3 * repeats)
    copy = timed(partial(lambda K, V: (K.clone(), V.clone()), K, V), 3 * repeats)
    # Interleaved, on the editor's own C and W, so that drift in the machine's load hits all three:
    # the step alone, update() with its ledger, and update() with the ledger's two hooks disabled.
    step, update, bare = [], [], []
    for K_r, V_r in batches:
        step += timed(partial(rls_update, ed.C, ed.W, K_r, V_r, inplace=True), 1)
        update += timed(partial(ed.update, K_r, V_r), 1)
        ed._prepare_record = lambda K, V: None
        ed._commit_record = lambda pending: None
        bare += timed(partial(ed.update, K_r, V_r), 1)
        del ed._prepare_record, ed._commit_record
    return {
        "d_k": d_k, "d_v": d_v, "u": u, "dtype": str(dtype).removeprefix("torch."),
        "batch_MB": round((K.numel() + V.numel()) * K.element_size() / 2**20, 2),
        "digest": summary(digest), "copy_for_keep_batches": summary(copy),
        "step": summary(step), "update": summary(update), "update_without_ledger": summary(bare),
        "digest_over_step": float(f"{min(digest) / min(step):.3g}"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-k", type=int, default=14336)
    p.add_argument("--d-v", type=int, default=4096)
    p.add_argument("--u", type=int, default=100, help="rows per batch")
    p.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = p.parse_args(argv)
    if min(args.d_k, args.d_v, args.u, args.repeats, args.threads) < 1:
        raise SystemExit("--d-k, --d-v, --u, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    lines = []
    for name in args.dtypes:
        line = measure(getattr(torch, name), args.d_k, args.d_v, args.u, args.repeats, g)
        line.update(threads=args.threads, torch=torch.__version__, machine=platform.machine(),
                    python=platform.python_version())
        print(json.dumps(line), flush=True)
        lines.append(line)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
