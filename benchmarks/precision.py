"""The accuracy cost of float32: the same stream in float32 and float64, ``python -m benchmarks.precision``.

The editor is built by its constructor (``RLSEditor(W0, lam, mu=1, anchor_gram=G)``), with an anchor
Gram of graded spectrum, so that the problems get harder as ``lam`` falls. Reported: the relative
Frobenius errors of the float32 editor's W and C against the float64 editor's after the stream.
Run it with another checkout of ``rlsedit`` first on ``PYTHONPATH`` to compare two versions.
"""

from __future__ import annotations

import json

import torch

import rlsedit

# (lam, decades of the anchor keys' column scales): from easy to hard
PROBLEMS = ((1.0, 1.0), (1e-2, 2.0), (1e-3, 3.0))


def float32_error(d_k: int, d_v: int, u: int, batches: int, lam: float, decades: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    W0 = torch.randn(d_k, d_v, generator=g, dtype=f64) / d_k**0.5
    K0 = torch.randn(2 * d_k, d_k, generator=g, dtype=f64) * torch.logspace(0, -decades, d_k, dtype=f64)
    G = K0.T @ K0  # (d_k, d_k) anchor Gram, eigenvalues spread over about 2 * decades decades
    ref = rlsedit.RLSEditor(W0, lam=lam, mu=1.0, anchor_gram=G)
    low = rlsedit.RLSEditor(W0.float(), lam=lam, mu=1.0, anchor_gram=G.float())
    for _ in range(batches):
        K = 10 * torch.randn(u, d_k, generator=g, dtype=f64) / d_k**0.5
        V = torch.randn(u, d_v, generator=g, dtype=f64)
        ref.update(K, V)
        low.update(K.float(), V.float())
    return {
        "lam": lam, "anchor_decades": decades, "d_k": d_k, "d_v": d_v, "u": u, "batches": batches,
        "W_rel_error": float(torch.linalg.norm(low.W.double() - ref.W) / torch.linalg.norm(ref.W)),
        "C_rel_error": float(torch.linalg.norm(low.C.double() - ref.C) / torch.linalg.norm(ref.C)),
    }


def run(d_k: int = 512, d_v: int = 128, u: int = 10, batches: int = 200, seed: int = 0) -> list[dict]:
    return [float32_error(d_k, d_v, u, batches, lam, decades, seed) for lam, decades in PROBLEMS]


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
