"""``rlsedit demo``: stream synthetic edits into an editor and check it against ``batch_solve``.

A ground-truth map W_true plays the facts to write; W0 = W_true + noise is the "pre-trained"
weight; anchor keys K0 preserve W0's behaviour on generic inputs. Each batch of keys K gets
values V = K W_true. The demo prints each batch's residual before and after the write, and after
the stream the distance between the recursion's W and the closed-form solution.
"""

from __future__ import annotations

import argparse
import time

import torch

from rlsedit.closed_form import batch_solve
from rlsedit.registry import EDITORS, make_editor

NAME = "demo"
GROUP = "solver"
HELP = "stream synthetic edits into an editor and compare with batch_solve"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--editor", choices=sorted(EDITORS), default="rlsedit", help="editor to stream into")
    p.add_argument("--d-k", type=int, default=256, help="key dimension (rows of W)")
    p.add_argument("--d-v", type=int, default=64, help="value dimension (columns of W)")
    p.add_argument("--batches", type=int, default=10, help="number of edit batches")
    p.add_argument("--batch-size", type=int, default=8, help="edits per batch (u)")
    p.add_argument("--lam", type=float, default=0.1, help="weight of ||W - W0||^2")
    p.add_argument("--mu", type=float, default=1.0, help="weight of the anchor term ||K0 W - V0||^2")
    p.add_argument("--anchor-keys", type=int, default=512, help="number of anchor keys K0")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=int, default=0)


def _check(args: argparse.Namespace) -> None:
    for name in ("d_k", "d_v", "batches", "batch_size", "anchor_keys"):
        if getattr(args, name) < 1:
            raise SystemExit(f"rlsedit demo: --{name.replace('_', '-')} must be >= 1")


def run(args: argparse.Namespace) -> int:
    _check(args)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(args.seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    W_true = randn(args.d_k, args.d_v) / args.d_k**0.5
    W0 = W_true + 0.5 * randn(args.d_k, args.d_v) / args.d_k**0.5
    K0 = randn(args.anchor_keys, args.d_k)
    kwargs = {"lam": args.lam, "mu": args.mu, "anchor_keys": K0}
    if args.editor == "alphaedit":
        kwargs = {"anchor_keys": K0[: args.d_k // 2], "threshold": 1e-6}
    elif args.editor == "ft":
        kwargs = {}
    editor = make_editor(args.editor, W0, **kwargs)

    print(f"rlsedit demo: {editor}")
    print(f"{'batch':>5} {'rows':>5} {'residual before':>16} {'residual after':>15} {'written':>8}")
    keys, values = [], []
    start = time.perf_counter()
    for t in range(args.batches):
        K = randn(args.batch_size, args.d_k)
        V = K @ W_true
        rec = editor.update(K, V)
        keys.append(K)
        values.append(V)
        written = 1.0 - rec.residual_after / rec.residual_before if rec.residual_before else 1.0
        print(f"{t:>5} {rec.rows:>5} {rec.residual_before:>16.4e} {rec.residual_after:>15.4e} {written:>8.1%}")
    elapsed = time.perf_counter() - start
    print(f"{args.batches} batches, {editor.n_rows} edit rows in {elapsed:.3f} s")

    if args.editor == "rlsedit":
        W_batch = batch_solve(W0, keys, values, lam=args.lam, mu=args.mu, anchor_keys=K0)
        gap = float((editor.W - W_batch).abs().max())
        rel = gap / float(W_batch.abs().max())
        print(f"max |W_recursive - W_batch_solve| = {gap:.3e}  (relative {rel:.3e}, {args.dtype})")
    else:
        print("(batch_solve is the oracle of the cumulative objective, i.e. of --editor rlsedit only)")
    return 0
