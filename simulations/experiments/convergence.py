"""Experiment 2: the rate of convergence to the many-edits limit, with its exact constant.

One fixed problem per stream kind (W0, W_true, the key distribution and the anchor all come from
``problem_seed``); ``stream_seeds`` independent row streams of that one problem (the rows'
random stream index). So every Monte Carlo average is over draws of the same experiment, and every
bound belongs to that problem. Two modes (:mod:`theory.limits`):

* ``scaled``: lam = t lam_bar, mu = t mu_bar; the limit is the ridge-regularised population
  minimiser W_inf; W_t is solved from the normal equations at each checkpoint (the editor's lam,
  mu are fixed for its lifetime).
* ``fixed``: lam, mu fixed; the limit is the population least-squares fit W_ls; W_t is the
  float64 RLSEditor's recursion.

Records, per (stream seed, checkpoint t): ``sq_err`` = ||W_t - W_lim||_F^2 and the a-posteriori
bound ||C_t||_2 ||b_t - A_t W_lim||_F with C_t from an independent eigendecomposition of A_t.
Per problem: the exact constant c* of t E||W_t - W_lim||^2 -> c* (:func:`theory.sandwich_constant`,
closed form, cross-checked by a plug-in estimate on independent rows) and the a-priori constant
sigma^2 / nu^2 (scaled mode).

Summary per (kind, mode): ``ratio_to_constant`` = t * mean sq_err / c* at the largest t with a
95% bootstrap interval over the stream seeds (theory: -> 1); the RMS error's log-log slope over the
last ``tail`` checkpoints with its bootstrap interval (theory: -1/2), and whether that interval
contains -1/2 and excludes the wrong slopes -1/4 and -1; the largest error / a-posteriori bound; and
(scaled) the RMS error over the a-priori bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import rlsedit
from rlsedit.config import Config as BaseConfig
from simulations.streams import KINDS, make_stream
from theory import noise_level, ridge_population_limit, scaled_limit_rms_bound
from theory.limits import (
    bootstrap_loglog_slope,
    bootstrap_mean_interval,
    least_squares_limit,
    sandwich_constant,
    sandwich_constant_from_rows,
)

from ._common import check_non_negative, check_positive

NAME = "convergence"
WRONG_SLOPES = (-0.25, -1.0)


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the convergence experiment.

    kinds: stream kinds with population moments (not drift; lowrank only in scaled mode);
    modes: "scaled" and/or "fixed"; lam_bar, mu_bar: per-edit regulariser weights of the scaled
    mode; lam, mu: the fixed mode's weights; d_k, d_v, u: sizes; n_rows: the largest t (edit rows);
    n_checkpoints: log-spaced checkpoints from u to n_rows; problem_seed: the one problem per kind;
    stream_seeds: independent row streams of it; block: stream seeds per cell; plugin_rows: rows
    for the plug-in estimates of the constants; noise: value noise; dof: Student-t degrees of
    freedom of heavytail keys (> 8: finite eighth moments, so the Monte Carlo variance is finite);
    tail: checkpoints of the slope fit (the last ones); n_boot: bootstrap resamples.
    """

    kinds: tuple[str, ...] = ("isotropic", "powerlaw", "heavytail", "anchored", "conflicting")
    modes: tuple[str, ...] = ("scaled", "fixed")
    lam_bar: float = 0.05
    mu_bar: float = 0.002
    lam: float = 1.0
    mu: float = 0.05
    d_k: int = 16
    d_v: int = 4
    u: int = 20
    n_rows: int = 10000
    n_checkpoints: int = 12
    problem_seed: int = 0
    stream_seeds: int = 200
    block: int = 50
    plugin_rows: int = 200000
    noise: float = 0.5
    dof: float = 10.0
    tail: int = 6
    n_boot: int = 2000

    def validate(self) -> None:
        check_positive(self, "d_k", "d_v", "u", "n_rows", "n_checkpoints", "stream_seeds", "block", "plugin_rows",
                       "tail", "n_boot")
        check_non_negative(self, "lam_bar", "mu_bar", "lam", "mu", "noise")
        if any(k not in KINDS or k == "drift" for k in self.kinds) or not self.kinds:
            raise ValueError(f"kinds must be stream kinds with moments (not drift), got {self.kinds}")
        if any(m not in ("scaled", "fixed") for m in self.modes) or not self.modes:
            raise ValueError(f"modes must be among ('scaled', 'fixed'), got {self.modes}")
        if self.n_rows < self.u:
            raise ValueError("n_rows must be >= u")
        if self.lam_bar == 0.0:
            raise ValueError("lam_bar must be > 0 (the scaled limit's rate needs nu > 0)")
        if self.stream_seeds < 2 or self.tail < 2:
            raise ValueError("stream_seeds and tail must be >= 2 (a bootstrap over streams, a slope over checkpoints)")
        if not self.dof > 4:
            raise ValueError(f"dof must be > 4 (finite fourth moments: the constant exists), got {self.dof}")

    @classmethod
    def quick(cls) -> Config:
        return cls(kinds=("isotropic", "heavytail"), d_k=6, d_v=2, u=50, n_rows=2000, n_checkpoints=8,
                   stream_seeds=64, block=64, plugin_rows=20000, tail=5, n_boot=1000)


