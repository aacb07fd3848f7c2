"""Figures drawn from results folders only (config.json, metrics.jsonl, summary.json); no computation
beyond grouping and averaging the recorded numbers. Each figure is saved as vector PDF and PNG."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt

from .sweep import read_metrics

STYLE = {
    "figure.figsize": (6.4, 4.0), "figure.dpi": 100, "savefig.dpi": 150, "font.size": 9,
    "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
}
EDITOR_COLOURS = {"rlsedit": "C0", "memit": "C1", "alphaedit": "C2", "rome": "C3", "ft": "C4"}
EDITOR_LABELS = {"rlsedit": "RLSEdit", "memit": "MEMIT", "alphaedit": "AlphaEdit", "rome": "ROME", "ft": "FT"}


class NotAResultsFolder(ValueError):
    """The folder has no config.json naming an experiment, or its metrics are missing."""


def load(folder: Path) -> tuple[dict, list[dict], dict]:
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise NotAResultsFolder(f"{folder} has no config.json") from None
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    records = [r for r in read_metrics(folder / "metrics.jsonl") if r.get("event") is None]
    return config, records, summary


def _save(fig, out: Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out / f"{stem}.{fmt}"
        fig.savefig(p)
        paths.append(p)
    plt.close(fig)
    return paths


def fig_bounds(config: dict, records: list[dict], summary: dict):
    """Left: each bound's worst margin per stream (true editor); right: which broken editors each
    bound catches (streams flagged / streams run). Identities are labelled as such."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.get("role") == "true" and r.get("family") != "tight" and r.get("max_margin", 0) > 0:
            groups[r["bound"]].append(r["max_margin"])
    identities = set(summary.get("consistency_identities", []))
    names = sorted(groups, key=lambda n: (n in identities, n))
    controls = list(summary.get("negative_controls", {}))
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 0.3 * len(names) + 1.6), sharey=True,
                             gridspec_kw={"width_ratios": [1.4, 1.0]})
    ax = axes[0]
    ax.boxplot([groups[n] for n in names], orientation="horizontal", whis=(0, 100), widths=0.6)
    labels = [n.replace("_", " ") + (" (catches none)" if n in identities else "") for n in names]
    ax.set_yticks(range(1, len(names) + 1), labels)
    tight = summary.get("tight_streams_ratio", {})
    ys = [names.index(n) + 1 for n in tight if n in names]
    xs = [tight[n] for n in tight if n in names]
    ax.scatter(xs, ys, marker="*", s=70, color="C3", zorder=3, label="tight stream (theory.tight)")
    ax.axvline(1.0, color="k", lw=1, ls="--", label="bound (margin 1)")
    ax.set_xscale("log")
    ax.set_xlabel("worst measured / bound per stream, after rounding allowances (log scale)")
    ax.set_title(f"RLSEditor: {summary.get('n_streams', '?')} streams, {summary.get('n_checks', '?')} checks, "
                 f"{summary.get('n_above_tolerance', '?')} violations")
    ax.legend(loc="lower left", fontsize=7)
    ax = axes[1]
    neg = summary.get("negative_controls", {})
    Z = [[neg[c]["by_bound"].get(n, 0) / max(neg[c]["streams"], 1) for c in controls] for n in names]
    if controls:
        ax.imshow(Z, aspect="auto", cmap="Reds", vmin=0, vmax=1, origin="lower",
                  extent=(-0.5, len(controls) - 0.5, 0.5, len(names) + 0.5))
        for i, row in enumerate(Z):
            for j, v in enumerate(row):
                ax.text(j, i + 1, f"{v:.0%}" if v else "-", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(controls)), [c.replace("_", " ") for c in controls], rotation=30, ha="right")
    ax.grid(False)
    ax.set_title("negative controls: share of streams flagged")
    return {"bounds_ratios": fig}


