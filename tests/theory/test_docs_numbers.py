"""The theory numbers README.md and docs/theory.md quote in prose, rebuilt from docs/theory_data and
required verbatim (the tables are rebuilt by tests/docs/tables_theory.py). A hand-edited digit
fails: the mutant test edits one."""

from __future__ import annotations

import json

import pytest

from tests.paths import ROOT

DATA = ROOT / "docs" / "theory_data"


def _e(x: float) -> str:
    """1.7e-5, not Python's 1.7e-05 (the pages' style)."""
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def _load(name: str) -> dict:
    return json.loads((DATA / f"{name}_summary.json").read_text())


def readme_phrases() -> list[str]:
    b, c, r, m = _load("bounds"), _load("convergence"), _load("retention_realisable"), _load("minilm")
    brk = b["retention_break_streams"]
    ratios = [f["ratio_to_constant"]["value"] for f in c["fits"].values()]
    contain = sum(f["slope_interval_contains_theory"] for f in c["fits"].values())
    lam0 = [x for x in m["float32_bound"] if x["lam"] == 0.0][-1]
    return [
        f"{b['n_streams']:,} streams: {b['n_evidence_checks']:,} checks of bounds that some broken editor fails, "
        f"{b['n_above_tolerance']} violations",
        f"{b['n_identity_checks']:,} checks of three identities that read no editor",
        f"{brk['memit']['retention_ratio']:.2f}x / {brk['rome']['retention_ratio']:.2f}x / "
        f"{brk['alphaedit']['retention_ratio']:.2f}x above the RLS retention bound "
        f"(RLSEdit {brk['rlsedit']['retention_ratio']:.2f}x)",
        f"at most {r['rlsedit_max_cohort_residual_over_bound']:.2f} of its bound",
        f"in {b['per_bound_random_streams']['comparator_gap']['checks']:,} comparisons",
        f"is {min(ratios):.2f}-{max(ratios):.2f}, every 95% bootstrap interval contains 1",
        f"contain -1/2 in {contain} of {len(c['fits'])} fits",
        f"{_e(lam0['rel_err'])} relative to the float64 solution after {lam0['edits']} edits, against "
        f"`eps_32 cond(A_t)` = {lam0['eps32_kappa']:.2f}",
    ]


def theory_md_phrases() -> list[str]:
    b, m = _load("bounds"), _load("minilm")
    pb = b["per_bound_random_streams"]
    lam0 = [x for x in m["float32_bound"] if x["lam"] == 0.0]
    return [
        f"**{b['n_evidence_checks']:,} checks of bounds that some broken\neditor fails, "
        f"{b['n_above_tolerance']} violations**, and {b['n_identity_checks']:,} checks of the three consistency",
        f"{b['n_checks_decided_by_allowance']} of the\nchecks",
        f"(0 of {pb['comparator_gap']['checks']:,} comparisons)",
        f"the identity held to\nat most {_e(pb['comparator_gap_identity']['max'])} of its rounding allowance",
        f"**{m['n_checks']} checks of `check_stream` on the float64 RLSEditor",
        "`eps_32 kappa_bound(t)` = " + f"{min(x['eps32_kappa'] for x in lam0):.4f} to "
        f"{max(x['eps32_kappa'] for x in lam0):.4f}",
        f"(ratio at most {_e(m['float32_bound_max_ratio'])})",
    ]


def _missing(text: str, phrases: list[str]) -> list[str]:
    return [p for p in phrases if p not in text]


@pytest.mark.parametrize(("page", "phrases"), [("README.md", readme_phrases), ("docs/theory.md", theory_md_phrases)])
def test_quoted_theory_numbers_match_their_data(page, phrases):
    text = (ROOT / page).read_text()
    assert not _missing(text, phrases()), _missing(text, phrases())


def test_a_hand_edited_theory_number_is_caught():
    text = (ROOT / "README.md").read_text()
    phrase = readme_phrases()[0]
    digit = next(ch for ch in phrase if ch.isdigit() and ch != "0")
    edited = text.replace(phrase, phrase.replace(digit, str((int(digit) + 1) % 10), 1))
    assert _missing(edited, readme_phrases())
