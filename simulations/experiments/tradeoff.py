"""Experiment 3: the adherence/preservation trade-off over a grid of lam and mu (:mod:`theory.tradeoff`).

One stream (anchor-correlated keys by default, anchor with a null space so that mu -> inf leaves
room for the edits); for every (lam, mu) of the grid the minimiser W(lam, mu) (batch_solve) and

    adherence      f / E_t        edits' residual relative to W0's (0 = every edit written)
    weight_drift   ||W - W0||_F / ||W0||_F
    anchor_drift   ||K0 (W - W0)||_F^2 / ||K0 W0||_F^2   on the anchor Gram
    heldout_drift  tr(D^T Sigma_A D) / tr(W0^T Sigma_A W0)   on the anchor's key distribution

The summary counts the monotonicity checks of the theory (g non-increasing and f + mu h
non-decreasing in lam; h non-increasing and f + lam g non-decreasing in mu) and the distances to
the limits: lam, mu -> 0 (full adherence), lam -> inf (W0), mu -> inf (anchor pinned), and the
rate of the last one at the smallest lam: the log-log slope of ||W(mu) - W_pin||_F over the largest
quarter of the mu grid (theory: -1; the upper half is recorded) and mu ||W(mu) - W_pin||_F / ||D1||_F
at the largest mu (theory: -> 1; D1 the exact first-order term, :func:`theory.anchor_pinned_first_order`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

import rlsedit
from rlsedit.config import Config as BaseConfig
from simulations.streams import KINDS, make_stream
from theory import (
    anchor_pinned_first_order,
    anchor_pinned_limit,
    fit_loglog_slope,
    full_adherence_limit,
    tradeoff_terms,
)

from ._common import check_positive

NAME = "tradeoff"


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the trade-off experiment.

    kind: stream kind; lam_range, mu_range: log10 of the smallest and largest lam / mu ("lo,hi");
    n_grid: grid points per axis; d_k, d_v, u, n_batches: sizes (n_batches * u edit rows);
    anchor_rank: rank of the anchor Gram (0 = full rank); n_anchor: its scale; values: value mode;
    seed: the stream's seed; tolerance: relative slack for the monotonicity checks (rounding).
    """

    kind: str = "anchored"
    lam_range: tuple[float, ...] = (-4.0, 4.0)
    mu_range: tuple[float, ...] = (-4.0, 4.0)
    n_grid: int = 17
    d_k: int = 48
    d_v: int = 12
    u: int = 4
    n_batches: int = 8
    anchor_rank: int = 24
    n_anchor: float = 100.0
    values: str = "arbitrary"
    seed: int = 0
    tolerance: float = 1e-7

    def validate(self) -> None:
        check_positive(self, "n_grid", "d_k", "d_v", "u", "n_batches", "tolerance")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        for name in ("lam_range", "mu_range"):
            r = getattr(self, name)
            if len(r) != 2 or not r[0] < r[1]:
                raise ValueError(f"{name} must be 'lo,hi' with lo < hi (log10), got {r}")
        if not 0 <= self.anchor_rank <= self.d_k:
            raise ValueError("anchor_rank must be in [0, d_k]")

    @classmethod
    def quick(cls) -> Config:
        return cls(n_grid=7, d_k=16, d_v=4, n_batches=4, anchor_rank=8)


def grid(r: tuple[float, ...], n: int) -> list[float]:
    return [float(x) for x in np.logspace(r[0], r[1], n)]


def _stream(config: Config):
    return make_stream(kind=config.kind, d_k=config.d_k, d_v=config.d_v, u=config.u, values=config.values,
                       anchor_rank=config.anchor_rank, n_anchor=config.n_anchor, seed=config.seed, rho=0.5)


def cells(config: Config) -> list[dict]:
    return [{"lam": lam} for lam in grid(config.lam_range, config.n_grid)]


