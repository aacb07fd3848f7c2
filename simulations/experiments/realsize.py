"""Real layer sizes: d_k = 14336, d_v = 4096 (Llama-3-8B's down_proj), 10,000 edits in batches of 100,
float32 recursion, bounds checked along the way, and the recursion against the float64 closed form
(:func:`rlsedit.batch_solve`) at a few checkpoints.

The synthetic layer is built cheaply at that size: the anchor Gram is diagonal,
G = n_anchor * diag(s) with a power-law spectrum s_i ~ i^-anchor_alpha (trace d_k) — the basis does
not matter to the algebra, and a random rotation would cost O(d_k^3) to build; keys are
anchor-correlated, k = sqrt(rho) s^{1/2} * z_1 + sqrt(1 - rho) z_2; values V = K W_true + noise.

Per batch, two *consistency identities* (recorded with ``_consistency`` in their names): the
per-step bound with the editor's own C_t after the step and the soft-write interval with its own
C_{t-1} K^T. An independent solve per batch costs O(d_k^3) (minutes at this size), so these use the
recursion's state on both sides: they show that the recursion is consistent with itself, and a
broken recursion (e.g. a flipped downdate) can pass them; they are not evidence that it is right.

The evidence is at the checkpoints, where the float64 closed form (:func:`rlsedit.batch_solve`,
which shares no code with the recursion) is solved from scratch: ``rec_vs_batch_rel`` =
||W_rec - W_batch||_F / ||W_batch - W0||_F, the same error relative to ||W_batch||_F against
eps(dtype) * kappa_upper, where kappa_upper = (lambda_max(P) + ||K||_F^2) / lambda_min(P) >= cond(A_t)
is computed from the data (P = lam I + mu G is diagonal here); and the energy, weight-distance,
anchor-residual and quarter bounds (:func:`rlsedit.objective` in float64 at the editor's W) and the
spectral bound with ||C_0||_2, each measured from the editor's W alone and bounded from the
stream. Memory at full size, estimated
from the array sizes: about 10 GB at a checkpoint (the float64 normal matrix, its Cholesky factor,
the dense float64 anchor Gram and the stacked keys). It is one cell: an interrupted run starts
again from the beginning.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

import rlsedit
from rlsedit.config import Config as BaseConfig
from theory import soft_write_interval_from_gram, step_bound_from_gain

from ._common import check_non_negative, check_positive

NAME = "realsize"


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the real-size run.

    d_k, d_v: layer size; n_edits: total edit rows; u: rows per batch; lam, mu: weights;
    n_anchor: anchor Gram scale (n_w); anchor_alpha: its power-law exponent; rho: anchor share of
    the keys; noise: value noise; edit_scale: ||W_true - W0|| scale; checkpoints: number of
    (log-spaced) batches at which the float64 closed form is solved; dtype: the recursion's dtype;
    seed: the random seed.
    """

    d_k: int = 14336
    d_v: int = 4096
    n_edits: int = 10000
    u: int = 100
    lam: float = 1.0
    mu: float = 1.0
    n_anchor: float = 15000.0
    anchor_alpha: float = 0.5
    rho: float = 0.5
    noise: float = 0.1
    edit_scale: float = 1.0
    checkpoints: int = 3
    dtype: str = "float32"
    seed: int = 0

    def validate(self) -> None:
        check_positive(self, "d_k", "d_v", "n_edits", "u", "checkpoints")
        check_non_negative(self, "lam", "mu", "n_anchor", "anchor_alpha", "noise", "edit_scale")
        if not 0 <= self.rho <= 1:
            raise ValueError("rho must be in [0, 1]")
        if self.n_edits % self.u:
            raise ValueError("n_edits must be a multiple of u")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("dtype must be float32 or float64")
        if self.lam == 0 and self.mu == 0:
            raise ValueError("lam or mu must be > 0")

    @classmethod
    def quick(cls) -> Config:
        return cls(d_k=256, d_v=64, n_edits=400, u=20, checkpoints=2, n_anchor=1000.0)


def checkpoint_batches(config: Config) -> list[int]:
    n = config.n_edits // config.u
    return sorted({max(1, round(n ** (i / max(config.checkpoints - 1, 1)))) for i in range(config.checkpoints)})


def cells(config: Config) -> list[dict]:
    return [{"seed": config.seed}]


