"""docs/performance.md's tables and the paragraphs that quote them, from the committed benchmark run.

``performance_data/bench_full_results.json`` is the ``results.json`` of ``rlsedit bench-solver --long``;
the suite's own report (:func:`benchmarks.report.markdown`) formats its tables, so a table here is
the report's table of that run. ``performance_data/kernels_14336.json`` is ``python -m
benchmarks.kernels``'s output.
"""

from __future__ import annotations

import statistics

from benchmarks.report import markdown as report
from tests.docs.tables import builder, markdown, read_json

RUN = "performance_data/bench_full_results.json"
REAL = (14336, 18944)  # the real layer sizes: Llama-3-8B's and Qwen2.5-7B's d_k


def run() -> dict:
    return read_json(RUN)


def report_tables(section: str) -> list[str]:
    """The markdown tables of the report's section whose heading starts with ``section`` ("2.")."""
    text = report(run())
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    tables, current = [], []
    for line in body.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current))
            current = []
    if current:
        tables.append("\n".join(current))
    return tables


def span(values, fmt: str = ".2f") -> str:
    """``a-b`` from the smallest to the largest value as printed (one value if they print alike)."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def updates(*, u: int, dtype: str | None = None, sizes=REAL) -> list[dict]:
    return [c for c in run()["update"] if c["u"] == u and c["d_k"] in sizes and (dtype is None or c["dtype"] == dtype)]


def pair(cases: list[dict], key: str, fmt: str = ".2f") -> str:
    """``x / y`` over the real sizes in order (14336 x 4096, then 18944 x 3584)."""
    return " / ".join(format(c[key], fmt) for c in sorted(cases, key=lambda c: c["d_k"]))


@builder("perf_ceilings")
def ceilings() -> str:
    c = run()["ceiling"]
    return (f"Square-product ceilings of the same run: **{c['float32']['start']['gflops']:.1f}** GFLOP/s float32 "
            f"and **{c['float64']['start']['gflops']:.1f}** float64 at the\nstart "
            f"({c['float32']['end']['gflops']:.1f} and {c['float64']['end']['gflops']:.1f} at the end).")


@builder("perf_update")
def update_table() -> str:
    return report_tables("2.")[0]


@builder("perf_update_summary")
def update_summary() -> str:
    gemm = [c["fraction_of_gemm"] for c in updates(u=100)]
    peak32 = [c["fraction_of_peak"] for c in updates(u=100, dtype="float32")]
    peak64 = [c["fraction_of_peak"] for c in updates(u=100, dtype="float64")]
    traffic = [c["ratio_to_min_traffic_C"] for c in updates(u=1)]
    speedup = [c["float64_over_float32"] for c in run()["precision"]["speedup"] if c["d_k"] in REAL]
    return (f"At u = 100 the step runs at {span(gemm)} of the product at its own shape at the real sizes and\n"
            f"at {span(peak32)} (float32) and {span(peak64)} (float64) of the square-product peak. At u = 1 it "
            f"takes {span(traffic)}x\nthe least time of its passes over C. float32 is {span(speedup, '.1f')}x faster "
            "than float64 at the real sizes\n(section \"float32\" below).")


@builder("perf_resolve")
def resolve_table() -> str:
    return report_tables("4.")[0]


@builder("perf_resolve_summary")
def resolve_summary() -> str:
    cases = run()["resolve"]
    big = next(c for c in cases if c["d_k"] == 14336 and c["u"] == 100)
    single = next(c for c in cases if c["d_k"] == 4096 and c["u"] == 1)
    return ("The speed-up grows with d_k / u (the re-solve is O(d_k^3), the step O(d_k^2 u)): "
            f"**{big['speedup_vs_resolve']:.0f}x** at the\nLlama-3-8B size with batches of 100, "
            f"{single['speedup_vs_resolve']:.0f}x at 4096 with single edits. `MEMITEditor` keeps C_0 and\n"
            "never downdates it, so it costs one pass over C per batch, less than RLSEdit: it is cheap\n"
            "because it forgets, not because it solves.")


@builder("perf_memory")
def memory_table() -> str:
    return report_tables("5.")[0]


@builder("perf_memory_summary")
def memory_summary() -> str:
    real = [c for c in run()["memory"] if c["d_k"] in REAL]
    lean = [c["peak_over_floor"] for c in real if not c["keep_W0"]]
    kept = [c for c in real if c["keep_W0"]]
    w0 = {c["d_k"]: c["editor_bytes"] / c["floor_bytes"] - 1 for c in kept}
    moved = max(c["rss_range_bytes"] for c in run()["memory"]) / 2**20
    return ("At the real sizes, with `keep_W0=False`, the peak is "
            f"**{span(lean)}x** C + W; with the default\n`keep_W0=True` the editor also holds W0 "
            f"({w0[14336]:.2f}x of the floor at 14336 x 4096, {w0[18944]:.2f}x at 18944 x 3584)\n"
            f"and the peak is {span([c['peak_over_floor'] for c in kept])}x the floor, "
            f"{span([c['peak_over_editor_state'] for c in kept])}x the editor's state. At the small sizes the floor\n"
            "is a few MiB and the step's working memory and the allocator's pools dominate. RSS moved by at\n"
            f"most {moved:.0f} MiB between batches, with no trend.")


@builder("perf_history")
def history() -> str:
    h, long = run()["history"], run()["long"]
    q1, _, q3 = statistics.quantiles(h["pair_ratios"], n=4, method="exclusive")
    return (f"{h['batches']:,} batches of u = {h['u']} at {h['d_k']} x {h['d_v']} ({h['dtype']}); a copy of the "
            f"editor taken at batch 100 and the\neditor at batch {h['batches']:,} then take the same {h['window']} "
            "batches in turn (which goes first alternates):\n"
            f"batch {h['batches']:,} / batch 100 = **{h['ratio']:.3f}** (median of the {len(h['pair_ratios'])} "
            f"per-pair ratios; quartiles {q1:.3f} and\n{q3:.3f}). Along the stream, batches "
            f"{h['late_batches'][0]:,}-{h['late_batches'][1] - 1:,} against {h['early_batches'][0]}-"
            f"{h['early_batches'][1] - 1} gave {h['stream_ratio_median']:.3f} for the medians and "
            f"{h['stream_ratio_min']:.3f}\nfor the minima: the figure's left panel shows the late rise (medians "
            f"{1e3 * h['early_seconds_median']:.2f} and {1e3 * h['late_seconds_median']:.2f} ms), which the\n"
            "side-by-side measurement, on the same machine at the same moment, does not reproduce; the\n"
            "step's work, `update_flops(d_k, d_v, u)` on tensors of fixed size, has no term in t. At the\n"
            "Llama-3-8B size the long stream below gives the last 10 batches over the first 10: "
            f"**{long['history_ratio']:.3f}**.")


@builder("perf_long")
def long_stream() -> str:
    L = run()["long"]
    s = L["seconds"]
    assert abs(5 * (L["initial_inverse_seconds"] + L["stream_seconds"]) - L["five_layers_seconds"]) < 1
    return (f"{L['batches']} batches of {L['u']} edits at {L['d_k']} x {L['d_v']}, {L['dtype']}, two threads: "
            f"**{L['stream_seconds']:.1f} s** (median {statistics.median(s):.3f} s per\nbatch, fastest "
            f"{min(s):.3f} s, slowest {max(s):.3f} s), plus **{L['initial_inverse_seconds']:.1f} s** for the one "
            "O(d_k^3) factorisation of\nC_0. Five layers edited one after the other: 5 x "
            f"({L['initial_inverse_seconds']:.1f} + {L['stream_seconds']:.1f}) s = "
            f"**{L['five_layers_seconds']:.0f} s** ({L['five_layers_seconds'] / 60:.1f} minutes) for\n"
            f"{L['edits']:,} edits into Llama-3-8B's five edited layers, on a 2-core CPU. (An earlier run under "
            "load,\none thread, load 3-4.5: 219 s for the stream and 71 s for C_0; that run's data was not kept.)")


@builder("perf_float32_speedup")
def float32_speedup() -> str:
    return report_tables("7.")[0]


@builder("perf_float32_error")
def float32_error() -> str:
    return report_tables("7.")[1]


@builder("perf_targets")
def targets() -> str:
    gemm32 = updates(u=100, dtype="float32")
    gemm64 = updates(u=100, dtype="float64")
    peak32 = [c["fraction_of_peak"] for c in gemm32]
    peak64 = [c["fraction_of_peak"] for c in gemm64]
    one32, one64 = updates(u=1, dtype="float32"), updates(u=1, dtype="float64")
    h, L = run()["history"], run()["long"]
    q1, _, q3 = statistics.quantiles(h["pair_ratios"], n=4, method="exclusive")
    mem = [c for c in run()["memory"] if c["d_k"] in REAL]

    def peak(d_k, dtype, keep):
        return next(c["peak_over_floor"] for c in mem if (c["d_k"], c["dtype"], c["keep_W0"]) == (d_k, dtype, keep))

    met = all(c["fraction_of_gemm"] >= 0.8 for c in gemm32 + gemm64)
    rows = [
        ["u = 100: whole update >= 80% of the measured matmul throughput",
         f"**{'Met' if met else 'Not met'} against the product at the step's own shape**: "
         f"{pair(gemm32, 'fraction_of_gemm')} (float32) and {pair(gemm64, 'fraction_of_gemm')} (float64) at "
         "14336 x 4096 / 18944 x 3584. **Not met against the square-product peak**: "
         f"{span(peak32)} float32, {span(peak64)} float64. What stands between, measured: next section."],
        ["u = 1: within 1.3x of the least traffic time over C",
         f"**{'Met' if all(c['ratio_to_min_traffic_C'] <= 1.3 for c in one32 + one64) else 'Not met'}**: "
         f"{pair(one32, 'ratio_to_min_traffic_C')} (float32) and {pair(one64, 'ratio_to_min_traffic_C')} (float64) "
         "at 14336 x 4096 / 18944 x 3584."],
        ["history: batch 10,000 / batch 100 = 1.0 +- 0.1",
         f"**{'Met' if abs(h['ratio'] - 1) <= 0.1 and abs(L['history_ratio'] - 1) <= 0.1 else 'Not met'}**: "
         f"{h['ratio']:.3f} side by side at {h['d_k']} x {h['d_v']} (quartiles {q1:.2f}-{q3:.2f}); "
         f"{L['history_ratio']:.3f} for the last over the first batches of the 10,000-edit stream at 14336 x 4096."],
        ["peak memory <= 1.25x (C + W), no growth",
         "**Met with `keep_W0=False`**: "
         f"{peak(14336, 'float32', False):.2f} / {peak(14336, 'float64', False):.2f} (float32 / float64) at "
         f"14336 x 4096, {peak(18944, 'float32', False):.2f} / {peak(18944, 'float64', False):.2f} at 18944 x 3584, "
         "no growth. With the default `keep_W0=True` (W0 kept): "
         f"{span([c['peak_over_floor'] for c in mem if c['keep_W0']])}x."],
        ["10,000 edits at the Llama-3-8B size, projection to five layers",
         f"{L['stream_seconds']:.1f} s + {L['initial_inverse_seconds']:.1f} s per layer, "
         f"{L['five_layers_seconds']:.0f} s for five (two threads)."],
    ]
    return markdown(["target", "status (numbers above, quiet machine)"], rows)


KERNELS = [  # (label in the table, key in kernels_14336.json, group)
    ("C -= G G^T, `torch.addmm_` (the solver)", "downdate addmm_ (solver)", "downdate"),
    ("the same, BLAS `ssyrk` on one triangle (scipy)", "downdate ssyrk (one triangle)", "downdate"),
    ("the same, lower row panels in torch (one triangle)", "downdate lower panels (torch, one triangle)", "downdate"),
    ("the same, torch panels mirrored into the upper triangle (full matrix)", "downdate panels + mirror", "downdate"),
    ("F = C K^T, `torch.mm` (the solver)", "F = C K^T mm (solver)", "F"),
    ("the same, BLAS `ssymv` / `ssymm` on one triangle (scipy)", "F = C K^T ssymv/ssymm (one triangle)", "F"),
    ("the same, lower panels in torch (each panel read as it is and transposed)",
     "F = C K^T lower panels (torch, one triangle)", "F"),
]


@builder("perf_kernels")
def kernels() -> str:
    """Median seconds per kernel; the fastest of each group (downdate, F) in bold for each u."""
    cases = {c["u"]: c["seconds_median"] for c in read_json("performance_data/kernels_14336.json")["cases"]}
    best = {(u, g): min(t[k] for _, k, gg in KERNELS if gg == g) for u, t in cases.items() for g in ("downdate", "F")}
    rows = []
    for label, key, group in KERNELS:
        cells = []
        for u in (1, 100):
            t = cases[u][key]
            cells.append(f"**{t:.3f}**" if t == best[(u, group)] else f"{t:.3f}")
        rows.append([label, *cells])
    return markdown(["kernel, 14336 x 14336 float32, seconds", "u = 1", "u = 100"], rows)
