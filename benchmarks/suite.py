"""The benchmark suite: ceilings, per-batch update, history, re-solve, memory, long stream.

Every timing of the solver is taken next to a ceiling measured in the same run, on the same
tensors, interleaved repetition by repetition, so that a shared machine's load moves both:

- matrix-multiply throughput at the solver's own shape, (d_k, d_k) @ (d_k, u), on the editor's C,
  and on square 4096 x 4096 products (the machine's peak);
- memory bandwidth as one read pass over C (a sum) and one read-write pass over C (an in-place
  scale by 1.0): their sum is the least time the three passes of the step over C can take
  (C is read for F = C K^T, then read and written for C -= G G^T).

Results are plain dicts, written by :func:`write_results` as ``results.json`` and ``report.md``.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlsedit.config import POSITIVE_INT, Config
from rlsedit.recursion import initial_inverse

from . import machine, precision
from .cases import (
    ResolveEachBatch,
    alphaedit_editor,
    batch,
    memit_editor,
    random_weight,
    rls_editor,
    update_flops,
)

LLAMA3_8B = (14336, 4096)
QWEN25_7B = (18944, 3584)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class BenchConfig(Config):
    """What one run measures. :data:`QUICK` and :data:`FULL` are the two the CLI offers."""

    sizes: tuple[tuple[int, int], ...]  # (d_k, d_v) of the per-batch update cases
    us: tuple[int, ...] = (1, 10, 100)  # edits per batch
    dtypes: tuple[str, ...] = ("float32", "float64")
    repeats: int = 5  # timed steps per case (after one warm-up step); the median is reported
    peak_n: int = 4096  # side of the square product that measures the machine's peak
    history_size: tuple[int, int] = (1024, 256)
    history_u: int = 1
    history_batches: int = 10_000
    history_window: int = 100  # batches per window compared (around batch 100 and at the end)
    resolve_sizes: tuple[tuple[int, int], ...] = ((1024, 256), (4096, 1024))
    resolve_large: tuple[tuple[int, int], ...] = ()  # sizes where only u = 100, float32, 1 repeat
    resolve_repeats: int = 2
    memory_sizes: tuple[tuple[int, int], ...] = ((1024, 256), (4096, 1024))
    memory_u: int = 100
    memory_batches: int = 10
    memory_keep_W0: tuple[bool, ...] = (False, True)  # the editor without its copy of W0, and with it
    long: bool = False  # the 10,000-edit stream at the Llama-3-8B size
    long_size: tuple[int, int] = LLAMA3_8B
    long_batches: int = 100
    long_u: int = 100
    long_dtype: str = "float32"
    precision_size: tuple[int, int] = (512, 128)  # the float32-vs-float64 accuracy stream
    precision_u: int = 10
    precision_batches: int = 200
    seed: int = 0

    def validate(self) -> None:
        sizes = ("pairs (d_k, d_v) of positive integers",
                 lambda v: isinstance(v, tuple) and all(isinstance(s, tuple) and len(s) == 2 and
                                                         all(isinstance(n, int) and n >= 1 for n in s) for s in v))
        self.require(sizes, "sizes", "resolve_sizes", "resolve_large", "memory_sizes")
        self.require(("a non-empty list of positive batch sizes",
                      lambda v: isinstance(v, tuple) and bool(v) and all(isinstance(u, int) and u >= 1 for u in v)),
                     "us")
        unknown = set(self.dtypes) - set(DTYPES) | ({self.long_dtype} - set(DTYPES))
        if unknown:
            raise self.bad("dtypes", f"must be among {sorted(DTYPES)} (unknown dtypes {sorted(unknown)})")
        self.require(POSITIVE_INT, "repeats", "resolve_repeats", "history_batches", "history_window",
                     "memory_batches", "long_batches", "long_u", "history_u", "peak_n", "memory_u", "precision_u",
                     "precision_batches")
        self.require(("true or false for each", lambda v: all(isinstance(k, bool) for k in v)), "memory_keep_W0")
        if self.history_window > 100 or self.history_batches < 100 + self.history_window:
            raise self.bad("history_window", "must be <= 100 with history_batches >= 100 + history_window: "
                           "the windows are around batch 100 and at the end")


QUICK = BenchConfig(sizes=((1024, 256), (4096, 1024)), repeats=3, peak_n=2048, history_batches=10_000,
                    memory_batches=10)
FULL = BenchConfig(sizes=((1024, 256), (4096, 1024), LLAMA3_8B, QWEN25_7B), repeats=5,
                   resolve_large=(LLAMA3_8B,), memory_sizes=((1024, 256), (4096, 1024), LLAMA3_8B, QWEN25_7B),
                   memory_batches=20)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# -- 1. ceilings -------------------------------------------------------------------------------

def square_peak(n: int, dtype: torch.dtype, repeats: int) -> dict:
    """GFLOP/s of (n, n) @ (n, n), the machine's best case for a matrix product."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, generator=g, dtype=dtype)
    B = torch.randn(n, n, generator=g, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(A, B, out=out)  # warm-up
    times = [_seconds(lambda: torch.mm(A, B, out=out)) for _ in range(repeats)]
    return {"n": n, "seconds": times, "gflops": 2 * n**3 / _median(times) / 1e9}


# -- 2. per-batch update -----------------------------------------------------------------------

def update_case(editor, d_k: int, d_v: int, u: int, dtype: torch.dtype, repeats: int,
                g: torch.Generator) -> dict:
    """Time ``editor.update`` and, interleaved, the ceilings on the same C (see the module doc)."""
    flops = update_flops(d_k, d_v, u)
    total = sum(flops.values())
    C, W = editor.C, editor.W
    batches = [batch(d_k, d_v, u, dtype, g) for _ in range(repeats + 1)]
    editor.update(*batches[0])  # warm-up: first touch of buffers, thread pool
    Kt = batches[0][0].T.contiguous()  # (d_k, u)
    step, gemm, read_c, rw_c, read_w, rw_w = [], [], [], [], [], []
    for K, V in batches[1:]:
        step.append(_seconds(lambda K=K, V=V: editor.update(K, V)))
        gemm.append(_seconds(lambda: torch.mm(C, Kt)))  # (d_k, d_k) @ (d_k, u), the step's shape
        read_c.append(_seconds(lambda: C.sum()))
        rw_c.append(_seconds(lambda: C.mul_(1.0)))
        read_w.append(_seconds(lambda: W.sum()))
        rw_w.append(_seconds(lambda: W.mul_(1.0)))
    gemm_flops = 2 * d_k * d_k * u
    traffic_c = [r + w for r, w in zip(read_c, rw_c, strict=True)]
    traffic_cw = [a + r + w for a, r, w in zip(traffic_c, read_w, rw_w, strict=True)]
    return {
        "d_k": d_k, "d_v": d_v, "u": u, "dtype": str(dtype).removeprefix("torch."),
        "flops": flops, "flops_total": total,
        "seconds": step, "seconds_median": _median(step),
        "gflops": total / _median(step) / 1e9,
        "gemm_gflops": gemm_flops / _median(gemm) / 1e9,
        # per repetition, step throughput / throughput of the solver-shape product next to it
        "fraction_of_gemm": _median([(total / t) / (gemm_flops / s) for s, t in zip(gemm, step, strict=True)]),
        "read_bandwidth_gbs": _bytes(C) / _median(read_c) / 1e9,
        "rw_bandwidth_gbs": 2 * _bytes(C) / _median(rw_c) / 1e9,
        "min_traffic_seconds_C": _median(traffic_c),
        "ratio_to_min_traffic_C": _median([t / m for t, m in zip(step, traffic_c, strict=True)]),
        "min_traffic_seconds_CW": _median(traffic_cw),
        "ratio_to_min_traffic_CW": _median([t / m for t, m in zip(step, traffic_cw, strict=True)]),
    }


def update_cases(cfg: BenchConfig, log: Callable[[str], None]) -> list[dict]:
    out = []
    for d_k, d_v in cfg.sizes:
        for name in cfg.dtypes:
            dtype = DTYPES[name]
            editor = rls_editor(random_weight(d_k, d_v, dtype, cfg.seed))
            g = torch.Generator().manual_seed(cfg.seed + 1)
            for u in cfg.us:
                case = update_case(editor, d_k, d_v, u, dtype, cfg.repeats, g)
                case["load"] = machine.load()
                log(f"update {d_k}x{d_v} u={u} {name}: {case['seconds_median']:.4f} s/batch, "
                    f"{case['gflops']:.1f} GFLOP/s = {case['fraction_of_gemm']:.2f} of the gemm, "
                    f"{case['ratio_to_min_traffic_C']:.2f}x the minimal traffic over C")
                out.append(case)
            del editor
    return out


# -- 3. flat in history ------------------------------------------------------------------------

def history(cfg: BenchConfig, log: Callable[[str], None]) -> dict:
    """A long stream at a small size: is batch ``history_batches`` slower than batch 100?

    Two measurements. (a) Along the stream: the median and the minimum time of the batches around
    batch 100 against the last ones (load that changes during the stream moves these). (b) Side by
    side, the primary figure: a copy of the editor taken at batch 100 and the editor at the end
    of the stream take the same ``history_window`` batches alternately, one batch each in turn
    (which one goes first alternates too), so that both see the same load; the median of the
    per-pair time ratios (late / early).
    """
    d_k, d_v = cfg.history_size
    u, n, w = cfg.history_u, cfg.history_batches, cfg.history_window
    dtype = torch.float64
    editor = rls_editor(random_weight(d_k, d_v, dtype, cfg.seed))
    g = torch.Generator().manual_seed(cfg.seed + 2)
    steps, early_copy = [], None
    for i in range(n):
        K, V = batch(d_k, d_v, u, dtype, g)
        steps.append(_seconds(lambda K=K, V=V: editor.update(K, V)))
        if i + 1 == 100:
            early_copy = type(editor).from_state_dict(editor.state_dict())
    early = slice(100 - w // 2, 100 + w // 2)  # around batch 100 (warm-up excluded)
    late = slice(n - w, n)  # the last batches
    pairs = []
    for j in range(w):
        K, V = batch(d_k, d_v, u, dtype, g)
        run_early = lambda K=K, V=V: _seconds(lambda: early_copy.update(K, V))  # noqa: E731
        run_late = lambda K=K, V=V: _seconds(lambda: editor.update(K, V))  # noqa: E731
        if j % 2:  # alternate which editor goes first, so that warm caches favour neither
            t_late, t_early = run_late(), run_early()
        else:
            t_early, t_late = run_early(), run_late()
        pairs.append(t_late / t_early)
    ratio = _median(pairs)
    stride = max(1, n // 200)
    log(f"history {d_k}x{d_v} u={u}: batch {n} / batch 100 = {ratio:.3f} side by side "
        f"(along the stream: medians {_median(steps[late]) / _median(steps[early]):.3f}, "
        f"minima {min(steps[late]) / min(steps[early]):.3f})")
    return {
        "d_k": d_k, "d_v": d_v, "u": u, "dtype": "float64", "batches": n, "window": w,
        "early_batches": [early.start, early.stop], "late_batches": [late.start, late.stop],
        "ratio": ratio, "pair_ratios": pairs,
        "stream_ratio_median": _median(steps[late]) / _median(steps[early]),
        "stream_ratio_min": min(steps[late]) / min(steps[early]),
        "early_seconds_median": _median(steps[early]), "late_seconds_median": _median(steps[late]),
        # medians over consecutive blocks of `stride` batches, for the plot
        "block": stride,
        "block_seconds": [_median(steps[i:i + stride]) for i in range(0, n, stride)],
        "flops_per_batch": sum(update_flops(d_k, d_v, u).values()),
        "state_bytes": _bytes(editor.C) + _bytes(editor.W),
        "load": machine.load(),
    }


# -- 4. against the per-batch re-solve -----------------------------------------------------------

def _per_batch(make: Callable[[torch.Tensor], object], W0: torch.Tensor, u: int, repeats: int,
               seed: int) -> list[float]:
    editor = make(W0)
    d_k, d_v = W0.shape
    g = torch.Generator().manual_seed(seed)
    batches = [batch(d_k, d_v, u, W0.dtype, g) for _ in range(repeats + 1)]
    editor.update(*batches[0])  # warm-up
    times = [_seconds(lambda K=K, V=V: editor.update(K, V)) for K, V in batches[1:]]
    return times


RESOLVE_EDITORS: dict[str, Callable[[torch.Tensor], object]] = {
    "rlsedit": rls_editor,
    "resolve": ResolveEachBatch,
    "memit": memit_editor,
    "alphaedit": alphaedit_editor,
}


def resolve_cases(cfg: BenchConfig, log: Callable[[str], None]) -> list[dict]:
    plan = [(size, u, cfg.resolve_repeats) for size in cfg.resolve_sizes for u in cfg.us]
    plan += [(size, 100, 1) for size in cfg.resolve_large]
    out = []
    for (d_k, d_v), u, repeats in plan:
        W0 = random_weight(d_k, d_v, torch.float32, cfg.seed)
        seconds = {name: _median(_per_batch(make, W0, u, repeats, cfg.seed + 3))
                   for name, make in RESOLVE_EDITORS.items()}
        case = {"d_k": d_k, "d_v": d_v, "u": u, "dtype": "float32", "repeats": repeats,
                "seconds": seconds,
                "speedup_vs_resolve": seconds["resolve"] / seconds["rlsedit"],
                "speedup_vs_alphaedit": seconds["alphaedit"] / seconds["rlsedit"],
                "speedup_vs_memit": seconds["memit"] / seconds["rlsedit"],
                "load": machine.load()}
        log(f"resolve {d_k}x{d_v} u={u}: rlsedit {seconds['rlsedit']:.4f} s, re-solve {seconds['resolve']:.3f} s "
            f"({case['speedup_vs_resolve']:.0f}x), alphaedit {seconds['alphaedit']:.3f} s, "
            f"memit {seconds['memit']:.4f} s")
        out.append(case)
    return out


# -- 5. memory ---------------------------------------------------------------------------------

def memory_cases(cfg: BenchConfig, log: Callable[[str], None]) -> list[dict]:
    """One fresh process per case (:mod:`benchmarks.memory_case`): peak RSS against C + W.

    Each size and dtype is measured with the editor built with ``keep_W0=False`` and ``True``
    (``cfg.memory_keep_W0``): the target's configuration, and the class's default.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = []
    for d_k, d_v in cfg.memory_sizes:
        for name, keep_W0 in itertools.product(cfg.dtypes, cfg.memory_keep_W0):
            cmd = [sys.executable, "-m", "benchmarks.memory_case", "--d-k", str(d_k), "--d-v", str(d_v),
                   "--u", str(cfg.memory_u), "--dtype", name, "--batches", str(cfg.memory_batches),
                   "--seed", str(cfg.seed), "--threads", str(torch.get_num_threads())]
            cmd += ["--keep-W0"] if keep_W0 else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
            if proc.returncode != 0:
                raise RuntimeError(f"memory case {d_k}x{d_v} {name} keep_W0={keep_W0} failed:\n{proc.stderr}")
            case = json.loads(proc.stdout)
            used = case["peak_rss_bytes"] - case["baseline_rss_bytes"]
            after = case["rss_after_batch_bytes"]
            case["peak_over_floor"] = used / case["floor_bytes"]
            case["peak_over_editor_state"] = used / case["editor_bytes"]
            built = case["construction_peak_rss_bytes"] - case["baseline_rss_bytes"]
            case["construction_over_floor"] = built / case["floor_bytes"]
            # growth along the stream: resident set after the last batch minus after the first
            case["growth_bytes"] = after[-1] - after[0]
            case["rss_range_bytes"] = max(after) - min(after)
            case["load"] = machine.load()
            log(f"memory {d_k}x{d_v} {name} keep_W0={keep_W0}: peak {used / 2**20:.0f} MiB = "
                f"{case['peak_over_floor']:.3f}x C + W, growth {case['growth_bytes'] / 2**20:.1f} MiB "
                f"over {len(after)} batches; construction peak {case['construction_over_floor']:.3f}x C + W")
            out.append(case)
    return out


# -- 6. the 10,000-edit stream -----------------------------------------------------------------

def long_stream(cfg: BenchConfig, log: Callable[[str], None]) -> dict:
    """``long_batches`` batches of ``long_u`` edits at ``long_size``: wall time, and for five layers."""
    d_k, d_v = cfg.long_size
    dtype = DTYPES[cfg.long_dtype]
    c0 = _seconds(lambda: initial_inverse(d_k, 1.0, 0.0, None, dtype, torch.device("cpu")))
    log(f"long: C_0 = (lam I)^(-1) at {d_k} by Cholesky in {c0:.1f} s")
    editor = rls_editor(random_weight(d_k, d_v, dtype, cfg.seed))
    g = torch.Generator().manual_seed(cfg.seed + 4)
    times = []
    for i in range(cfg.long_batches):
        K, V = batch(d_k, d_v, cfg.long_u, dtype, g)
        times.append(_seconds(lambda K=K, V=V: editor.update(K, V)))
        if (i + 1) % 10 == 0:
            log(f"long: {i + 1} batches, last {times[-1]:.3f} s")
    stream = sum(times)
    w = max(1, min(10, cfg.long_batches // 4))
    return {
        "d_k": d_k, "d_v": d_v, "u": cfg.long_u, "batches": cfg.long_batches, "dtype": cfg.long_dtype,
        "edits": cfg.long_u * cfg.long_batches,
        "initial_inverse_seconds": c0, "stream_seconds": stream, "seconds": times,
        "history_ratio": _median(times[-w:]) / _median(times[1:1 + w]),
        "five_layers_seconds": 5 * (c0 + stream),
        "load": machine.load(),
    }


# -- 7. float32: speed gained, accuracy lost ------------------------------------------------------

def float32_cost(cfg: BenchConfig, update: list[dict], log: Callable[[str], None]) -> dict:
    """Speed-up of float32 over float64 per update case, next to float32's error on a stream."""
    seconds = {(c["d_k"], c["d_v"], c["u"], c["dtype"]): c["seconds_median"] for c in update}
    speedup = [{"d_k": d_k, "d_v": d_v, "u": u, "float64_over_float32": seconds[d_k, d_v, u, "float64"] / t}
               for (d_k, d_v, u, name), t in seconds.items()
               if name == "float32" and (d_k, d_v, u, "float64") in seconds]
    d_k, d_v = cfg.precision_size
    errors = precision.run(d_k, d_v, cfg.precision_u, cfg.precision_batches, cfg.seed)
    for e in errors:
        log(f"float32 error at lam={e['lam']}: W {e['W_rel_error']:.1e}, C {e['C_rel_error']:.1e}")
    return {"speedup": speedup, "errors": errors}


# -- the run -----------------------------------------------------------------------------------

@dataclass
class Results:
    config: dict
    machine: dict
    load_start: list[float] | None
    ceiling: dict = field(default_factory=dict)
    update: list[dict] = field(default_factory=list)
    history: dict | None = None
    resolve: list[dict] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)
    long: dict | None = None
    precision: dict = field(default_factory=dict)
    load_end: list[float] | None = None
    wall_seconds: float = 0.0


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    start = time.perf_counter()
    res = Results(config=asdict(cfg), machine=machine.describe(), load_start=machine.load())
    log(f"machine: {res.machine['cpu']}, {res.machine['cores']} cores, torch {res.machine['torch']} "
        f"with {res.machine['torch_threads']} threads; load {res.load_start}")
    for name in cfg.dtypes:
        res.ceiling[name] = {"start": square_peak(cfg.peak_n, DTYPES[name], cfg.repeats)}
        log(f"peak {name}: {res.ceiling[name]['start']['gflops']:.1f} GFLOP/s on {cfg.peak_n}^2 products")
    res.update = update_cases(cfg, log)
    res.history = history(cfg, log)
    res.resolve = resolve_cases(cfg, log)
    res.memory = memory_cases(cfg, log)
    if cfg.long:
        res.long = long_stream(cfg, log)
    res.precision = float32_cost(cfg, res.update, log)
    for name in cfg.dtypes:
        res.ceiling[name]["end"] = square_peak(cfg.peak_n, DTYPES[name], cfg.repeats)
        peaks = [res.ceiling[name][k]["gflops"] for k in ("start", "end")]
        res.ceiling[name]["gflops"] = max(peaks)
    for case in res.update:
        case["fraction_of_peak"] = case["gflops"] / res.ceiling[case["dtype"]]["gflops"]
    res.load_end = machine.load()
    res.wall_seconds = time.perf_counter() - start
    return asdict(res)


def write_results(results: dict, out: Path) -> list[Path]:
    """Write ``results.json`` and ``report.md`` (and the figure, see :mod:`benchmarks.plot`) into out."""
    from .plot import plot
    from .report import markdown

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "report.md"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown(results))
    paths.append(plot(results, out))
    return paths
