"""Float32 drift of the RLSEdit recursion from the float64 batch solution, with and without
periodic re-factorisation (docs/reliability.md, "Numerical health").

One synthetic stream of ``--edits`` edit rows at (d_k, d_v) is fed to float32 editors twice: one
row at a time (rank-1 updates) and in batches of ``--batch``, each with ``refactor_every`` off and
set to ``--refactor-rows`` rows. At ``--checkpoints`` evenly spaced points the editors' W and C are
compared with the float64 batch solution W* = W0 + A^{-1} B, C* = A^{-1} (docs/method.md section 3),
accumulated here independently of the editor, and C's health is recorded.

The problem imitates an LLM layer: keys with covariance Sigma = U diag(s) U^T, s log-spaced over
``--key-decades`` decades; anchor Gram G = n_w Sigma (n_w = 15000, the authors' statistic), lam = 0,
mu = 1 (the authors' configuration); values V = K W_true + noise, W_true = W0 + a random change.

    python simulations/drift_float32.py --d-k 1024 --out results/drift_1024.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import rlsedit
from rlsedit_cli.args import thread_count


def make_problem(d_k: int, d_v: int, n: int, decades: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(d_k, d_k, generator=g, dtype=torch.float64))
    s = torch.logspace(0.0, -decades, d_k, dtype=torch.float64)  # key covariance spectrum
    M = s.sqrt()[:, None] * U.T  # (d_k, d_k): k = z M has covariance M^T M = U diag(s) U^T
    G = 15000.0 * (M.T @ M)  # (d_k, d_k) anchor Gram n_w E[k k^T]
    G = 0.5 * (G + G.T)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=torch.float64) / math.sqrt(d_k)
    W_true = W0 + torch.randn(d_k, d_v, generator=g, dtype=torch.float64) / math.sqrt(d_k)
    K = torch.randn(n, d_k, generator=g, dtype=torch.float64) @ M  # (n, d_k)
    V = K @ W_true + 0.1 * torch.randn(n, d_v, generator=g, dtype=torch.float64) * float(s.mean().sqrt())
    # The float32 runs and the float64 oracle see the same numbers: round the data once.
    return G.float().double(), W0.float().double(), K.float().double(), V.float().double()


def reference(G, W0, K, V, points):
    """W*(n), C*(n) in float64 at each checkpoint n, accumulated independently of rlsedit."""
    A = G.clone()  # lam = 0, mu = 1: A_0 = G
    B = torch.zeros_like(W0)  # default anchor values: B_0 = 0
    out, prev = {}, 0
    for n in points:
        Kb = K[prev:n]
        A.addmm_(Kb.T, Kb)  # (d_k, rows) @ (rows, d_k)
        B.addmm_(Kb.T, V[prev:n] - Kb @ W0)
        L = torch.linalg.cholesky(0.5 * (A + A.T))
        out[n] = (W0 + torch.cholesky_solve(B, L), torch.cholesky_inverse(L))
        prev = n
    return out


def rel(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a.double() - b)) / float(torch.linalg.vector_norm(scale))


def run(G, W0, K, V, points, refs, *, u: int, refactor_every: int | None, dtype, exact_health: bool):
    ed = rlsedit.RLSEditor(W0.to(dtype), mu=1.0, anchor_gram=G.to(dtype), refactor_every=refactor_every)
    rows, stream_s, curve = 0, 0.0, []
    for n in points:
        start = time.perf_counter()
        while rows < n:
            ed.update(K[rows:rows + u], V[rows:rows + u])  # cast to the editor's dtype inside
            rows += u
        stream_s += time.perf_counter() - start
        W_ref, C_ref = refs[n]
        h = ed.health(exact=exact_health)
        curve.append({
            "edits": n,
            "W_rel_err_of_change": rel(ed.W, W_ref, W_ref - W0),
            "W_rel_err": rel(ed.W, W_ref, W_ref),
            "C_rel_err": rel(ed.C, C_ref, C_ref),
            "edit_residual_rel_gap": rel(K[:n] @ ed.W.double(), K[:n] @ W_ref, K[:n] @ W_ref - V[:n]),
            "symmetry_error": h.symmetry_error,
            "min_eigenvalue": h.min_eigenvalue,
            "condition_number": h.condition_number,
            "positive_definite": h.positive_definite,
        })
        print(json.dumps({"u": u, "refactor_every": refactor_every, "dtype": str(dtype), **curve[-1]}),
              flush=True)
    return {"u": u, "refactor_every": refactor_every, "dtype": str(dtype), "stream_seconds": stream_s,
            "seconds_per_edit_row": stream_s / rows, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-k", type=int, default=1024)
    p.add_argument("--d-v", type=int, default=256)
    p.add_argument("--edits", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=100, help="rows per batch of the batched run")
    p.add_argument("--refactor-rows", type=int, default=1000, help="re-factorise every this many rows")
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--key-decades", type=float, default=4.0, help="log10 condition number of E[k k^T]")
    p.add_argument("--modes", default="rank1,batch", help="comma list of rank1, batch")
    p.add_argument("--float64", action="store_true", help="also run the float64 recursion")
    p.add_argument("--exact-health", action="store_true", help="eigvalsh instead of the estimate")
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    p.add_argument("--initial-only", action="store_true",
                   help="only print the float32 error of C_0 = (mu G)^{-1} against float64, and exit")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.initial_only:
        G, W0, _, _ = make_problem(args.d_k, args.d_v, 1, args.key_decades, args.seed)
        C0 = rlsedit.RLSEditor(W0.float(), mu=1.0, anchor_gram=G.float()).C
        C0_ref = torch.cholesky_inverse(torch.linalg.cholesky(G))
        print(json.dumps({"d_k": args.d_k, "C0_float32_rel_err": rel(C0, C0_ref, C0_ref)}))
        return 0
    if args.out is None:
        raise SystemExit("--out is required")
    if args.edits % args.batch or args.edits % args.checkpoints or args.refactor_rows % args.batch:
        raise SystemExit("--edits, --refactor-rows must be multiples of --batch, --edits of --checkpoints")
    points = [args.edits // args.checkpoints * (i + 1) for i in range(args.checkpoints)]
    if any(n % args.batch for n in points):
        raise SystemExit("checkpoints must fall on batch boundaries")

    t0 = time.perf_counter()
    G, W0, K, V = make_problem(args.d_k, args.d_v, args.edits, args.key_decades, args.seed)
    refs = reference(G, W0, K, V, points)
    setup_s = time.perf_counter() - t0
    result = {
        "config": vars(args) | {"out": str(args.out)},
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine()},
        "setup_seconds": setup_s,
        "runs": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dtypes = [torch.float32] + ([torch.float64] if args.float64 else [])
    for mode in args.modes.split(","):
        u = 1 if mode == "rank1" else args.batch
        for dtype in dtypes:
            for every in (None, args.refactor_rows // u):
                result["runs"].append(run(G, W0, K, V, points, refs, u=u, refactor_every=every, dtype=dtype,
                                          exact_health=args.exact_health))
                args.out.write_text(json.dumps(result, indent=1))  # after each run: partial results survive
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