def fig_convergence(config: dict, records: list[dict], summary: dict):
    """Left: RMS error against t per kind and mode (mean over the row streams of one problem), with
    the fitted slope and its bootstrap interval. Right: t E||W_t - W_lim||^2 / c* against t (theory:
    -> 1), with the bootstrap interval at the largest t."""
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.0))
    fits = summary.get("fits", {})
    for i, kind in enumerate(config["kinds"]):
        for mode, style in (("scaled", "o-"), ("fixed", "s--")):
            rs = [r for r in records if r["kind"] == kind and r["mode"] == mode]
            ts = sorted({r["t"] for r in rs})
            if not ts:
                continue
            rms = [mean(r["sq_err"] for r in rs if r["t"] == t) ** 0.5 for t in ts]
            f = fits.get(f"{kind}/{mode}", {})
            sl = f.get("rms_slope", {})
            axes[0].loglog(ts, rms, style, ms=3, color=f"C{i}",
                           label=f"{kind}, {mode}: slope {sl.get('slope', float('nan')):.3f} "
                                 f"[{sl.get('lo', float('nan')):.3f}, {sl.get('hi', float('nan')):.3f}]")
            c = rs[0]["c_star"]
            axes[1].semilogx(ts, [t * m**2 / c for t, m in zip(ts, rms, strict=True)], style, ms=3, color=f"C{i}",
                             label=f"{kind}, {mode}")
            ci = f.get("ratio_to_constant")
            if ci:
                axes[1].errorbar([ts[-1]], [ci["value"]], yerr=[[ci["value"] - ci["lo"]], [ci["hi"] - ci["value"]]],
                                 color=f"C{i}", capsize=3)
    ts_all = sorted({r["t"] for r in records})
    if ts_all:
        y0 = min(mean(r["sq_err"] for r in records if r["t"] == ts_all[0] and r["kind"] == k) ** 0.5
                 for k in config["kinds"])
        axes[0].loglog(ts_all, [y0 * (t / ts_all[0]) ** -0.5 for t in ts_all], "k:", lw=1, label="slope -1/2")
    axes[0].set_xlabel("edits t (rows)")
    axes[0].set_ylabel("RMS ||W_t - W_lim||_F over row streams")
    axes[0].set_title(f"one problem per kind, {summary.get('fits') and next(iter(fits.values()))['n_streams']} "
                      "row streams (95% bootstrap intervals)")
    axes[0].legend(fontsize=6)
    axes[1].axhline(1.0, color="k", lw=1)
    axes[1].set_xlabel("edits t (rows)")
    axes[1].set_ylabel("t E||W_t - W_lim||^2 / c*  (c* = tr(M^-1 Q M^-1))")
    axes[1].set_title("the exact constant (theory: -> 1)")
    axes[1].legend(fontsize=6)
    return {"convergence": fig}


