"""The markdown report of one run, from its results dict alone (nothing is measured here)."""

from __future__ import annotations


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _load(x: list[float] | None) -> str:
    return "n/a" if x is None else ", ".join(f"{v:.2f}" for v in x)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# rlsedit benchmark report",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 2**30:.0f} GiB, torch {m['torch']} "
        f"({m['blas']}, {m['torch_threads']} threads), Python {m['python']}.",
        f"Load average (1, 5, 15 min) at the start: {_load(r['load_start'])}; at the end: {_load(r['load_end'])}. "
        f"Wall time {r['wall_seconds']:.0f} s.",
        "",
        "## 1. Ceilings (square products, start and end of the run)",
        "",
        "| dtype | n | GFLOP/s at start | GFLOP/s at end |",
        "|---|---|---|---|",
    ]
    for name, c in r["ceiling"].items():
        lines.append(f"| {name} | {c['start']['n']} | {c['start']['gflops']:.1f} | {c['end']['gflops']:.1f} |")
    lines += [
        "",
        "## 2. Per-batch update (`RLSEditor.update`, median over the repeats)",
        "",
        "GFLOP/s counts the flops of every step (`benchmarks/cases.py:update_flops`). *of gemm*: the",
        "step's throughput over that of the product (d_k, d_k) @ (d_k, u) on the same C, timed right",
        "after each step. *of peak*: over the best square product of the run. *traffic*: the step's",
        "time over the least time of its passes over C (one read pass plus one read-write pass of C,",
        "timed right after each step); *traffic C+W* adds those over W.",
        "",
        "| d_k x d_v | u | dtype | s/batch | GFLOP/s | of gemm | of peak | traffic C | traffic C+W | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["update"]:
        lines.append(
            f"| {c['d_k']} x {c['d_v']} | {c['u']} | {c['dtype']} | {c['seconds_median']:.4f} | "
            f"{c['gflops']:.1f} | {c['fraction_of_gemm']:.2f} | {c['fraction_of_peak']:.2f} | "
            f"{c['ratio_to_min_traffic_C']:.2f} | {c['ratio_to_min_traffic_CW']:.2f} | {c['load'][0]:.1f} |"
        )
    h = r["history"]
    lines += [
        "",
        "## 3. Flat in history",
        "",
        f"{h['batches']:,} batches of u = {h['u']} at {h['d_k']} x {h['d_v']} ({h['dtype']}). Side by side (a copy "
        f"of the editor at batch 100 and the editor at batch {h['batches']:,} take the same {h['window']} batches "
        f"in turn), median time ratio late / early: **{h['ratio']:.3f}**. Along the stream, batches "
        f"{h['late_batches'][0]}-{h['late_batches'][1] - 1} over batches {h['early_batches'][0]}-"
        f"{h['early_batches'][1] - 1}: medians {h['stream_ratio_median']:.3f}, minima {h['stream_ratio_min']:.3f} "
        "(these move with the machine's load). The step's work, "
        f"{h['flops_per_batch']:,} flops over {_mib(h['state_bytes'])} MiB of state, "
        "does not depend on the batch index.",
    ]
    if r["resolve"]:
        lines += [
            "",
            "## 4. Against the per-batch re-solve (float32, seconds per batch)",
            "",
            "| d_k x d_v | u | rlsedit | re-solve | speed-up | AlphaEdit | speed-up | MEMIT (from C_0) | load |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in r["resolve"]:
            s = c["seconds"]
            lines.append(
                f"| {c['d_k']} x {c['d_v']} | {c['u']} | {s['rlsedit']:.4f} | {s['resolve']:.3f} | "
                f"{c['speedup_vs_resolve']:.0f}x | {s['alphaedit']:.3f} | {c['speedup_vs_alphaedit']:.0f}x | "
                f"{s['memit']:.4f} | {c['load'][0]:.1f} |"
            )
    if r["memory"]:
        lines += [
            "",
            "## 5. Memory (one process per case; peak RSS above the process's RSS before the editor)",
            "",
            "*keep_W0*: whether the editor keeps its copy of W0 (`keep_W0=False` is the configuration of",
            "the 1.25x target). *editor state*: C + W, plus W0 when the editor keeps it. *construction / floor*:",
            "the peak while the editor is built (W0, C_0's factorisation and inverse), above the same baseline.",
            "",
            "| d_k x d_v | dtype | keep_W0 | u | floor C + W (MiB) | peak (MiB) | peak / floor "
            "| peak / editor state | last - first batch (MiB) | max - min (MiB) | construction / floor |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in r["memory"]:
            used = c["peak_rss_bytes"] - c["baseline_rss_bytes"]
            lines.append(
                f"| {c['d_k']} x {c['d_v']} | {c['dtype']} | {c.get('keep_W0', True)} | {c['u']} | "
                f"{_mib(c['floor_bytes'])} | {_mib(used)} | "
                f"{c['peak_over_floor']:.3f} | {c['peak_over_editor_state']:.3f} | "
                f"{c['growth_bytes'] / 2**20:.1f} | {c['rss_range_bytes'] / 2**20:.1f} | "
                + (f"{c['construction_over_floor']:.3f} |" if "construction_over_floor" in c else "- |")
            )
    L = r["long"]
    lines += ["", "## 6. Long stream at the Llama-3-8B size (`--long`)", ""]
    if L is None:
        lines.append("Not run (pass `--long`).")
    else:
        lines.append(
            f"{L['batches']} batches of {L['u']} ({L['edits']:,} edits) at {L['d_k']} x {L['d_v']}, {L['dtype']}: "
            f"stream {L['stream_seconds']:.1f} s, C_0 once {L['initial_inverse_seconds']:.1f} s; last batches over "
            f"first batches {L['history_ratio']:.3f}; five layers (sequentially) {L['five_layers_seconds']:.0f} s. "
            f"Load at the end: {_load(L['load'])}."
        )
    P = r["precision"]
    lines += [
        "",
        "## 7. float32: speed gained, accuracy lost",
        "",
        "Speed-up of float32 over float64 (seconds per batch, section 2):",
        "",
        "| d_k x d_v | u | float64 time / float32 time |",
        "|---|---|---|",
    ]
    lines += [f"| {c['d_k']} x {c['d_v']} | {c['u']} | {c['float64_over_float32']:.2f} |" for c in P["speedup"]]
    lines += [
        "",
        "Relative error of the float32 editor against the float64 one after the same stream "
        "(`python -m benchmarks.precision`; S, its Cholesky factor and the solves with it run in float64):",
        "",
        "| lam | anchor spectrum (decades) | d_k x d_v | u x batches | W rel. error | C rel. error |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {e['lam']:g} | {e['anchor_decades']:g} | {e['d_k']} x {e['d_v']} | {e['u']} x {e['batches']} | "
              f"{e['W_rel_error']:.1e} | {e['C_rel_error']:.1e} |" for e in P["errors"]]
    return "\n".join(lines) + "\n"
