"""Experiment 5: wall-clock cost of one RLSEdit update versus history length and versus batch size.

docs/method.md section 4: one batch of u edits costs O(d_k^2 u + d_k d_v u + u^3), independent of how
many batches came before. Two sweeps, each timing ``RLSEditor.update`` with
``time.perf_counter`` (median over ``repeats`` updates):

* history: stream ``n_history`` batches of ``u_history`` rows; record the time of each update
  against the number of rows already absorbed (the theory: flat);
* batch size: from a fresh editor, time updates of u rows for each u in ``batch_sizes`` (the
  theory: linear in u once d_k^2 u dominates; per edit, roughly constant).

Timings depend on the machine and on other load; the experiment records the thread count.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

import rlsedit
from rlsedit.config import Config as BaseConfig
from simulations.streams import make_stream

from ._common import check_positive, loglog_slope

NAME = "cost"


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the cost experiment.

    d_k, d_v: layer size; n_history: batches in the history sweep; u_history: rows per batch there;
    batch_sizes: the u of the batch-size sweep; repeats: updates timed per point (the median is
    kept); threads: torch threads while timing (1 = reproducible on a shared machine);
    dtype: float32 or float64.
    """

    d_k: int = 1024
    d_v: int = 256
    n_history: int = 400
    u_history: int = 16
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    repeats: int = 5
    threads: int = 1
    dtype: str = "float64"

    def validate(self) -> None:
        check_positive(self, "d_k", "d_v", "n_history", "u_history", "batch_sizes", "repeats", "threads")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("dtype must be float32 or float64")

    @classmethod
    def quick(cls) -> Config:
        return cls(d_k=192, d_v=48, n_history=60, u_history=8, batch_sizes=(1, 4, 16, 64), repeats=3)


def cells(config: Config) -> list[dict]:
    return [{"sweep": "history"}, {"sweep": "batch_size"}]


def _timed_update(editor: rlsedit.RLSEditor, K: torch.Tensor, V: torch.Tensor) -> float:
    start = time.perf_counter()
    editor.update(K, V)
    return time.perf_counter() - start


def run_cell(config: Config, cell: dict) -> list[dict]:
    dtype = getattr(torch, config.dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        s = make_stream(kind="powerlaw", d_k=config.d_k, d_v=config.d_v, u=max(config.batch_sizes), seed=0)
        W0 = s.W0.to(dtype)
        G = s.anchor_gram.to(dtype)
        out = []
        if cell["sweep"] == "history":
            editor = rlsedit.RLSEditor(W0, lam=0.1, mu=1.0, anchor_gram=G)
            s2 = make_stream(kind="powerlaw", d_k=config.d_k, d_v=config.d_v, u=config.u_history, seed=0)
            for b, (K, V) in enumerate(s2.batches(config.n_history)):
                dt = _timed_update(editor, K.to(dtype), V.to(dtype))
                out.append({"sweep": "history", "rows_before": b * config.u_history, "u": config.u_history,
                            "seconds": dt})
        else:
            K_all, V_all = s.rows(max(config.batch_sizes) * config.repeats)
            for u in config.batch_sizes:
                times = []
                editor = rlsedit.RLSEditor(W0, lam=0.1, mu=1.0, anchor_gram=G)
                for r in range(config.repeats + 1):  # the first update warms up
                    K = K_all[r * u: (r + 1) * u].to(dtype) if r < config.repeats else K_all[:u].to(dtype)
                    V = V_all[r * u: (r + 1) * u].to(dtype) if r < config.repeats else V_all[:u].to(dtype)
                    times.append(_timed_update(editor, K, V))
                sec = statistics.median(times[1:])
                out.append({"sweep": "batch_size", "u": u, "seconds": sec, "seconds_per_edit": sec / u})
        return out
    finally:
        torch.set_num_threads(before)


def summarize(config: Config, records: list[dict]) -> dict:
    hist = [r for r in records if r["sweep"] == "history"]
    n = len(hist)
    first = statistics.median(r["seconds"] for r in hist[1: max(2, n // 4)])
    last = statistics.median(r["seconds"] for r in hist[-max(1, n // 4):])
    xs = [r["rows_before"] for r in hist[1:]]
    ys = [r["seconds"] for r in hist[1:]]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / max(
        sum((a - mx) ** 2 for a in xs), 1e-300)
    bs = [r for r in records if r["sweep"] == "batch_size"]
    big = [r for r in bs if r["u"] >= 8] or bs
    return {
        "d_k": config.d_k, "d_v": config.d_v, "threads": config.threads, "dtype": config.dtype,
        "history_median_seconds_first_quarter": first,
        "history_median_seconds_last_quarter": last,
        "history_last_over_first": last / first,
        "history_seconds_per_1000_rows_slope": slope * 1000,
        "batch_size_loglog_slope_u_ge_8": loglog_slope([r["u"] for r in big], [r["seconds"] for r in big])
        if len(big) >= 2 else None,
        "batch_size_seconds": {str(r["u"]): r["seconds"] for r in bs},
        "batch_size_seconds_per_edit": {str(r["u"]): r["seconds_per_edit"] for r in bs},
    }