def checkpoints(config: Config) -> list[int]:
    """Log-spaced batch counts (each a number of rows that is a multiple of u)."""
    n_batches = config.n_rows // config.u
    pts = {max(1, round(n_batches ** (i / (config.n_checkpoints - 1)))) for i in range(config.n_checkpoints)}
    return sorted(pts)


def cells(config: Config) -> list[dict]:
    return [{"kind": k, "mode": m, "block": b} for k in config.kinds for m in config.modes
            for b in range(-(-config.stream_seeds // config.block))]


def _stream(config: Config, kind: str):
    return make_stream(kind=kind, d_k=config.d_k, d_v=config.d_v, u=config.u, noise=config.noise,
                       seed=config.problem_seed, pool=2 * config.d_k, rho=0.7, n_anchor=1.0, dof=config.dof)


def problem_constants(config: Config, kind: str, mode: str) -> dict:
    """The limit, the exact constant c* (closed form and plug-in) and the a-priori constant."""
    s = _stream(config, kind)
    S, X = s.moments()
    W0, G = s.W0, s.anchor_gram
    eye = torch.eye(config.d_k, dtype=torch.float64)
    if mode == "scaled":
        W_lim = ridge_population_limit(S, X, W0, lam_bar=config.lam_bar, mu_bar=config.mu_bar, anchor_gram=G)
        M = S + config.lam_bar * eye + config.mu_bar * G
    else:
        W_lim = least_squares_limit(S, X)
        M = S
    W_eff, var = s.value_model()
    Delta = W_eff - W_lim
    Minv = torch.linalg.inv(M)
    quartic = s.quartic_moment((Minv @ Minv).numpy(), (Delta @ Delta.T).numpy())
    K, V = s.rows(config.plugin_rows, stream=2)  # independent of every stream checked
    out = {"W_lim": W_lim, "c_star": sandwich_constant(M, S, Delta, var, quartic),
           "c_star_plugin": sandwich_constant_from_rows(M, W_lim, K, V, S, X)}
    if mode == "scaled":
        sigma2 = noise_level(W_lim, K, V, S, X)
        out["apriori_constant"] = scaled_limit_rms_bound(1, sigma2, lam_bar=config.lam_bar, mu_bar=config.mu_bar,
                                                         anchor_gram=G) ** 2
    return out


def run_cell(config: Config, cell: dict) -> list[dict]:
    s = _stream(config, cell["kind"])
    const = problem_constants(config, cell["kind"], cell["mode"])
    W_lim, W0, G = const["W_lim"], s.W0, s.anchor_gram
    scaled = cell["mode"] == "scaled"
    pts = set(checkpoints(config))
    eye = torch.eye(config.d_k, dtype=torch.float64)
    out = []
    first = cell["block"] * config.block
    for seed in range(first, min(first + config.block, config.stream_seeds)):
        editor = None if scaled else rlsedit.RLSEditor(W0, lam=config.lam, mu=config.mu, anchor_gram=G)
        KtK = torch.zeros(config.d_k, config.d_k, dtype=torch.float64)
        KtR = torch.zeros_like(W0)  # sum K^T (V - K W0)
        KtRl = torch.zeros_like(W0)  # sum K^T (V - K W_lim)
        for b, (K, V) in enumerate(s.batches(max(pts), stream=100 + seed), start=1):
            KtK += K.T @ K
            KtR += K.T @ (V - K @ W0)
            KtRl += K.T @ (V - K @ W_lim)
            if editor is not None:
                editor.update(K, V)
            if b not in pts:
                continue
            t = b * config.u
            lam, mu = (t * config.lam_bar, t * config.mu_bar) if scaled else (config.lam, config.mu)
            A = lam * eye + mu * G + KtK
            if scaled:
                W = W0 + torch.linalg.solve(A, KtR)  # the normal equations (default anchor)
            else:
                W = editor.W
            # a-posteriori bound: ||W_t - W_lim|| <= ||C_t|| ||b_t - A_t W_lim||, C_t from eigvalsh of A_t
            resid = KtRl + lam * (W0 - W_lim) + mu * (G @ (W0 - W_lim))
            bound = float(torch.linalg.vector_norm(resid)) / float(torch.linalg.eigvalsh(A)[0])
            err2 = float(((W - W_lim) ** 2).sum())
            out.append({"kind": cell["kind"], "mode": cell["mode"], "seed": seed, "t": t, "sq_err": err2,
                        "aposteriori_bound": bound, "c_star": const["c_star"],
                        "c_star_plugin": const["c_star_plugin"],
                        "apriori_constant": const.get("apriori_constant")})
    return out


def summarize(config: Config, records: list[dict]) -> dict:
    fits = {}
    for kind in config.kinds:
        for mode in config.modes:
            rs = [r for r in records if r["kind"] == kind and r["mode"] == mode]
            ts = sorted({r["t"] for r in rs})
            seeds = sorted({r["seed"] for r in rs})
            if len(ts) < 2 or len(seeds) < 2:
                continue
            by = {(r["seed"], r["t"]): r["sq_err"] for r in rs}
            E = [[by[(sd, t)] for t in ts] for sd in seeds]  # (n_streams, n_t)
            c_star = rs[0]["c_star"]
            tail = ts[-config.tail:]
            slope = bootstrap_loglog_slope(tail, [row[-config.tail:] for row in E], n_boot=config.n_boot)
            ratio = bootstrap_mean_interval([row[-1] for row in E], scale=ts[-1] / c_star, n_boot=config.n_boot)
            mse = [sum(row[j] for row in E) / len(E) for j in range(len(ts))]
            entry = {
                "final_t": ts[-1], "n_streams": len(seeds), "c_star": c_star,
                "c_star_plugin_over_closed_form": rs[0]["c_star_plugin"] / c_star,
                "ratio_to_constant": ratio,
                "ratio_to_constant_by_t": {str(t): t * m / c_star for t, m in zip(ts, mse, strict=True)},
                "ratio_interval_contains_1": ratio["lo"] <= 1.0 <= ratio["hi"],
                "rms_slope": slope, "theory_slope": -0.5,
                "slope_interval_contains_theory": slope["lo"] <= -0.5 <= slope["hi"],
                "slope_interval_excludes": {str(w): not slope["lo"] <= w <= slope["hi"] for w in WRONG_SLOPES},
                "final_rms_err": math.sqrt(mse[-1]),
                "max_err_over_aposteriori_bound": max(math.sqrt(r["sq_err"]) / r["aposteriori_bound"] for r in rs
                                                      if r["aposteriori_bound"] > 0),
            }
            if mode == "scaled":
                a = rs[0]["apriori_constant"]
                entry["apriori_constant_over_c_star"] = a / c_star
                entry["max_rms_err_over_apriori_bound"] = max(math.sqrt(t * m / a)
                                                              for t, m in zip(ts, mse, strict=True))
            fits[f"{kind}/{mode}"] = entry
    return {"fits": fits, "theory_slope": -0.5, "wrong_slopes": list(WRONG_SLOPES), "n_records": len(records)}
