"""Experiment 2: convergence of W_t to the many-edits limit as the number of edits t grows.

Two modes (:mod:`theory.limits`):

* ``scaled``: lam = t lam_bar, mu = t mu_bar; the limit is the ridge-regularised population
  minimiser W_inf; the solution at each checkpoint is :func:`rlsedit.batch_solve` on the rows so far.
* ``fixed``: lam, mu fixed; the limit is the population least-squares fit W_ls; the solution is the
  RLSEditor's recursion (its lam and mu never change).

Records per checkpoint: ``err`` = ||W_t - W_lim||_F, ``rel_err`` = err / ||W_lim - W0||_F, the
a-posteriori bound ||C_t||_2 ||b_t - A_t W_lim||_F and (scaled) the a-priori RMS bound
sigma / (nu sqrt(t)) with sigma^2 estimated from independent rows. In fixed mode also ``gap_ridge``,
the distance to the scaled mode's limit (what fixed regularisers trade away). The summary fits the
log-log slope of the seed-averaged error against t (theory: -1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import rlsedit
from simulations.streams import KINDS, make_stream
from theory import limit_error_bound, noise_level, ridge_population_limit, scaled_limit_rms_bound
from theory.limits import least_squares_limit

from ._common import check_non_negative, check_positive, loglog_slope

NAME = "convergence"


@dataclass(frozen=True)
class Config:
    """Options of the convergence experiment.

    kinds: stream kinds with population moments (not drift; lowrank only in scaled mode);
    modes: "scaled" and/or "fixed"; lam_bar, mu_bar: per-edit regulariser weights of the scaled
    mode; lam, mu: the fixed mode's weights; d_k, d_v, u: sizes; n_rows: the largest t (edit rows);
    n_checkpoints: log-spaced checkpoints from u to n_rows; seeds: streams per (kind, mode);
    sigma_rows: independent rows used to estimate the noise constant sigma^2; noise: value noise.
    """

    kinds: tuple[str, ...] = ("isotropic", "powerlaw", "heavytail", "anchored", "conflicting")
    modes: tuple[str, ...] = ("scaled", "fixed")
    lam_bar: float = 0.05
    mu_bar: float = 0.002
    lam: float = 1.0
    mu: float = 0.05
    d_k: int = 32
    d_v: int = 8
    u: int = 10
    n_rows: int = 20000
    n_checkpoints: int = 12
    seeds: int = 4
    sigma_rows: int = 20000
    noise: float = 0.5

    def __post_init__(self) -> None:
        check_positive(self, "d_k", "d_v", "u", "n_rows", "n_checkpoints", "seeds", "sigma_rows")
        check_non_negative(self, "lam_bar", "mu_bar", "lam", "mu", "noise")
        if any(k not in KINDS or k == "drift" for k in self.kinds) or not self.kinds:
            raise ValueError(f"kinds must be stream kinds with moments (not drift), got {self.kinds}")
        if any(m not in ("scaled", "fixed") for m in self.modes) or not self.modes:
            raise ValueError(f"modes must be among ('scaled', 'fixed'), got {self.modes}")
        if self.n_rows < self.u:
            raise ValueError("n_rows must be >= u")
        if self.lam_bar == 0.0:
            raise ValueError("lam_bar must be > 0 (the scaled limit's rate needs nu > 0)")

    @classmethod
    def quick(cls) -> Config:
        return cls(kinds=("isotropic", "powerlaw", "heavytail"), d_k=12, d_v=4, u=8, n_rows=3000,
                   n_checkpoints=8, seeds=2, sigma_rows=4000)


def checkpoints(config: Config) -> list[int]:
    """Log-spaced batch counts (each a number of rows that is a multiple of u)."""
    n_batches = config.n_rows // config.u
    pts = {max(1, round(n_batches ** (i / (config.n_checkpoints - 1)))) for i in range(config.n_checkpoints)}
    return sorted(pts)


def cells(config: Config) -> list[dict]:
    return [{"kind": k, "mode": m, "seed": s} for k in config.kinds for m in config.modes
            for s in range(config.seeds)]


def _stream(config: Config, kind: str, seed: int):
    return make_stream(kind=kind, d_k=config.d_k, d_v=config.d_v, u=config.u, noise=config.noise, seed=seed,
                       pool=2 * config.d_k, rho=0.7, n_anchor=1.0)


def run_cell(config: Config, cell: dict) -> list[dict]:
    stream = _stream(config, cell["kind"], cell["seed"])
    S, X = stream.moments()
    W0, G = stream.W0, stream.anchor_gram
    W_ridge = ridge_population_limit(S, X, W0, lam_bar=config.lam_bar, mu_bar=config.mu_bar, anchor_gram=G)
    scaled = cell["mode"] == "scaled"
    W_lim = W_ridge if scaled else least_squares_limit(S, X)
    sigma2 = None
    if scaled:
        Ks, Vs = stream.rows(config.sigma_rows)
        sigma2 = noise_level(W_lim, Ks, Vs, S, X)
    scale = float(torch.linalg.vector_norm(W_lim - W0))
    pts = set(checkpoints(config))
    editor = None if scaled else rlsedit.RLSEditor(W0, lam=config.lam, mu=config.mu, anchor_gram=G)
    keys, values, out = [], [], []
    for b, (K, V) in enumerate(stream.batches(max(pts)), start=1):
        keys.append(K)
        values.append(V)
        if editor is not None:
            editor.update(K, V)
        if b not in pts:
            continue
        t = b * config.u
        Kc, Vc = torch.cat(keys), torch.cat(values)
        if scaled:
            lam, mu = t * config.lam_bar, t * config.mu_bar
            W = rlsedit.batch_solve(W0, Kc, Vc, lam=lam, mu=mu, anchor_gram=G)
            A = lam * torch.eye(config.d_k, dtype=W.dtype) + mu * G + Kc.T @ Kc
            C = torch.linalg.inv(A)
        else:
            lam, mu = config.lam, config.mu
            W, C = editor.W, editor.C
        err = float(torch.linalg.vector_norm(W - W_lim))
        rec = {"kind": cell["kind"], "mode": cell["mode"], "seed": cell["seed"], "t": t, "err": err,
               "rel_err": err / scale if scale else math.nan,
               "bound": limit_error_bound(C, W_lim, W0, Kc, Vc, lam=lam, mu=mu, anchor_gram=G)}
        if scaled:
            rec["rms_bound"] = scaled_limit_rms_bound(t, sigma2, lam_bar=config.lam_bar, mu_bar=config.mu_bar,
                                                      anchor_gram=G)
        else:
            rec["gap_ridge"] = float(torch.linalg.vector_norm(W - W_ridge))
        out.append(rec)
    return out


def summarize(config: Config, records: list[dict]) -> dict:
    fits = {}
    for kind in config.kinds:
        for mode in config.modes:
            rs = [r for r in records if r["kind"] == kind and r["mode"] == mode]
            ts = sorted({r["t"] for r in rs})
            if len(ts) < 2:
                continue
            mean = [sum(r["err"] for r in rs if r["t"] == t) / sum(1 for r in rs if r["t"] == t) for t in ts]
            tail = max(2, len(ts) // 2)  # the asymptotic half of the checkpoints
            entry = {"slope_all": loglog_slope(ts, mean), "slope_tail": loglog_slope(ts[-tail:], mean[-tail:]),
                     "final_t": ts[-1], "final_mean_err": mean[-1],
                     "final_mean_rel_err": sum(r["rel_err"] for r in rs if r["t"] == ts[-1]) / config.seeds,
                     "max_err_over_aposteriori_bound": max(r["err"] / r["bound"] for r in rs if r["bound"] > 0)}
            if mode == "scaled":
                msq = [sum(r["err"] ** 2 for r in rs if r["t"] == t) / config.seeds for t in ts]
                bnd = [next(r["rms_bound"] for r in rs if r["t"] == t) for t in ts]
                entry["max_rms_err_over_rms_bound"] = max(math.sqrt(m) / b for m, b in zip(msq, bnd, strict=True))
            else:
                gaps = [r["gap_ridge"] for r in rs if r["t"] == ts[-1]]
                entry["final_mean_gap_to_ridge_limit"] = sum(gaps) / len(gaps)
            fits[f"{kind}/{mode}"] = entry
    return {"fits": fits, "theory_slope": -0.5, "n_records": len(records)}