def fig_tradeoff(config: dict, records: list[dict], summary: dict):
    lams = sorted({r["lam"] for r in records})
    mus = sorted({r["mu"] for r in records})
    at = {(r["lam"], r["mu"]): r for r in records}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0))
    for ax, key, title in ((axes[0], "adherence", "edits' residual f / E_t (adherence)"),
                           (axes[1], "heldout_drift", "held-out drift on anchor keys (relative)")):
        Z = [[max(at[(lam, mu)][key], 1e-16) for lam in lams] for mu in mus]
        im = ax.pcolormesh(lams, mus, Z, shading="nearest", norm=mcolors.LogNorm())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("lam (weight of ||W - W0||^2)")
        ax.set_ylabel("mu (weight of anchor term)")
        ax.set_title(title)
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="relative value (log scale)")
    ax = axes[2]
    for j, mu in enumerate(mus[:: max(1, len(mus) // 5)]):
        rs = [at[(lam, mu)] for lam in lams]
        ax.loglog([max(r["heldout_drift"], 1e-16) for r in rs], [r["adherence"] for r in rs], "o-", ms=3,
                  color=f"C{j}", label=f"mu = {mu:.0e}")
    ax.set_xlabel("held-out drift (relative; left = preserved)")
    ax.set_ylabel("f / E_t (down = edits written)")
    ax.set_title("trade-off curves, lam increasing along each")
    ax.legend()
    return {"tradeoff": fig}


def fig_retention(config: dict, records: list[dict], summary: dict):
    """Early cohort's residual and held-out drift against t for every editor; for a realisable
    stream (values = truth) RLSEdit's cohort bound (theory.cohort_retention_bound, recorded by the
    experiment) is drawn, mean over seeds. Saved as "retention_realisable" then."""
    realisable = config.get("values") == "truth"
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    for ed in config["editors"]:
        rs = [r for r in records if r["editor"] == ed and r["cohort_residual"] is not None]
        es = sorted({r["edits"] for r in rs})
        for ax, key in zip(axes, ("cohort_residual", "heldout_drift"), strict=True):
            ax.plot(es, [mean(r[key] for r in rs if r["edits"] == e) for e in es], "-",
                    color=EDITOR_COLOURS.get(ed), label=EDITOR_LABELS.get(ed, ed))
    bound = [r for r in records if r["editor"] == config["editors"][0] and r.get("cohort_bound") is not None]
    if realisable and bound:
        es = sorted({r["edits"] for r in bound})
        axes[0].plot(es, [mean(r["cohort_bound"] for r in bound if r["edits"] == e) for e in es], "k--", lw=1.2,
                     label="RLSEdit's bound (W* = W_true)")
    axes[0].set_ylabel("first cohort's residual / its residual at W0")
    axes[0].set_title(f"retention of the first {config['cohort_batches'] * config['u']} edits"
                      + (" (realisable stream)" if realisable else ""))
    axes[1].set_ylabel("held-out drift tr(D^T Sigma_A D) / tr(W0^T Sigma_A W0)")
    axes[1].set_yscale("symlog", linthresh=1e-4)
    axes[1].set_title("damage on the anchor's key distribution")
    for ax in axes:
        ax.set_xlabel("edits written (rows)")
        ax.legend()
    return {"retention_realisable" if realisable else "retention": fig}


def fig_cost(config: dict, records: list[dict], summary: dict):
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    hist = [r for r in records if r["sweep"] == "history"]
    axes[0].plot([r["rows_before"] for r in hist], [1e3 * r["seconds"] for r in hist], ".", ms=3)
    axes[0].set_xlabel("edit rows already absorbed")
    axes[0].set_ylabel("time of one update (ms)")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title(f"history: batches of {config['u_history']} (d_k={config['d_k']}, d_v={config['d_v']})")
    bs = [r for r in records if r["sweep"] == "batch_size"]
    us = [r["u"] for r in bs]
    axes[1].loglog(us, [1e3 * r["seconds"] for r in bs], "o-", label="per batch")
    axes[1].loglog(us, [1e3 * r["seconds_per_edit"] for r in bs], "s--", label="per edit")
    axes[1].set_xlabel("batch size u (rows)")
    axes[1].set_ylabel("time (ms)")
    slope = summary.get("batch_size_loglog_slope_u_ge_8")
    axes[1].set_title("batch size" + (f": log-log slope {slope:.2f} (u >= 8)" if slope is not None else ""))
    axes[1].legend()
    fig.suptitle(f"{config['threads']} thread(s), {config['dtype']}", fontsize=8)
    return {"cost": fig}


def fig_realsize(config: dict, records: list[dict], summary: dict):
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    e = [r["edits"] for r in records]
    for key, label in (("step_consistency", "per-step (identity: own C)"),
                       ("soft_write_upper_consistency", "soft write upper (identity: own C)"),
                       ("soft_write_lower_consistency", "soft write lower (identity: own C)")):
        axes[0].plot(e, [r[key] for r in records if key in r], ".", ms=3, label=label)
    cps = [r for r in records if "energy_ratio" in r]
    for key in sorted({k for r in cps for k in r if k.endswith("_ratio")}):
        axes[0].plot([r["edits"] for r in cps], [r[key] for r in cps], "o", ms=5, label=key.replace("_ratio", ""))
    axes[0].axhline(1.0, color="k", ls="--", lw=1)
    axes[0].set_xlabel("edits")
    axes[0].set_ylabel("measured / bound")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=6)
    axes[0].set_title(f"d_k={config['d_k']}, d_v={config['d_v']}, {config['dtype']}")
    errors = [r["rec_vs_batch_rel"] for r in cps]
    axes[1].loglog([r["edits"] for r in cps], errors, "o-")
    if errors and min(errors) > 0:  # two decades around the data: a 10% change should look like one
        mid = (min(errors) * max(errors)) ** 0.5
        axes[1].set_ylim(min(mid / 10, min(errors) / 2), max(mid * 10, max(errors) * 2))
    axes[1].set_xlabel("edits")
    axes[1].set_ylabel("||W_rec - W_batch||_F / ||W_batch - W0||_F")
    axes[1].set_title("recursion vs float64 closed form")
    return {"realsize": fig}


def fig_minilm(config: dict, records: list[dict], summary: dict):
    if summary.get("skipped"):
        return {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for r in records:
        if r["part"] == "spectrum":
            ev = [max(x, 1e-12) for x in r["eigenvalues"][: r["n_keys"]]]  # rank <= number of keys
            axes[0].semilogy(range(1, len(ev) + 1), ev, label=f"{r['keys'].replace('_', ' ')} (n={r['n_keys']})")
    axes[0].set_xlabel("index")
    axes[0].set_ylabel("eigenvalue of E[k k^T] (clipped at 1e-12)")
    axes[0].set_title(f"key spectrum, layer {config['layer']}")
    axes[0].legend()
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["part"] == "bounds" and r.get("margin", r["ratio"]) > 0:
            groups[r["bound"]].append(r.get("margin", r["ratio"]))
    names = sorted(groups)
    axes[1].boxplot([groups[n] for n in names], orientation="horizontal", whis=(0, 100))
    axes[1].set_yticks(range(1, len(names) + 1), [n.replace("_", " ") for n in names], fontsize=6)
    axes[1].axvline(1.0, color="k", ls="--", lw=1)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("measured / bound, after rounding allowances")
    axes[1].set_title("bounds on real keys (float64 RLSEditor)")
    for ed in ("rlsedit", "memit"):
        rs = [r for r in records if r["part"] == "retention" and r["editor"] == ed]
        axes[2].plot([r["edits"] for r in rs], [r["cohort_residual"] for r in rs], color=EDITOR_COLOURS[ed],
                     label=EDITOR_LABELS[ed])
    axes[2].set_xlabel("edits written")
    axes[2].set_ylabel("first cohort's relative residual")
    axes[2].set_title("retention on real keys")
    axes[2].legend()
    return {"minilm": fig}


def fig_grid(config: dict, records: list[dict], summary: dict):
    finals: dict[str, dict] = {}
    for r in records:
        if "t" in r and (r["cell"] not in finals or r["t"] > finals[r["cell"]]["t"]):
            finals[r["cell"]] = r
    fig, ax = plt.subplots()
    markers = dict(zip(config["generators"], "osD^v<>p", strict=False))
    for cid, r in finals.items():
        params = dict(kv.split("=", 1) for kv in cid.split(","))
        ed = params["editor"]
        ax.scatter(max(r["heldout_drift"], 1e-12), r["all_residual"], color=EDITOR_COLOURS.get(ed),
                   marker=markers.get(params["generator"], "o"), s=18, alpha=0.8)
    for ed in config["editors"]:
        ax.scatter([], [], color=EDITOR_COLOURS.get(ed), label=EDITOR_LABELS.get(ed, ed))
    for g, m in markers.items():
        ax.scatter([], [], color="grey", marker=m, label=g)
    ax.set_xscale("log")
    ax.set_xlabel("held-out drift at the last checkpoint (relative, clipped at 1e-12)")
    ax.set_ylabel("all edits' residual / at W0")
    ax.set_title(f"grid: {len(finals)} cells (editor = colour, generator = marker)")
    ax.legend(fontsize=7, ncol=2)
    return {"grid": fig}


FIGURES: dict[str, Callable] = {
    "bounds": fig_bounds, "convergence": fig_convergence, "tradeoff": fig_tradeoff, "retention": fig_retention,
    "cost": fig_cost, "realsize": fig_realsize, "minilm": fig_minilm, "grid": fig_grid,
}


def results_folders(root: Path) -> list[Path]:
    """``root`` itself if it holds a config.json, else its immediate sub-folders that do."""
    root = Path(root)
    if (root / "config.json").exists():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "config.json").exists()) if root.is_dir() else []


def draw(results: Path, out: Path, formats: tuple[str, ...] = ("pdf", "png")) -> list[Path]:
    """Draw every figure of every results folder under ``results`` into ``out``; return the files written."""
    folders = results_folders(results)
    if not folders:
        raise NotAResultsFolder(f"{results} holds no results folder (a folder with config.json)")
    written = []
    with plt.rc_context(STYLE):
        for folder in folders:
            config, records, summary = load(folder)
            name = config.get("experiment")
            if name not in FIGURES:
                raise NotAResultsFolder(f"{folder}/config.json names no known experiment ({name!r})")
            if not records:
                raise NotAResultsFolder(f"{folder} has no finished records in metrics.jsonl")
            for stem, fig in FIGURES[name](config, records, summary).items():
                written += _save(fig, Path(out), stem if len(folders) == 1 else f"{folder.name}_{stem}", formats)
    return written
