"""docs/theory.md's measured tables, from the summaries the theory experiments wrote
(``docs/theory_data/NAME_summary.json``; ``NAME_config.json`` beside each is the config that ran)."""

from __future__ import annotations

from tests.docs.tables import builder, markdown, read_json
from tests.docs.tables_reliability import e as sci

CONTROLS = {"do_nothing": "do nothing (`W_t = W0`)", "flipped_downdate": "flipped downdate",
            "lam_doubled": "lam doubled (not applicable where lam = 0)", "memit": "MEMIT",
            "perturbed_1e-6": "W + 1e-6 relative"}
SHORT = {"do_nothing": "do nothing", "flipped_downdate": "flipped downdate", "lam_doubled": "lam doubled",
         "memit": "MEMIT", "perturbed_1e-6": "W + 1e-6"}
# the discrimination table's rows: first-order checks, retention, per step, energy-type, identities
ORDER = ("optimality", "regret_identity", "retention", "retention_cohort", "comparator", "comparator_quarter",
         "step", "soft_write_upper", "soft_write_lower", "energy", "quarter_energy", "quarter_anchor_residual",
         "limit_error", "regret", "weight_distance", "quarter_weight_distance", "anchor_residual", "spectral",
         "loewner", "c_norm", "regret_logdet_identity")
READS_NO_EDITOR = ("loewner", "c_norm", "regret_logdet_identity")


def _bounds() -> dict:
    return read_json("theory_data/bounds_summary.json")


@builder("theory_negative_controls")
def negative_controls() -> str:
    neg = _bounds()["negative_controls"]
    rows = []
    for name, label in CONTROLS.items():
        v = neg[name]
        flagged = f"{v['streams_flagged']}"
        raised = v["by_bound"].get("error", 0)
        if raised:
            flagged += (f" ({v['streams_flagged'] - raised} by the checks; on {raised} it raised an error, "
                        "counted as flagged)")
        rows.append([label, v["streams"], flagged])
    return markdown(["control", "streams", "flagged"], rows)


@builder("theory_discrimination")
def discrimination() -> str:
    s = _bounds()
    neg, identities = s["negative_controls"], set(s["consistency_identities"])
    rows = []
    for b in ORDER:
        cells = []
        for c in SHORT:
            n = neg[c]["by_bound"].get(b, 0)
            cells.append(f"{n}/{neg[c]['streams']}" if n else "-")
        verdict = "consistency identity" if b in identities else "evidence"
        if b in READS_NO_EDITOR:
            verdict += " (reads no editor)"
        rows.append([f"`{b}`", *cells, verdict])
    return markdown(["bound", *SHORT.values(), "verdict"], rows)


def _interval(d: dict, key: str, theory: float | None = None) -> str:
    lo, hi = d["lo"], d["hi"]
    lo_s, hi_s = f"{lo:.3f}", f"{hi:.3f}"
    if theory is not None and not lo <= theory <= hi:  # the end that misses the theory, in bold
        if hi < theory:
            hi_s = f"**{hi_s}**"
        else:
            lo_s = f"**{lo_s}**"
    return f"{d[key]:.3f} [{lo_s}, {hi_s}]"


@builder("theory_convergence")
def convergence() -> str:
    s, cfg = read_json("theory_data/convergence_summary.json"), read_json("theory_data/convergence_config.json")
    rows = []
    for kind in cfg["kinds"]:
        for mode in ("scaled", "fixed"):
            f = s["fits"].get(f"{kind}/{mode}")
            if f is None:
                continue
            apriori = f.get("apriori_constant_over_c_star")
            rows.append([f"{kind} / {mode}", _interval(f["ratio_to_constant"], "value", 1.0),
                         _interval(f["rms_slope"], "slope", -0.5), f"{f['c_star_plugin_over_closed_form']:.3f}",
                         f"{f['max_err_over_aposteriori_bound']:.2f}", f"{apriori:.0f}" if apriori else "—"])
    t = cfg["n_rows"]
    return markdown(["kind / mode", f"`t E||W_t - W_lim||^2 / c*` at t = {t:,}", "RMS slope",
                     "plug-in / closed-form `c*`", "max error / a-posteriori bound", "a-priori constant / `c*`"], rows)


def _fmt(x: float) -> str:
    """Two decimals from 0.1 up, two significant digits below."""
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.2g}"


@builder("theory_retention_realisable")
def retention_realisable() -> str:
    s = read_json("theory_data/retention_realisable_summary.json")
    cfg = read_json("theory_data/retention_realisable_config.json")
    final, above = s["final_mean_over_seeds"], s["batches_above_rls_cohort_bound"]
    n_points = (cfg["n_batches"] - cfg["cohort_batches"] + 1) * cfg["seeds"]
    order = sorted(cfg["editors"], key=lambda e: final[e]["cohort_residual"])
    names = {"rlsedit": "RLSEdit", "memit": "MEMIT", "alphaedit": "AlphaEdit", "rome": "ROME", "ft": "FT"}
    rows = []
    for e in order:
        res = _fmt(final[e]["cohort_residual"])
        if e == "rlsedit":
            res = (f"**{_fmt(final[e]['cohort_residual'])}** (bound {s['final_mean_cohort_bound']:.3f}; at most "
                   f"{s['rlsedit_max_cohort_residual_over_bound']:.2f} of the bound at any batch)")
        drift = final[e]["heldout_drift"]
        rows.append([names[e], res, above[e], _fmt(drift) if abs(drift) > 1e-12 else f"0 ({abs(drift):.0e})"])
    return markdown(["editor", f"first {s['cohort_edits']} edits' residual / at W0, after {s['n_edits']} edits",
                     f"batches above RLSEdit's bound (of {n_points})", "held-out drift"], rows)


REALSIZE_RUNS = ("realsize", "realsize_4096")



@builder("theory_realsize")
def realsize() -> str:
    """The real-layer-size runs: float32 recursion against the float64 closed form at each
    checkpoint, the checkpoint bound checks (evidence) and the per-batch consistency identities."""
    rows = []
    for name in REALSIZE_RUNS:
        c, s = read_json(f"theory_data/{name}_config.json"), read_json(f"theory_data/{name}_summary.json")
        at = sorted(s["rec_vs_batch_rel"], key=int)
        rows.append([
            f"{c['d_k']} x {c['d_v']}, {c['dtype']}", f"{c['n_edits']:,} in batches of {c['u']}",
            " / ".join(f"{sci(s['rec_vs_batch_rel'][k])} ({int(k):,})" for k in at),
            " / ".join(sci(s["forward_error_over_eps_kappa"][k]) for k in at),
            f"{s['n_checks']}, max ratio {s['max_ratio']:.3f}",
            f"{s['n_consistency_identities']}, max {s['max_consistency']:.3f}",
            f"{s['median_update_seconds']:.2f}", " / ".join(f"{s['batch_solve_seconds'][k]:.0f}" for k in at),
            str(s["torch_threads"]), f"{s['wall_seconds_this_run']:.0f}"])
    return markdown(["layer", "edits", "float32 vs float64 closed form (after edits)", "over eps_32 kappa",
                     "checkpoint bound checks (evidence)", "per-batch consistency identities",
                     "median update, s", "float64 solve, s", "threads", "wall, s"], rows)
