"""Experiment 4: early-edit retention along a stream, RLSEdit against MEMIT, AlphaEdit, ROME and FT.

Every editor gets the same stream (same W0, same anchor Gram, same batches). After each batch:

    cohort_residual   ||K_c W_t - V_c||_F / ||K_c W0 - V_c||_F for the first ``cohort_batches``
                      batches (1 = still unwritten, 0 = perfectly kept)
    all_residual      the same over every batch so far
    last_residual     the same for the batch just written
    heldout_drift     tr(D^T Sigma_A D) / tr(W0^T Sigma_A W0), D = W_t - W0: damage on the
                      anchor's key distribution ("generic text")
    cohort_bound      RLSEdit's bound on the cohort's residual (same normalisation), from the stream
                      and an independent solve (:func:`theory.cohort_retention_bound` with the
                      comparator W* = W_true, the map that generates "truth" values); it bounds the
                      RLS editor only: the other editors may cross it
    retention_bound   sqrt(min J_t) / ||K W0 - V||_F: RLSEdit's bound on all edits' residual
                      (:func:`theory.comparator_bound` at the minimiser)

The bounds are informative for realisable streams (``values = "truth"``); with arbitrary values
W_true is unrelated to the values and the cohort bound is loose (it is still recorded).

Editors' options: RLSEdit, MEMIT and ROME share lam, mu and the anchor Gram; AlphaEdit projects on
the eigenvectors of the anchor Gram below ``alpha_threshold`` * its largest eigenvalue, with its
``alpha_l2``; FT runs ``ft_steps`` projected-gradient steps at relative rate ``ft_lr``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlsedit import make_editor
from rlsedit.config import Config as BaseConfig
from simulations.streams import KINDS, make_stream
from theory import cohort_retention_bound, solve_stream

from ._common import check_non_negative, check_positive

NAME = "retention"
EDITOR_NAMES = ("rlsedit", "memit", "alphaedit", "rome", "ft")


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the retention experiment.

    editors: which editors; kind, values, noise: the stream; d_k, d_v, u, n_batches: sizes;
    cohort_batches: batches in the first cohort; lam, mu: RLSEdit/MEMIT/ROME weights; anchor_rank,
    n_anchor: the anchor Gram (rank 0 = full); alpha_threshold (relative), alpha_l2: AlphaEdit;
    ft_steps, ft_lr: FT; seeds: streams (the figure shows their mean).
    """

    editors: tuple[str, ...] = EDITOR_NAMES
    kind: str = "anchored"
    values: str = "arbitrary"
    noise: float = 0.1
    d_k: int = 256
    d_v: int = 32
    u: int = 8
    n_batches: int = 30
    cohort_batches: int = 2
    lam: float = 0.1
    mu: float = 1.0
    anchor_rank: int = 128
    n_anchor: float = 100.0
    alpha_threshold: float = 1e-6
    alpha_l2: float = 1.0
    ft_steps: int = 25
    ft_lr: float = 1.0
    seeds: int = 3

    def validate(self) -> None:
        check_positive(self, "d_k", "d_v", "u", "n_batches", "cohort_batches", "ft_steps", "seeds", "alpha_l2")
        check_non_negative(self, "lam", "mu", "alpha_threshold", "noise", "n_anchor")
        if any(e not in EDITOR_NAMES for e in self.editors) or not self.editors:
            raise ValueError(f"editors must be among {EDITOR_NAMES}, got {self.editors}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.cohort_batches > self.n_batches:
            raise ValueError("cohort_batches must be <= n_batches")
        if self.lam == 0.0 and (self.mu == 0.0 or self.anchor_rank):
            raise ValueError("lam = 0 needs mu > 0 and a full-rank anchor (anchor_rank = 0)")

    @classmethod
    def quick(cls) -> Config:
        return cls(d_k=32, d_v=8, u=4, n_batches=12, anchor_rank=16, seeds=1)


def cells(config: Config) -> list[dict]:
    return [{"editor": e, "seed": s} for e in config.editors for s in range(config.seeds)]


def _editor(config: Config, name: str, W0: torch.Tensor, G: torch.Tensor):
    if name in ("rlsedit", "memit", "rome"):
        return make_editor(name, W0, lam=config.lam, mu=config.mu, anchor_gram=G)
    if name == "alphaedit":
        thr = config.alpha_threshold * float(torch.linalg.eigvalsh(G)[-1])
        return make_editor(name, W0, anchor_gram=G, threshold=thr, l2=config.alpha_l2)
    return make_editor(name, W0, steps=config.ft_steps, lr=config.ft_lr)


def _rel(K: torch.Tensor, V: torch.Tensor, W: torch.Tensor, W0: torch.Tensor) -> float:
    base = float(torch.linalg.vector_norm(K @ W0 - V))
    return float(torch.linalg.vector_norm(K @ W - V)) / base if base else 0.0


def run_cell(config: Config, cell: dict) -> list[dict]:
    s = make_stream(kind=config.kind, d_k=config.d_k, d_v=config.d_v, u=config.u, values=config.values,
                    noise=config.noise, anchor_rank=config.anchor_rank, n_anchor=config.n_anchor,
                    seed=cell["seed"], rho=0.5)
    W0, G, SA = s.W0, s.anchor_gram, s.Sigma_A
    editor = _editor(config, cell["editor"], W0, G)
    held0 = float((W0 * (SA @ W0)).sum())
    batches = list(s.batches(config.n_batches))
    keys, values = [b[0] for b in batches], [b[1] for b in batches]
    # RLSEdit's bounds, from the stream and the normal equations solved from scratch (no editor)
    ref = solve_stream(W0, keys, values, lam=config.lam, mu=config.mu, anchor_gram=G if config.mu > 0 else None)
    Kc, Vc = torch.cat(keys[: config.cohort_batches]), torch.cat(values[: config.cohort_batches])
    cohort0 = float(torch.linalg.vector_norm(Kc @ W0 - Vc))
    out = []
    for b, (K, V) in enumerate(batches):
        editor.update(K, V)
        W = editor.W
        D = W - W0
        K_all, V_all = torch.cat(keys[: b + 1]), torch.cat(values[: b + 1])
        rec = {"editor": cell["editor"], "seed": cell["seed"], "batch": b, "edits": (b + 1) * config.u,
               "cohort_residual": _rel(Kc, Vc, W, W0) if b + 1 >= config.cohort_batches else None,
               "all_residual": _rel(K_all, V_all, W, W0),
               "last_residual": _rel(K, V, W, W0),
               "heldout_drift": float((D * (SA @ D)).sum()) / held0,
               "retention_bound": ref[b + 1].J_min ** 0.5 / float(torch.linalg.vector_norm(K_all @ W0 - V_all)),
               "cohort_bound": None}
        if b + 1 >= config.cohort_batches and cohort0 > 0:
            bound = cohort_retention_bound(ref[b + 1].C, Kc, Vc, s.W_true, W0, K_all, V_all, lam=config.lam,
                                           mu=config.mu, anchor_gram=G if config.mu > 0 else None)
            rec["cohort_bound"] = bound**0.5 / cohort0
        out.append(rec)
    return out


def summarize(config: Config, records: list[dict]) -> dict:
    final = {}
    last = config.n_batches - 1
    for e in config.editors:
        rs = [r for r in records if r["editor"] == e and r["batch"] == last]
        if not rs:
            continue
        final[e] = {k: sum(r[k] for r in rs) / len(rs)
                    for k in ("cohort_residual", "all_residual", "last_residual", "heldout_drift")}
    rls = [r for r in records if r["editor"] == "rlsedit" and r["cohort_bound"] is not None]
    crossings = {e: sum(1 for r in records if r["editor"] == e and r["cohort_bound"] is not None
                        and r["cohort_residual"] > r["cohort_bound"]) for e in config.editors}
    return {"final_mean_over_seeds": final, "n_edits": config.n_batches * config.u,
            "cohort_edits": config.cohort_batches * config.u,
            "rlsedit_max_cohort_residual_over_bound": max((r["cohort_residual"] / r["cohort_bound"] for r in rls
                                                           if r["cohort_bound"] > 0), default=None),
            "rlsedit_max_all_residual_over_retention_bound": max(
                (r["all_residual"] / r["retention_bound"] for r in records
                 if r["editor"] == "rlsedit" and r["retention_bound"] > 0), default=None),
            "batches_above_rls_cohort_bound": crossings,
            "final_mean_cohort_bound": sum(r["cohort_bound"] for r in rls if r["batch"] == last)
            / max(1, sum(1 for r in rls if r["batch"] == last))}
