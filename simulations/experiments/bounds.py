"""Experiment 1: every bound of :mod:`theory` against its measured quantity, over many streams,
for the true editor and for broken ones.

Cells:

* ``main``: stream kind x (lam, mu) x key scale x seed (:mod:`simulations.streams`). Each stream
  is checked (:func:`theory.checks.check_stream`) on a float64 RLSEditor, on every negative
  control of :mod:`theory.mutants` (each must be caught) and, for the objective gap, on MEMIT,
  AlphaEdit, ROME and FT beside an RLSEditor (:func:`theory.checks.check_baseline_gap`). One
  independent solve of the normal equations per stream (:func:`theory.reference.solve_stream`)
  is the reference for all of them.
* ``random_small`` / ``adversarial_small``: blocks of small streams (d_k <= 12), drawn with a
  controlled condition number, or built to stress the bounds (keys 1e3 or 1e-4 in size, repeated
  and conflicting keys, keys in the anchor's null space, batches W0 already satisfies), checked on
  the RLSEditor: the bulk of the >= 1000 streams behind the retention, comparator and regret bounds.
* ``tight_*``: the streams of :mod:`theory.tight` on which each bound is attained (ratio 1 or -> 1).
* ``break``: :func:`theory.tight.retention_break_stream`, on which MEMIT, ROME and AlphaEdit keep
  their edits worse than the RLS retention bound F_t(W) <= min J_t allows.

Records are aggregated per (stream, editor, bound): number of checks, number that failed, largest
and last ratio. The summary has the true editor's counts and the distribution of each bound's
worst ratio per stream (``per_bound_random_streams``), ``negative_controls`` (per control: streams
run, streams flagged, and flags per bound), the discrimination of every bound (which controls it
catches; a bound that catches none is a consistency identity, counted apart), the baselines'
objective gaps, the tight streams' ratios and the broken retention bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import rlsedit
from rlsedit.config import Config as BaseConfig
from simulations.streams import KINDS, make_stream
from theory import least_squares_limit, ridge_population_limit
from theory.checks import (
    BOUND_NAMES,
    CONSISTENCY_IDENTITIES,
    GAP_NAMES,
    Check,
    check_baseline_gap,
    check_stream,
)
from theory.limits import NoLimitError
from theory.mutants import NEGATIVE_CONTROLS
from theory.reference import ReferenceError, solve_stream
from theory.retention import edit_residual
from theory.tight import ALL_TIGHT, retention_break_stream

from ._common import check_positive, quantiles

NAME = "bounds"
TRUE_EDITOR = "rlsedit"
BASELINES = ("memit", "alphaedit", "rome", "ft")
RETENTION_BOUNDS = tuple(b for b in BOUND_NAMES if b.startswith(("retention", "comparator", "regret")))


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the bounds experiment (``--set KEY=VALUE``; lists are comma-separated).

    kinds: stream kinds (simulations.streams.KINDS); regularisers: "lam:mu" pairs; d_k, d_v, u:
    sizes; n_batches: batches per stream; seeds: number of seeds per (kind, lam, mu); key_scales:
    keys (and values) are multiplied by each (large values make adversarial, strongly constraining
    streams); values: "truth" or "arbitrary" (truth: the generating W_true is the comparator);
    cohort_batches: the early cohort of the retention bound; negative_controls: run the broken
    editors of theory.mutants on the main streams; baselines: editors whose objective gap is
    measured (memit, alphaedit, rome, ft); alpha_threshold: AlphaEdit's projector keeps the anchor
    eigenvectors below this fraction of the largest eigenvalue; alpha_l2: its l2;
    small_streams, adversarial_streams: how many small streams of each family; block: small
    streams per cell; tight: also run the tight and break streams; tolerance: relative rounding
    allowance; a check fails when measured > bound * (1 + tolerance + rel) + slack, with the
    allowances of theory.checks.Check.
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
    cohort_batches: int = 2
    negative_controls: bool = True
    baselines: tuple[str, ...] = BASELINES
    alpha_threshold: float = 0.05
    alpha_l2: float = 1.0
    small_streams: int = 600
    adversarial_streams: int = 600
    block: int = 50
    tight: bool = True
    tolerance: float = 1e-9

    def validate(self) -> None:
        check_positive(self, "d_k", "d_v", "u", "n_batches", "seeds", "key_scales", "tolerance", "cohort_batches",
                       "block", "alpha_l2")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be among {KINDS}, got {self.kinds}")
        for pair in self.regularisers:
            lam, mu = _pair(pair)
            if lam == 0.0 and mu == 0.0:
                raise ValueError("a regulariser pair needs lam > 0 or mu > 0 (the anchor Gram has full rank)")
        if any(b not in BASELINES for b in self.baselines):
            raise ValueError(f"baselines must be among {BASELINES}, got {self.baselines}")
        if self.small_streams < 0 or self.adversarial_streams < 0:
            raise ValueError("small_streams and adversarial_streams must be >= 0")
        if not 0.0 < self.alpha_threshold < 1.0:
            raise ValueError(f"alpha_threshold must be in (0, 1), got {self.alpha_threshold}")

    @classmethod
    def quick(cls) -> Config:
        return cls(kinds=("powerlaw", "conflicting"), d_k=16, d_v=4, n_batches=10, seeds=1,
                   regularisers=("0.01:1.0", "1.0:0.0"), small_streams=40, adversarial_streams=40, block=40)


def _pair(text: str) -> tuple[float, float]:
    try:
        lam, mu = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"a regulariser pair is 'lam:mu', got {text!r}") from None
    if not (math.isfinite(lam) and math.isfinite(mu) and lam >= 0 and mu >= 0):
        raise ValueError(f"lam and mu must be finite and >= 0, got {text!r}")
    return lam, mu


def cells(config: Config) -> list[dict]:
    out = [{"family": "main", "kind": k, "reg": r, "scale": s, "seed": seed} for k in config.kinds
           for r in config.regularisers for s in config.key_scales for seed in range(config.seeds)]
    for family, n in (("random_small", config.small_streams), ("adversarial_small", config.adversarial_streams)):
        out += [{"family": family, "block": b, "n": min(config.block, n - b * config.block)}
                for b in range(-(-n // config.block))]
    if config.tight:
        out += [{"family": "tight", "kind": "tight_" + name} for name in ALL_TIGHT]
        out.append({"family": "break"})
    return out


def _aggregate(checks, base: dict, tol: float) -> list[dict]:
    """One record per bound: n checks, n failed, n decided by the rounding allowance alone, the
    largest, smallest and last ratio, and the largest margin (the ratio after the allowances)."""
    agg: dict[str, dict] = {}
    for c in checks:
        ok = c.holds(tol)
        a = agg.setdefault(c.bound, {**base, "bound": c.bound, "n": 0, "n_fail": 0, "n_by_allowance": 0,
                                     "max_ratio": -math.inf, "min_ratio": math.inf, "last_ratio": None,
                                     "max_margin": -math.inf})
        a["n"] += 1
        a["n_fail"] += int(not ok)
        a["n_by_allowance"] += int(ok and c.ratio > 1 + tol)  # ratio > 1 reads "violated" for every bound
        a["max_ratio"] = max(a["max_ratio"], c.ratio)
        a["min_ratio"] = min(a["min_ratio"], c.ratio)
        a["last_ratio"] = c.ratio
        a["max_margin"] = max(a["max_margin"], c.margin(tol))
    return list(agg.values())


def _run_editor(config: Config, problem: dict, ref, editor, base: dict) -> list[dict]:
    """Every check of one editor on one stream; an editor that raises is flagged on every bound."""
    try:
        checks = list(check_stream(problem["W0"], problem["keys"], problem["values"], lam=problem["lam"],
                                   mu=problem["mu"], anchor_gram=problem["G"], editor=editor,
                                   W_lim=problem.get("W_lim"), comparator=problem.get("comparator"),
                                   cohort_batches=config.cohort_batches, reference=ref))
    except (ValueError, RuntimeError, rlsedit.RLSEditError) as exc:  # a broken editor may blow up
        return [{**base, "bound": "error", "n": 1, "n_fail": 1, "max_ratio": math.inf, "min_ratio": math.inf,
                 "last_ratio": math.inf, "error": f"{type(exc).__name__}: {exc}"}]
    return _aggregate(checks, base, config.tolerance)


def _baseline(config: Config, name: str, W0: torch.Tensor, lam: float, mu: float, G_anchor: torch.Tensor):
    if name in ("memit", "rome"):
        anchor = {"anchor_gram": G_anchor} if mu > 0 else {}
        return rlsedit.make_editor(name, W0, lam=lam, mu=mu, dtype=torch.float64, **anchor)
    if name == "alphaedit":
        thr = config.alpha_threshold * float(torch.linalg.eigvalsh(G_anchor)[-1])
        return rlsedit.make_editor(name, W0, anchor_gram=G_anchor, threshold=thr, l2=config.alpha_l2,
                                   dtype=torch.float64)
    return rlsedit.make_editor(name, W0, dtype=torch.float64)


def _main_problem(config: Config, cell: dict) -> tuple[dict, torch.Tensor]:
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
    problem = {"W0": stream.W0, "keys": [b[0] for b in batches], "values": [b[1] for b in batches], "lam": lam,
               "mu": mu, "G": stream.anchor_gram if mu > 0 else None, "W_lim": W_lim,
               "comparator": stream.W_true if config.values == "truth" else None}
    return problem, stream.anchor_gram


def _run_main(config: Config, cell: dict) -> list[dict]:
    p, G_anchor = _main_problem(config, cell)
    ref = solve_stream(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"], anchor_gram=p["G"])
    base = {"family": "main", "stream": f"{cell['kind']}/{cell['reg']}/{cell['scale']}/{cell['seed']}",
            "lam": p["lam"], "mu": p["mu"], "kappa_max": ref[-1].kappa_max}
    out = _run_editor(config, p, ref, None, {**base, "editor": TRUE_EDITOR, "role": "true"})
    if config.negative_controls:
        for name, factory in NEGATIVE_CONTROLS.items():
            editor = factory(p["W0"], p["lam"], p["mu"], p["G"])
            if editor is not None:
                out += _run_editor(config, p, ref, editor, {**base, "editor": name, "role": "control"})
    for name in config.baselines:
        gaps = list(check_baseline_gap(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"], anchor_gram=p["G"],
                                       baseline=_baseline(config, name, p["W0"], p["lam"], p["mu"], G_anchor),
                                       reference=ref))
        recs = _aggregate((c for c, _ in gaps), {**base, "editor": name, "role": "baseline"}, config.tolerance)
        rel = [g for c, g in gaps if c.bound == "comparator_gap"]
        for r in recs:
            r["min_rel_gap"], r["last_rel_gap"] = min(rel), rel[-1]
        out += recs
    return out


def _spectral(rng: np.random.Generator, n: int, d: int, log10_cond: float, scale: float = 1.0) -> np.ndarray:
    """(n, d) with min(n, d) singular values log-spaced from scale down to scale / 10^log10_cond."""
    r = min(n, d)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    Vt, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return (U * (scale * np.logspace(0.0, -log10_cond, r))) @ Vt.T


def small_stream(seed: int, adversarial: bool) -> dict:
    """One small seeded problem (d_k <= 12): random with a drawn condition number, or adversarial."""
    rng = np.random.default_rng([seed, 7 if adversarial else 5])
    d_k, d_v = int(rng.integers(2, 13)), int(rng.integers(1, 5))
    W0 = rng.standard_normal((d_k, d_v))
    W_true = W0 + rng.standard_normal((d_k, d_v)) / math.sqrt(d_k)
    rank = int(rng.integers(1, d_k + 1))
    K0 = _spectral(rng, rank, d_k, rng.uniform(0, 3 if adversarial else 2))
    G = K0.T @ K0
    if adversarial:
        lam = 10 ** rng.uniform(-3, 2)
        mu = float(rng.choice([0.0, 1e-2, 1.0, 1e3]))
    else:
        lam = 10 ** rng.uniform(-2, 1)
        mu = float(rng.choice([0.0, 10 ** rng.uniform(-2, 1)]))
    null = np.linalg.svd(K0)[2][rank:]
    base = rng.standard_normal((1, d_k))
    keys, values = [], []
    noise = float(rng.choice([0.0, 0.1, 1.0]))
    for _ in range(int(rng.integers(1, 9))):
        u = int(rng.integers(1, 5))
        kind = str(rng.choice(["huge", "tiny", "repeat", "conflict", "null", "satisfied", "plain"])) if adversarial \
            else "plain"
        K = _spectral(rng, u, d_k, rng.uniform(0, 3)) * math.sqrt(d_k) if kind == "plain" else \
            rng.standard_normal((u, d_k))
        if kind == "huge":
            K = K * 1e3
        elif kind == "tiny":
            K = K * 1e-4
        elif kind in ("repeat", "conflict"):
            K = np.repeat(base, u, axis=0)
        elif kind == "null" and len(null):
            K = rng.standard_normal((u, len(null))) @ null
        V = K @ W_true + noise * rng.standard_normal((u, d_v))
        if kind == "conflict":
            V = V + 1e3 * rng.standard_normal((u, d_v))
        elif kind == "satisfied":
            V = K @ W0
        keys.append(torch.from_numpy(K))
        values.append(torch.from_numpy(V))
    return {"W0": torch.from_numpy(W0), "keys": keys, "values": values, "lam": float(lam), "mu": mu,
            "G": torch.from_numpy(G) if mu > 0 else None, "comparator": torch.from_numpy(W_true)}


def _run_small(config: Config, cell: dict) -> list[dict]:
    adversarial = cell["family"] == "adversarial_small"
    out = []
    for j in range(cell["n"]):
        seed = cell["block"] * config.block + j
        p = small_stream(seed, adversarial)
        try:
            ref = solve_stream(p["W0"], p["keys"], p["values"], lam=p["lam"], mu=p["mu"], anchor_gram=p["G"])
        except ReferenceError:  # lam = 0 never drawn; kept for safety: a singular problem is skipped
            continue
        base = {"family": cell["family"], "stream": f"{cell['family']}/{seed}", "lam": p["lam"], "mu": p["mu"],
                "kappa_max": ref[-1].kappa_max, "editor": TRUE_EDITOR, "role": "true"}
        out += _run_editor(config, p, ref, None, base)
    return out


def _run_tight(config: Config, cell: dict) -> list[dict]:
    s = ALL_TIGHT[cell["kind"][len("tight_"):]]()
    checks = check_stream(s.W0, s.keys, s.values, lam=s.lam, mu=s.mu, anchor_gram=s.anchor_gram,
                          comparator=s.comparator, cohort_batches=1)
    return _aggregate(checks, {"family": "tight", "tight_for": s.bound, "editor": TRUE_EDITOR, "role": "true",
                               "lam": s.lam, "mu": s.mu}, config.tolerance)


def _run_break(config: Config, cell: dict) -> list[dict]:
    """F_t(W) / min J_t at the end of the break stream, for the RLS editor and every baseline."""
    b = retention_break_stream()
    ref = solve_stream(b.W0, b.keys, b.values, lam=b.lam, mu=b.mu, anchor_gram=b.anchor_gram)
    out = []
    for name in (TRUE_EDITOR, *BASELINES):
        if name == "alphaedit":
            ed = rlsedit.make_editor(name, b.W0, anchor_gram=b.anchor_gram, threshold=b.alphaedit_threshold,
                                     l2=config.alpha_l2)
        elif name == "ft":
            ed = rlsedit.make_editor(name, b.W0)
        else:
            ed = rlsedit.make_editor(name, b.W0, lam=b.lam, mu=b.mu, anchor_gram=b.anchor_gram)
        for K, V in zip(b.keys, b.values, strict=True):
            ed.update(K, V)
        F = edit_residual(ed.W, b.keys, b.values)
        out.append({"family": "break", "editor": name, "edit_residual": F, "J_min": ref[-1].J_min,
                    "retention_ratio": F / ref[-1].J_min})
    return out


def run_cell(config: Config, cell: dict) -> list[dict]:
    family = cell["family"]
    if family == "main":
        return _run_main(config, cell)
    if family in ("random_small", "adversarial_small"):
        return _run_small(config, cell)
    if family == "tight":
        return _run_tight(config, cell)
    return _run_break(config, cell)


def _true_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("role") == "true" and r["family"] != "tight"]


def summarize(config: Config, records: list[dict]) -> dict:
    true = _true_records(records)
    controls = [r for r in records if r.get("role") == "control"]
    # the discrimination of every bound: which controls it catches, on how many streams
    negative: dict[str, dict] = {}
    for name in NEGATIVE_CONTROLS:
        rs = [r for r in controls if r["editor"] == name]
        streams = {r["stream"] for r in rs}
        flagged = {r["stream"] for r in rs if r["n_fail"]}
        by_bound: dict[str, int] = {}
        for r in rs:
            if r["n_fail"]:
                by_bound[r["bound"]] = by_bound.get(r["bound"], 0) + 1
        negative[name] = {"streams": len(streams), "streams_flagged": len(flagged),
                          "by_bound": dict(sorted(by_bound.items()))}
    bounds_seen = sorted({r["bound"] for r in true})
    discrimination = {b: sorted(n for n, v in negative.items() if v["by_bound"].get(b)) for b in bounds_seen}
    identities = sorted(b for b, caught in discrimination.items() if not caught) if controls else \
        sorted(b for b in bounds_seen if b in CONSISTENCY_IDENTITIES)
    per_bound: dict[str, dict] = {}
    for b in bounds_seen:
        rs = [r for r in true if r["bound"] == b]
        # the distribution of each stream's worst margin (the ratio after the rounding allowances)
        per_bound[b] = {**quantiles(r["max_margin"] for r in rs), "streams": len({r["stream"] for r in rs}),
                        "checks": sum(r["n"] for r in rs), "violations": sum(r["n_fail"] for r in rs),
                        "checks_decided_by_allowance": sum(r["n_by_allowance"] for r in rs),
                        "max_raw_ratio": max(r["max_ratio"] for r in rs),
                        "streams_by_family": {f: len({r["stream"] for r in rs if r["family"] == f})
                                              for f in sorted({r["family"] for r in rs})}}
    for b in GAP_NAMES:  # the baselines' objective gap, RLSEditor beside each baseline (main streams)
        rs = [r for r in records if r.get("role") == "baseline" and r["bound"] == b]
        if rs:
            per_bound[b] = {**quantiles(r["max_margin"] for r in rs), "streams": len({r["stream"] for r in rs}),
                            "checks": sum(r["n"] for r in rs), "violations": sum(r["n_fail"] for r in rs),
                            "checks_decided_by_allowance": sum(r["n_by_allowance"] for r in rs),
                            "max_raw_ratio": max(r["max_ratio"] for r in rs),
                            "baselines": sorted({r["editor"] for r in rs})}
    tight: dict[str, float] = {}
    for r in records:
        if r["family"] == "tight" and r["bound"] == r["tight_for"]:
            tight[r["tight_for"]] = max(tight.get(r["tight_for"], 0.0), r["max_ratio"])
    for r in records:  # u = 1 stream: per-step and soft-write bounds, Loewner
        if r.get("tight_for") == "step" and r["bound"] in ("soft_write_upper", "soft_write_lower", "loewner"):
            tight[r["bound"]] = min(tight.get(r["bound"], 2.0), r["min_ratio"])
    for r in records:  # the retention stream is also tight for the comparator with W* = the LS fit
        if r.get("tight_for") == "retention" and r["bound"] == "comparator":
            tight["comparator"] = r["max_ratio"]
    gaps: dict[str, dict] = {}
    for name in config.baselines:
        rs = [r for r in records if r.get("role") == "baseline" and r["editor"] == name]
        if not rs:
            continue
        g = [r for r in rs if r["bound"] == "comparator_gap"]
        ident = [r for r in rs if r["bound"] == "comparator_gap_identity"]
        gaps[name] = {"streams": len(g), "min_rel_gap": min(r["min_rel_gap"] for r in g),
                      "last_rel_gap": quantiles(r["last_rel_gap"] for r in g),
                      "gap_violations": sum(r["n_fail"] for r in g),
                      "identity_violations": sum(r["n_fail"] for r in ident),
                      "identity_max_ratio": max(r["max_ratio"] for r in ident)}
    breaks = {r["editor"]: {"retention_ratio": r["retention_ratio"], "broken": r["retention_ratio"] > 1.0}
              for r in records if r["family"] == "break"}
    evidence = [r for r in true if r["bound"] not in identities]
    return {
        "n_checks": sum(r["n"] for r in true),
        "n_evidence_checks": sum(r["n"] for r in evidence),
        "n_identity_checks": sum(r["n"] for r in true if r["bound"] in identities),
        "n_streams": len({r["stream"] for r in true}),
        "max_margin": max((r["max_margin"] for r in true), default=None),
        "max_margin_evidence": max((r["max_margin"] for r in evidence), default=None),
        "n_checks_decided_by_allowance": sum(r["n_by_allowance"] for r in true),
        "tolerance": config.tolerance,
        "n_above_tolerance": sum(r["n_fail"] for r in true) + sum(r["n_fail"] for r in records
                                                                  if r["family"] == "tight"),
        "max_kappa": max((r["kappa_max"] for r in true), default=None),
        "per_bound_random_streams": per_bound,
        "retention_bounds": [b for b in per_bound if b in RETENTION_BOUNDS or b in GAP_NAMES],
        "tight_streams_ratio": tight,
        "negative_controls": negative,
        "discrimination": discrimination,
        "consistency_identities": identities,
        "baseline_gaps": gaps,
        "retention_break_streams": breaks,
        "torch_threads": torch.get_num_threads(),
    }


__all__ = ["Check", "Config", "cells", "run_cell", "small_stream", "summarize"]
