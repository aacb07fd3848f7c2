"""A general sweep: the product of (generator, editor, lam, mu, d_k, d_v, u, seed), each streamed for
``n_batches`` batches, metrics recorded at log-spaced checkpoints t.

Per checkpoint: ``all_residual`` (every edit so far, relative to W0's residual), ``cohort_residual``
(the first batch), ``heldout_drift`` (tr(D^T Sigma_A D) / tr(W0^T Sigma_A W0)) and ``rel_change``
(||W_t - W0||_F / ||W0||_F). lam and mu apply to the editors that take them (rlsedit, memit, rome);
AlphaEdit uses the anchor Gram with a relative threshold, FT its defaults. A cell whose editor
cannot be built for its parameters (e.g. lam = mu = 0) records the error instead of failing the
sweep.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from rlsedit import RLSEditError, make_editor
from rlsedit.config import Config as BaseConfig
from simulations.streams import KINDS, make_stream

from ._common import check_non_negative, check_positive

NAME = "grid"
EDITOR_NAMES = ("rlsedit", "memit", "alphaedit", "rome", "ft")


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the general sweep (every list is comma-separated on the command line).

    generators: stream kinds; editors: editor names; lams, mus: regulariser weights; d_ks, d_vs, us:
    sizes; seeds: seed values; n_batches: batches per stream; n_checkpoints: log-spaced checkpoints;
    values: value mode; anchor_rank: rank of the anchor Gram (0 = full); alpha_threshold: AlphaEdit's
    threshold relative to the Gram's largest eigenvalue.
    """

    generators: tuple[str, ...] = ("isotropic", "powerlaw", "anchored")
    editors: tuple[str, ...] = EDITOR_NAMES
    lams: tuple[float, ...] = (0.01, 1.0)
    mus: tuple[float, ...] = (0.1, 10.0)
    d_ks: tuple[int, ...] = (64,)
    d_vs: tuple[int, ...] = (16,)
    us: tuple[int, ...] = (4, 16)
    seeds: tuple[int, ...] = (0, 1)
    n_batches: int = 40
    n_checkpoints: int = 6
    values: str = "arbitrary"
    anchor_rank: int = 0
    alpha_threshold: float = 0.05

    def validate(self) -> None:
        check_positive(self, "d_ks", "d_vs", "us", "n_batches", "n_checkpoints")
        check_non_negative(self, "lams", "mus", "alpha_threshold", "anchor_rank")
        if not self.generators or any(g not in KINDS for g in self.generators):
            raise ValueError(f"generators must be among {KINDS}, got {self.generators}")
        if not self.editors or any(e not in EDITOR_NAMES for e in self.editors):
            raise ValueError(f"editors must be among {EDITOR_NAMES}, got {self.editors}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")

    @classmethod
    def quick(cls) -> Config:
        return cls(generators=("isotropic", "anchored"), lams=(0.1,), mus=(1.0,), d_ks=(16,), d_vs=(4,), us=(4,),
                   seeds=(0,), n_batches=8, n_checkpoints=3)


def checkpoints(config: Config) -> list[int]:
    n = config.n_batches
    return sorted({max(1, round(n ** (i / max(config.n_checkpoints - 1, 1)))) for i in range(config.n_checkpoints)})


def cells(config: Config) -> list[dict]:
    out = []
    for g, e, lam, mu, d_k, d_v, u, seed in itertools.product(config.generators, config.editors, config.lams,
                                                               config.mus, config.d_ks, config.d_vs, config.us,
                                                               config.seeds):
        if e in ("alphaedit", "ft") and (lam, mu) != (config.lams[0], config.mus[0]):
            continue  # these editors do not take lam and mu: one cell per (generator, size, seed)
        out.append({"generator": g, "editor": e, "lam": lam, "mu": mu, "d_k": d_k, "d_v": d_v, "u": u, "seed": seed})
    return out


def _rel(K: torch.Tensor, V: torch.Tensor, W: torch.Tensor, W0: torch.Tensor) -> float:
    base = float(torch.linalg.vector_norm(K @ W0 - V))
    return float(torch.linalg.vector_norm(K @ W - V)) / base if base else 0.0


def run_cell(config: Config, cell: dict) -> list[dict]:
    s = make_stream(kind=cell["generator"], d_k=cell["d_k"], d_v=cell["d_v"], u=cell["u"], values=config.values,
                    anchor_rank=min(config.anchor_rank, cell["d_k"]), seed=cell["seed"])
    W0, G, SA = s.W0, s.anchor_gram, s.Sigma_A
    try:
        if cell["editor"] == "alphaedit":
            ed = make_editor("alphaedit", W0, anchor_gram=G,
                             threshold=config.alpha_threshold * float(torch.linalg.eigvalsh(G)[-1]))
        elif cell["editor"] == "ft":
            ed = make_editor("ft", W0)
        else:
            ed = make_editor(cell["editor"], W0, lam=cell["lam"], mu=cell["mu"], anchor_gram=G)
    except (RLSEditError, ValueError) as exc:
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    held0 = float((W0 * (SA @ W0)).sum())
    w0n = float(torch.linalg.vector_norm(W0))
    pts = set(checkpoints(config))
    keys, values, out = [], [], []
    for b, (K, V) in enumerate(s.batches(config.n_batches), start=1):
        ed.update(K, V)
        keys.append(K)
        values.append(V)
        if b in pts:
            D = ed.W - W0
            out.append({"t": b * cell["u"], "all_residual": _rel(torch.cat(keys), torch.cat(values), ed.W, W0),
                        "cohort_residual": _rel(keys[0], values[0], ed.W, W0),
                        "heldout_drift": float((D * (SA @ D)).sum()) / held0,
                        "rel_change": float(torch.linalg.vector_norm(D)) / w0n})
    return out


def summarize(config: Config, records: list[dict]) -> dict:
    finals: dict[str, dict] = {}
    for r in records:
        if "t" in r and (r["cell"] not in finals or r["t"] > finals[r["cell"]]["t"]):
            finals[r["cell"]] = r
    by_editor: dict[str, list[dict]] = {}
    for r in finals.values():
        by_editor.setdefault(r["cell"].split("editor=")[1].split(",")[0], []).append(r)
    return {
        "n_cells": len({r["cell"] for r in records}),
        "n_failed_cells": sum(1 for r in records if "error" in r),
        "mean_final_by_editor": {e: {k: sum(r[k] for r in rs) / len(rs)
                                     for k in ("all_residual", "cohort_residual", "heldout_drift")}
                                 for e, rs in sorted(by_editor.items())},
    }