def run_cell(config: Config, cell: dict) -> list[dict]:
    dtype = getattr(torch, config.dtype)
    g = torch.Generator().manual_seed(cell["seed"])
    d_k, d_v = config.d_k, config.d_v
    s = torch.arange(1, d_k + 1, dtype=torch.float64) ** (-config.anchor_alpha)
    s = s * d_k / s.sum()
    G64 = torch.diag(config.n_anchor * s)  # (d_k, d_k), diagonal anchor Gram
    W0 = (torch.randn(d_k, d_v, generator=g) / math.sqrt(d_k)).to(dtype)
    W_true = W0 + config.edit_scale * (torch.randn(d_k, d_v, generator=g) / math.sqrt(d_k)).to(dtype)
    editor = rlsedit.RLSEditor(W0, lam=config.lam, mu=config.mu, anchor_gram=G64.to(dtype))
    c0_norm = 1.0 / (config.lam + config.mu * float(G64.diagonal().min()))  # ||C_0||_2, G diagonal
    root_s = s.sqrt().to(dtype)
    pts = set(checkpoint_batches(config))
    keys, values, out = [], [], []
    E_t = 0.0
    B_t = torch.zeros(d_k, d_v, dtype=torch.float64)
    for b in range(1, config.n_edits // config.u + 1):
        z1 = torch.randn(config.u, d_k, generator=g).to(dtype)
        z2 = torch.randn(config.u, d_k, generator=g).to(dtype)
        K = math.sqrt(config.rho) * root_s * z1 + math.sqrt(1 - config.rho) * z2  # (u, d_k)
        V = K @ W_true + config.noise * torch.randn(config.u, d_v, generator=g).to(dtype)
        R0 = (V - K @ W0).double()
        E_t += float((R0**2).sum())
        B_t += K.double().T @ R0  # (d_k, d_v)
        F_prev = editor.C @ K.T  # (d_k, u) = C_{t-1} K^T, before the step
        W_prev = editor.W.clone()
        start = time.perf_counter()
        rec = editor.update(K, V)
        seconds = time.perf_counter() - start
        gain = editor.C @ K.T  # (d_k, u) = C_t K^T, the editor's own C after the step
        step = float(torch.linalg.vector_norm((editor.W - W_prev).double()))
        step_val = step_bound_from_gain(gain, rec.residual_before)
        lo, hi = soft_write_interval_from_gram(K.double() @ F_prev.double(), rec.residual_before)
        # consistency identities: both sides from the recursion's own state (module docstring)
        row = {"batch": b, "edits": b * config.u, "update_seconds": seconds,
               "residual_before": rec.residual_before, "residual_after": rec.residual_after,
               "step_consistency": step / step_val if step_val else 0.0,
               "soft_write_upper_consistency": rec.residual_after / hi if hi else 0.0,
               "soft_write_lower_consistency": lo / rec.residual_after if rec.residual_after else 0.0}
        keys.append(K)
        values.append(V)
        if b in pts:
            Ks, Vs = torch.cat(keys).double(), torch.cat(values).double()
            t0 = time.perf_counter()
            W_batch = rlsedit.batch_solve(W0.double(), Ks, Vs, lam=config.lam, mu=config.mu, anchor_gram=G64)
            row["batch_solve_seconds"] = time.perf_counter() - t0
            W = editor.W.double()
            W0d = W0.double()
            row["rec_vs_batch_rel"] = float(torch.linalg.vector_norm(W - W_batch)
                                            / torch.linalg.vector_norm(W_batch - W0d))
            # the forward error against eps * kappa, with a certain upper bound on cond(A_t)
            prior = config.lam + config.mu * G64.diagonal()
            kappa_upper = (float(prior.max()) + float((Ks**2).sum())) / float(prior.min())
            row["kappa_upper"] = kappa_upper
            row["forward_error_over_eps_kappa"] = float(
                torch.linalg.vector_norm(W - W_batch) / torch.linalg.vector_norm(W_batch)
            ) / (float(torch.finfo(dtype).eps) * kappa_upper)
            J = rlsedit.objective(W, W0d, Ks, Vs, lam=config.lam, mu=config.mu, anchor_gram=G64)
            D = W - W0d
            dist = float(torch.linalg.vector_norm(D))
            row["energy_ratio"] = J.total / E_t
            row["quarter_energy_ratio"] = (J.weights + J.anchor) / (E_t / 4)
            if config.lam > 0:
                row["weight_distance_ratio"] = dist / math.sqrt(E_t / config.lam)
                row["quarter_weight_distance_ratio"] = dist / math.sqrt(E_t / (4 * config.lam))
            if config.mu > 0:
                row["anchor_residual_ratio"] = (J.anchor / config.mu) / (E_t / config.mu)
            dnorm = float(torch.linalg.eigvalsh(D.T @ D)[-1]) ** 0.5  # ||D||_2 via the (d_v, d_v) Gram
            bnorm = float(torch.linalg.eigvalsh(B_t.T @ B_t)[-1]) ** 0.5
            row["spectral_c0_ratio"] = dnorm / (c0_norm * bnorm)
            # the float64 batch solution obeys the same bounds: compare the float32 recursion's excess
            row["energy_ratio_batch"] = rlsedit.objective(W_batch, W0d, Ks, Vs, lam=config.lam, mu=config.mu,
                                                          anchor_gram=G64).total / E_t
            del Ks, Vs, W_batch, W, D
        out.append(row)
    return out


def summarize(config: Config, records: list[dict]) -> dict:
    ratio_keys = sorted({k for r in records for k in r if k.endswith("_ratio")})
    consistency_keys = sorted({k for r in records for k in r if k.endswith("_consistency")})
    summary = {f"max_{k}": max(r[k] for r in records if k in r) for k in ratio_keys + consistency_keys}
    summary["n_checks"] = sum(1 for r in records for k in r if k.endswith("_ratio"))
    summary["max_ratio"] = max(summary[f"max_{k}"] for k in ratio_keys)
    summary["n_consistency_identities"] = sum(1 for r in records for k in r if k.endswith("_consistency"))
    summary["max_consistency"] = max(summary[f"max_{k}"] for k in consistency_keys)
    summary["forward_error_over_eps_kappa"] = {str(r["edits"]): r["forward_error_over_eps_kappa"]
                                               for r in records if "forward_error_over_eps_kappa" in r}
    summary["rec_vs_batch_rel"] = {str(r["edits"]): r["rec_vs_batch_rel"] for r in records if "rec_vs_batch_rel" in r}
    summary["median_update_seconds"] = float(np.median([r["update_seconds"] for r in records]))
    summary["batch_solve_seconds"] = {str(r["edits"]): r["batch_solve_seconds"]
                                      for r in records if "batch_solve_seconds" in r}
    summary["torch_threads"] = torch.get_num_threads()
    return summary