def run_cell(config: Config, cell: dict) -> list[dict]:
    s = _stream(config)
    K, V = (torch.cat(x) for x in zip(*s.batches(config.n_batches), strict=True))
    W0, G, SA = s.W0, s.anchor_gram, s.Sigma_A
    E = float(((K @ W0 - V) ** 2).sum())
    w0n = float(torch.linalg.vector_norm(W0))
    anchor0 = float((W0 * (G @ W0)).sum())
    held0 = float((W0 * (SA @ W0)).sum())
    lam = cell["lam"]
    out = []
    for mu in grid(config.mu_range, config.n_grid):
        W = rlsedit.batch_solve(W0, K, V, lam=lam, mu=mu, anchor_gram=G)
        terms = tradeoff_terms(W, W0, K, V, G)
        D = W - W0
        out.append({"lam": lam, "mu": mu, **terms, "adherence": terms["f"] / E,
                    "weight_drift": terms["g"] ** 0.5 / w0n, "anchor_drift": terms["h"] / anchor0,
                    "heldout_drift": float((D * (SA @ D)).sum()) / held0})
    return out


def _monotone(seq: list[float], increasing: bool, tol: float) -> int:
    """Number of violations of monotonicity in a sequence (relative slack tol)."""
    bad = 0
    for a, b in pairwise(seq):
        slack = tol * max(abs(a), abs(b), 1e-300)
        bad += (b < a - slack) if increasing else (b > a + slack)
    return bad


def summarize(config: Config, records: list[dict]) -> dict:
    lams, mus = grid(config.lam_range, config.n_grid), grid(config.mu_range, config.n_grid)
    at = {(r["lam"], r["mu"]): r for r in records}
    n_checks = violations = 0
    for mu in mus:  # along lam
        rows = [at[(lam, mu)] for lam in lams]
        violations += _monotone([r["g"] for r in rows], False, config.tolerance)
        violations += _monotone([r["f"] + mu * r["h"] for r in rows], True, config.tolerance)
        n_checks += 2 * (len(rows) - 1)
    for lam in lams:  # along mu
        rows = [at[(lam, mu)] for mu in mus]
        violations += _monotone([r["h"] for r in rows], False, config.tolerance)
        violations += _monotone([r["f"] + lam * r["g"] for r in rows], True, config.tolerance)
        n_checks += 2 * (len(rows) - 1)
    # limits, at the grid's corners
    s = _stream(config)
    K, V = (torch.cat(x) for x in zip(*s.batches(config.n_batches), strict=True))
    W0, G = s.W0, s.anchor_gram
    lo_l, lo_m, hi_l, hi_m = lams[0], mus[0], lams[-1], mus[-1]

    def dist(lam: float, mu: float, ref: torch.Tensor) -> float:
        W = rlsedit.batch_solve(W0, K, V, lam=lam, mu=mu, anchor_gram=G)
        return float(torch.linalg.vector_norm(W - ref) / torch.linalg.vector_norm(ref))

    W_pin = anchor_pinned_limit(W0, K, V, lam=lo_l, anchor_gram=G)
    D1 = float(torch.linalg.vector_norm(anchor_pinned_first_order(W0, K, V, lam=lo_l, anchor_gram=G)))
    upper = [mu for mu in mus if mu >= mus[len(mus) // 2]]
    pin = [float(torch.linalg.vector_norm(rlsedit.batch_solve(W0, K, V, lam=lo_l, mu=mu, anchor_gram=G) - W_pin))
           for mu in upper]
    return {
        "anchor_pinned_rate": {"lam": lo_l, "mus": upper, "dist": pin,
                               "slope": fit_loglog_slope(upper[len(upper) // 2:], pin[len(pin) // 2:]),
                               "theory_slope": -1.0, "first_order_ratio_at_largest_mu": upper[-1] * pin[-1] / D1,
                               "first_order_ratio_by_mu": [mu * d / D1 for mu, d in zip(upper, pin, strict=True)]},
        "n_monotonicity_checks": n_checks,
        "n_monotonicity_violations": violations,
        "corner_adherence": {f"lam={lam:g},mu={mu:g}": at[(lam, mu)]["adherence"]
                             for lam in (lo_l, hi_l) for mu in (lo_m, hi_m)},
        "rel_dist_smallest_lam_mu_to_full_adherence_limit":
            dist(lo_l, lo_m, full_adherence_limit(W0, K, V, lam=lo_l, mu=lo_m, anchor_gram=G)),
        "rel_dist_largest_lam_to_W0": dist(hi_l, lo_m, W0),
        "rel_dist_largest_mu_to_anchor_pinned_limit":
            dist(lo_l, hi_m, anchor_pinned_limit(W0, K, V, lam=lo_l, anchor_gram=G)),
    }
