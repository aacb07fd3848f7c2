"""The kernels the step could use instead of its two dense products over C, timed side by side.

``python -m benchmarks.kernels --d-k 14336 --u 1,100`` times, on one float32 C, interleaved:

- the downdate C -= G G^T as the solver does it, ``torch.addmm_`` over the whole matrix;
- the same on the lower triangle only, BLAS ``ssyrk`` through scipy (half the flops and traffic;
  C's upper triangle is left stale, so the solver could use it only by storing one triangle);
- the same by lower panels mirrored into the upper triangle in torch (exact symmetry, full matrix);
- the same on the lower triangle only by row panels in torch (``lower_panel_downdate_``: the
  triangle and the diagonal blocks, about half the flops, upper triangle left stale);
- F = C K^T as the solver does it (``torch.mm``), as BLAS ``ssymv``/``ssymm`` on one triangle, and
  from the lower triangle by panels in torch (``lower_panel_symm``: each panel read by two products,
  once as it is and once transposed).

It prints one JSON object: the median seconds of each kernel and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from scipy.linalg import blas


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def panel_downdate_(C: torch.Tensor, G: torch.Tensor, block: int) -> None:
    """C -= G G^T computing each off-diagonal block once and writing it to both triangles."""
    d = C.shape[0]
    for i in range(0, d, block):
        j = min(i + block, d)
        if i:
            B = G[i:j] @ G[:i].T  # (b, i) panel below the diagonal
            C[i:j, :i].sub_(B)
            C[:i, i:j].sub_(B.T)  # its mirror image, a strided write
        C[i:j, i:j].addmm_(G[i:j], G[i:j].T, alpha=-1.0)  # (b, u) @ (u, b) diagonal block


def lower_panel_downdate_(C: torch.Tensor, G: torch.Tensor, block: int) -> None:
    """C -= G G^T on the lower triangle (and the diagonal blocks) only: one ``addmm_`` per row panel."""
    d = C.shape[0]
    for i in range(0, d, block):
        j = min(i + block, d)
        C[i:j, :j].addmm_(G[i:j], G[:j].T, alpha=-1.0)  # (b, u) @ (u, j): the panel up to its diagonal block


def lower_panel_symm(C: torch.Tensor, Kt: torch.Tensor, block: int) -> torch.Tensor:
    """F = C Kt for a symmetric C of which only the lower triangle is read.  # (d, u)"""
    d = C.shape[0]
    F = torch.zeros(d, Kt.shape[1], dtype=C.dtype)
    for i in range(0, d, block):
        j = min(i + block, d)
        if i:
            P = C[i:j, :i]  # (b, i), strictly below the diagonal block
            F[i:j].addmm_(P, Kt[:i])
            F[:i].addmm_(P.T, Kt[i:j])  # the panel's mirror image in the upper triangle
        D = C[i:j, i:j]
        F[i:j].addmm_(D.tril() + D.tril(-1).T, Kt[i:j])  # the diagonal block, symmetrised (b x b)
    return F


def measure(d_k: int, u: int, repeats: int, block: int) -> dict:
    g = torch.Generator().manual_seed(0)
    C = torch.eye(d_k, dtype=torch.float32)
    Cf = C.numpy().T  # the same memory as a Fortran-ordered array (C is symmetric)
    G = 1e-3 * torch.randn(d_k, u, generator=g, dtype=torch.float32)
    K = torch.randn(u, d_k, generator=g, dtype=torch.float32)
    Gf, Kf = np.asfortranarray(G.numpy()), np.asfortranarray(K.numpy().T)
    Kt = K.T.contiguous()
    lower_block = 512
    kernels = {
        "downdate addmm_ (solver)": lambda: C.addmm_(G, G.T, alpha=-1.0),
        "downdate ssyrk (one triangle)": lambda: blas.ssyrk(-1.0, Gf, beta=1.0, c=Cf, lower=1, overwrite_c=1),
        "downdate panels + mirror": lambda: panel_downdate_(C, G, block),
        "downdate lower panels (torch, one triangle)": lambda: lower_panel_downdate_(C, G, lower_block),
        "F = C K^T mm (solver)": lambda: torch.mm(C, K.T),
        "F = C K^T ssymv/ssymm (one triangle)": (
            (lambda: blas.ssymv(1.0, Cf, Kf[:, 0], lower=1)) if u == 1 else (lambda: blas.ssymm(1.0, Cf, Kf, lower=1))
        ),
        "F = C K^T lower panels (torch, one triangle)": lambda: lower_panel_symm(C, Kt, lower_block),
    }
    for fn in kernels.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(repeats):
        for name, fn in kernels.items():
            times[name].append(_seconds(fn))
    return {"d_k": d_k, "u": u, "dtype": "float32", "repeats": repeats, "panel_block": block,
            "lower_panel_block": lower_block,
            "seconds_median": {name: statistics.median(t) for name, t in times.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n")[0])
    p.add_argument("--d-k", type=int, default=14336, help="size of C")
    p.add_argument("--u", default="1,100", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per kernel (median reported)")
    p.add_argument("--block", type=int, default=2048, help="panel height of the panels + mirror variant")
    args = p.parse_args(argv)
    load_start = list(os.getloadavg())
    cases = [measure(args.d_k, int(u), args.repeats, args.block) for u in args.u.split(",")]
    print(json.dumps({"threads": torch.get_num_threads(), "load_start": load_start,
                      "load_end": list(os.getloadavg()), "cases": cases}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
