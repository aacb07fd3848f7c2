"""Experiment 1: every bound of :mod:`theory` against its measured quantity, over many streams.

Cells: stream kind x (lam, mu) x seed, plus the constructed tight streams of :mod:`theory.tight`.
Each cell streams ``n_batches`` batches into an RLSEditor (float64) and records one line per check
(:func:`theory.checks.check_stream`). The summary holds ``n_checks``, ``max_ratio`` (largest
measured / bound), the number of ratios above 1 + ``tolerance`` and the distribution of ratios per
bound (its tightness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from simulations.streams import KINDS, make_stream
from theory import least_squares_limit, ridge_population_limit
from theory.checks import Check, check_stream
from theory.limits import NoLimitError
from theory.tight import ALL_TIGHT

from ._common import check_positive, quantiles

NAME = "bounds"


@dataclass(frozen=True)
class Config:
    """Options of the bounds experiment (``--set KEY=VALUE``; lists are comma-separated).

    kinds: stream kinds (simulations.streams.KINDS); regularisers: "lam:mu" pairs; d_k, d_v, u:
    sizes; n_batches: batches per stream; seeds: number of seeds per (kind, lam, mu); key_scale:
    keys are multiplied by it (large values make adversarial, strongly constraining streams);
    values: "truth" or "arbitrary"; tight: also run the tight streams of theory.tight;
    tolerance: relative rounding allowance; a check fails when measured > bound * (1 + tolerance)
    + slack, slack being the absolute rounding of the measured difference (theory.checks.Check).
    """

    kinds: tuple[str, ...] = KINDS
    regularisers: tuple[str, ...] = ("1.0:0.0", "0.01:1.0", "0.0:1.0", "1.0:0.01")
    d_k: int = 48
    d_v: int = 12
    u: int = 4
    n_batches: int = 60
    seeds: int = 3
    key_scales: tuple[float, ...] = (1.0, 30.0)
    values: str = "truth"
    tight: bool = True
    tolerance: float = 1e-9

    def __post_init__(self) -> None:
        check_positive(self, "d_k", "d_v", "u", "n_batches", "seeds", "key_scales", "tolerance")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be among {KINDS}, got {self.kinds}")
        for pair in self.regularisers:
            lam, mu = _pair(pair)
            if lam == 0.0 and mu == 0.0:
                raise ValueError("a regulariser pair needs lam > 0 or mu > 0 (the anchor Gram has full rank)")

    @classmethod
    def quick(cls) -> Config:
        return cls(d_k=16, d_v=4, n_batches=10, seeds=1, regularisers=("0.01:1.0", "0.0:1.0"))


def _pair(text: str) -> tuple[float, float]:
    try:
        lam, mu = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"a regulariser pair is 'lam:mu', got {text!r}") from None
    if not (math.isfinite(lam) and math.isfinite(mu) and lam >= 0 and mu >= 0):
        raise ValueError(f"lam and mu must be finite and >= 0, got {text!r}")
    return lam, mu


def cells(config: Config) -> list[dict]:
    out = [{"kind": k, "reg": r, "scale": s, "seed": seed} for k in config.kinds for r in config.regularisers
           for s in config.key_scales for seed in range(config.seeds)]
    if config.tight:
        out += [{"kind": "tight_" + name, "reg": "", "scale": 1.0, "seed": 0} for name in ALL_TIGHT]
    return out


def _records(checks, base: dict) -> list[dict]:
    return [{**base, "batch": c.batch, "bound": c.bound, "measured": c.measured, "value": c.value,
             "ratio": c.ratio, "slack": c.slack} for c in checks]


def run_cell(config: Config, cell: dict) -> list[dict]:
    if cell["kind"].startswith("tight_"):
        s = ALL_TIGHT[cell["kind"][len("tight_"):]]()
        checks = check_stream(s.W0, s.keys, s.values, lam=s.lam, mu=s.mu, anchor_gram=s.anchor_gram)
        return _records(checks, {"tight_for": s.bound, "lam": s.lam, "mu": s.mu})
    lam, mu = _pair(cell["reg"])
    stream = make_stream(kind=cell["kind"], d_k=config.d_k, d_v=config.d_v, u=config.u, values=config.values,
                         seed=cell["seed"], pool=max(8, config.d_k // 2))
    batches = [(cell["scale"] * K, cell["scale"] * V) for K, V in stream.batches(config.n_batches)]
    W_lim = None
    moments = stream.moments()
    if moments is not None:  # a reference for the a-posteriori limit bound (any matrix is valid)
        try:
            W_lim = least_squares_limit(*moments)
        except NoLimitError:
            W_lim = ridge_population_limit(*moments, stream.W0, lam_bar=1e-3)
    G = stream.anchor_gram if mu > 0 else None
    checks = check_stream(stream.W0, [b[0] for b in batches], [b[1] for b in batches], lam=lam, mu=mu,
                          anchor_gram=G, W_lim=W_lim)
    return _records(checks, {"lam": lam, "mu": mu})


def summarize(config: Config, records: list[dict]) -> dict:
    ratios = [r["ratio"] for r in records]
    by_bound: dict[str, list[float]] = {}
    for r in records:
        if "tight_for" not in r:
            by_bound.setdefault(r["bound"], []).append(r["ratio"])
    tight = {}
    for r in records:
        if "tight_for" in r and r["bound"] == r["tight_for"]:
            tight[r["tight_for"]] = max(tight.get(r["tight_for"], 0.0), r["ratio"])
    for r in records:  # u = 1 stream: per-step and soft-write bounds, Loewner
        if r.get("tight_for") == "step" and r["bound"] in ("soft_write_upper", "soft_write_lower", "loewner"):
            tight[r["bound"]] = min(tight.get(r["bound"], 2.0), r["ratio"])
    return {
        "n_checks": len(ratios),
        "max_ratio": max(ratios) if ratios else None,
        "tolerance": config.tolerance,
        "n_above_tolerance": sum(not Check(r["bound"], r["batch"], r["measured"], r["value"], r["ratio"],
                                           r["slack"]).holds(config.tolerance) for r in records),
        "per_bound_random_streams": {k: quantiles(v) for k, v in sorted(by_bound.items())},
        "tight_streams_ratio": tight,
        "torch_threads": torch.get_num_threads(),
    }
