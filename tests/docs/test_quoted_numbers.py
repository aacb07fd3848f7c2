"""Numbers that README.md and docs/solver.md quote from docs/performance_data, docs/reliability_data and
docs/theory_data.

They sit inside tables or paragraphs that mix sources (the README's results table has rows from
every page), so they are not wrapped for :mod:`tests.docs.tables`; each quoted phrase is rebuilt
here from the same data and must appear verbatim. A hand-edited digit is caught (the mutant test).
"""

from __future__ import annotations

import pytest

from tests.docs import tables_performance as perf
from tests.docs import tables_reliability as rel
from tests.docs.tables import read_json
from tests.paths import ROOT


def _peak(d_k: int, dtype: str, keep: bool) -> float:
    return next(c["peak_over_floor"] for c in perf.run()["memory"]
                if (c["d_k"], c["dtype"], c["keep_W0"]) == (d_k, dtype, keep))


def readme_phrases() -> list[str]:
    update = {(c["d_k"], c["u"], c["dtype"]): c for c in perf.run()["update"]}
    resolve = {(c["d_k"], c["u"]): c for c in perf.run()["resolve"]}
    L, h = perf.run()["long"], perf.run()["history"]
    real32 = [update[(d, 100, "float32")] for d in perf.REAL]
    one32 = [update[(d, 1, "float32")] for d in perf.REAL]
    drift_off = [r for n in ("drift_1024", "drift_4096_batch", "drift_4096_rank1") for r in rel.runs(n, refactor=False)]
    last = [r["curve"][-1]["W_rel_err_of_change"] for r in drift_off]
    rebuilt = [p["W_rel_err_of_change"] for n in ("drift_1024", "drift_4096_batch", "drift_4096_rank1")
               for r in rel.runs(n, refactor=True) for p in r["curve"]]
    _, rows = rel.long_rows()
    mem = [c for c in perf.run()["memory"] if c["d_k"] in perf.REAL]
    rs = read_json("theory_data/realsize_summary.json")
    return [
        f"{' / '.join(rel.e(rs['rec_vs_batch_rel'][k]) for k in ('100', '1000', '10000'))} relative at 100 / 1,000 / "
        f"10,000 edits against the independent float64 solve; {rs['n_checks']} bound checks at those checkpoints, "
        f"largest ratio {rs['max_ratio']:.3f} (the {rs['n_consistency_identities']} per-batch checks",
        f"u = 100: {update[(14336, 100, 'float32')]['seconds_median']:.2f} s (14336 x 4096) and "
        f"{update[(18944, 100, 'float32')]['seconds_median']:.2f} s (18944 x 3584) per batch in float32, "
        f"{perf.span([c['fraction_of_gemm'] for c in real32])} of the product at the step's shape, "
        f"{perf.span([c['fraction_of_peak'] for c in real32])} of the square-product peak; u = 1: "
        f"{perf.span([c['ratio_to_min_traffic_C'] for c in one32])}x the least memory traffic over C",
        f"{L['stream_seconds']:.1f} s for the stream plus {L['initial_inverse_seconds']:.1f} s to build C_0 once "
        f"({L['five_layers_seconds']:.0f} s for five layers); batch 10,000 / batch 100 = {h['ratio']:.2f}",
        " / ".join(f"{resolve[(4096, u)]['speedup_vs_resolve']:.0f}x" for u in (1, 10, 100))
        + f" faster at u = 1 / 10 / 100 (4096 x 1024); {resolve[(14336, 100)]['speedup_vs_resolve']:.0f}x at "
        f"14336 x 4096, u = 100 (AlphaEdit's editor: {resolve[(14336, 100)]['speedup_vs_alphaedit']:.0f}x)",
        f"{rel.e(min(last))} (batches of 100) to {rel.e(max(last))} (one edit at a time) relative to the change "
        f"W* - W0; {rel.e(min(rebuilt))} to {rel.e(max(rebuilt))} right after each rebuild",
        f"{rel.e(rows[-1]['W_rel_err_of_change'], 2)} from the float64 solution at the end "
        f"({rel.e(rows[0]['W_rel_err_of_change'])} at 10,000)",
        f"{perf.span([c['peak_over_floor'] for c in mem if not c['keep_W0']])}x of C + W with `keep_W0=False` "
        f"({perf.span([c['peak_over_floor'] for c in mem if c['keep_W0']])}x keeping W0)",
        f"48 bytes per batch), {_peak(14336, 'float32', False):.2f}x of it at peak at 14336 x 4096 float32",
    ]


def solver_phrases() -> list[str]:
    return [f"`keep_W0=False` was {_peak(14336, 'float32', False):.2f}x (float32) and "
            f"{_peak(14336, 'float64', False):.2f}x (float64) of `C + W`, against "
            f"{_peak(14336, 'float32', True):.2f}x and {_peak(14336, 'float64', True):.2f}x with"]


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("page", "phrases"), [("README.md", readme_phrases), ("docs/solver.md", solver_phrases)])
def test_quoted_numbers_match_their_data(page, phrases):
    text = _flat((ROOT / page).read_text())
    missing = [p for p in phrases() if _flat(p) not in text]
    assert not missing, f"{page}: phrases not found as the data gives them: {missing}"


def test_a_hand_edited_quoted_digit_is_caught():
    text = _flat((ROOT / "README.md").read_text())
    phrase = readme_phrases()[-1]
    assert phrase in text
    mutated = text.replace(phrase, phrase.replace("1.12x", "1.08x"))
    assert phrase not in mutated
