"""Long mode (not CI): ten times the paper's horizon at the Llama-3-8B layer size.

One stream of ``--edits`` (default 100,000) edits in batches of ``--batch`` (100) into a float32
RLSEditor at d_k x d_v = 14336 x 4096, compared at ``--checkpoints`` points with the float64 batch
solution W* = W0 + A^{-1} B (docs/method.md section 3; A and B accumulated here in float64, independently
of the editor), with C's health (symmetry error, extreme eigenvalue estimates, definiteness)
recorded at each point. One JSON line per checkpoint goes to ``--out`` as it is reached.

Keys have a diagonal covariance with eigenvalues log-spaced over ``--key-decades`` decades (a
random basis would need an O(d_k^3) QR at this size for no change in the recursion's rounding
behaviour worth the cost); the anchor Gram is n_w times that covariance (n_w = 15000), lam = 0,
mu = 1, as in the authors' configuration. Batch t is drawn from a generator seeded by (seed, t).

Memory: C (float32, 0.8 GB), A (float64, 1.6 GB), its Cholesky factor at checkpoints (1.6 GB),
W, W0, B: about 5 GB at the default size. Time on a 2-core CPU: on the order of 15 minutes for the
recursion plus as long again for the float64 accumulation and a Cholesky factorisation per
checkpoint. It occupies both cores: do not run it on a shared machine.

    python simulations/long_stream.py --out results/long_stream.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import rlsedit
from rlsedit_cli.args import thread_count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-k", type=int, default=14336)
    p.add_argument("--d-v", type=int, default=4096)
    p.add_argument("--edits", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--key-decades", type=float, default=4.0)
    p.add_argument("--refactor-every", type=int, default=None, help="batches; default off")
    p.add_argument("--threads", type=thread_count, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.edits % args.batch or (args.edits // args.batch) % args.checkpoints:
        raise SystemExit("--edits must be a multiple of --batch, and the batches of --checkpoints")
    torch.set_num_threads(args.threads)
    d_k, d_v, u = args.d_k, args.d_v, args.batch
    n_batches = args.edits // u
    every = n_batches // args.checkpoints

    g = torch.Generator().manual_seed(args.seed)
    s = torch.logspace(0.0, -args.key_decades, d_k, dtype=torch.float64)  # key covariance (diagonal)
    scale = s.sqrt()
    G = torch.diag(15000.0 * s).float()  # anchor Gram n_w E[k k^T], as the float32 editor holds it
    W0 = (torch.randn(d_k, d_v, generator=g, dtype=torch.float64) / math.sqrt(d_k)).float()
    W_true = W0.double() + torch.randn(d_k, d_v, generator=g, dtype=torch.float64) / math.sqrt(d_k)

    def batch(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        bg = torch.Generator().manual_seed(args.seed * 1_000_003 + t + 1)
        K = torch.randn(u, d_k, generator=bg, dtype=torch.float64) * scale  # (u, d_k)
        V = K @ W_true + 0.1 * torch.randn(u, d_v, generator=bg, dtype=torch.float64) * float(s.mean().sqrt())
        return K.float(), V.float()  # the data as float32 numbers; the oracle sees the same

    ed = rlsedit.RLSEditor(W0, mu=1.0, anchor_gram=G, refactor_every=args.refactor_every)
    A = G.double()  # lam = 0, mu = 1
    B = torch.zeros(d_k, d_v, dtype=torch.float64)
    W0d = W0.double()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    recursion_s = oracle_s = 0.0
    with args.out.open("w") as f:
        f.write(json.dumps({"config": vars(args) | {"out": str(args.out)}, "torch": torch.__version__}) + "\n")
        for t in tqdm(range(n_batches), desc=f"long stream {d_k}x{d_v}", unit="batch", disable=args.no_progress):
            K, V = batch(t)
            start = time.perf_counter()
            ed.update(K, V)
            recursion_s += time.perf_counter() - start
            start = time.perf_counter()
            Kd = K.double()
            A.addmm_(Kd.T, Kd)  # (d_k, u) @ (u, d_k)
            B.addmm_(Kd.T, V.double() - Kd @ W0d)
            oracle_s += time.perf_counter() - start
            if (t + 1) % every == 0:
                start = time.perf_counter()
                L = torch.linalg.cholesky(A)
                W_ref = W0d + torch.cholesky_solve(B, L)
                del L
                h = ed.health()
                row = {
                    "edits": (t + 1) * u,
                    "W_rel_err_of_change": float(torch.linalg.vector_norm(ed.W.double() - W_ref))
                    / float(torch.linalg.vector_norm(W_ref - W0d)),
                    "W_rel_err": float(torch.linalg.vector_norm(ed.W.double() - W_ref))
                    / float(torch.linalg.vector_norm(W_ref)),
                    "symmetry_error": h.symmetry_error, "min_eigenvalue": h.min_eigenvalue,
                    "max_eigenvalue": h.max_eigenvalue, "condition_number": h.condition_number,
                    "positive_definite": h.positive_definite,
                    "recursion_seconds": recursion_s, "oracle_seconds": oracle_s,
                    "checkpoint_seconds": time.perf_counter() - start,
                }
                f.write(json.dumps(row) + "\n")
                f.flush()
                tqdm.write(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
