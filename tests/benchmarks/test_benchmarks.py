"""The benchmark suite: its editors and baselines compute the right thing, and a tiny run writes
valid results. Timings are not checked here (they are the suite's output, not a test)."""

from __future__ import annotations

import json

import pytest
import torch

import rlsedit
from benchmarks.cases import ResolveEachBatch, alphaedit_editor, batch, memit_editor, rls_editor, update_flops
from benchmarks.suite import BenchConfig, run, write_results


def _stream(d_k=12, d_v=3, u=4, n=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(d_k, d_v, generator=g, dtype=dtype)
    return W0, [batch(d_k, d_v, u, dtype, g) for _ in range(n)]


def test_editors_built_from_state_equal_the_constructed_ones():
    W0, batches = _stream()
    pairs = [(rls_editor(W0), rlsedit.RLSEditor(W0, lam=1.0)),
             (memit_editor(W0), rlsedit.MEMITEditor(W0, lam=1.0)),
             (alphaedit_editor(W0), rlsedit.AlphaEditEditor(W0, anchor_gram=torch.zeros(12, 12, dtype=W0.dtype)))]
    for fast, built in pairs:
        for K, V in batches:
            fast.update(K, V)
            built.update(K, V)
        torch.testing.assert_close(fast.W, built.W, rtol=1e-12, atol=1e-12)
    for make, cls, kwargs in ((rls_editor, rlsedit.RLSEditor, {"lam": 1.0}),
                              (memit_editor, rlsedit.MEMITEditor, {"lam": 1.0})):
        fast, built = make(W0, keep_W0=False), cls(W0, keep_W0=False, **kwargs)
        assert not fast.keep_W0 and fast.state_dict().keys() == built.state_dict().keys()
        assert fast.W0_fingerprint == built.W0_fingerprint


def test_the_per_batch_resolve_solves_the_same_objective():
    W0, batches = _stream()
    resolve, rls = ResolveEachBatch(W0, lam=1.0), rls_editor(W0)
    for i, (K, V) in enumerate(batches, start=1):
        resolve.update(K, V)
        rls.update(K, V)
        W_ref = rlsedit.batch_solve(W0, [k for k, _ in batches[:i]], [v for _, v in batches[:i]], lam=1.0)
        torch.testing.assert_close(resolve.W, W_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(rls.W, W_ref, rtol=1e-10, atol=1e-10)


def test_flop_count_has_the_papers_leading_terms():
    d_k, d_v, u = 1000, 300, 10
    total = sum(update_flops(d_k, d_v, u).values())
    leading = 4 * d_k * d_k * u + 4 * d_k * d_v * u
    assert leading <= total <= leading * 1.01


def test_a_tiny_run_writes_valid_results(tmp_path):
    cfg = BenchConfig(sizes=((48, 8),), us=(1, 3), dtypes=("float64",), repeats=2, peak_n=32,
                      history_size=(16, 4), history_batches=260, history_window=40,
                      resolve_sizes=((24, 4),), memory_sizes=((24, 4),), memory_batches=2,
                      precision_size=(16, 4), precision_u=2, precision_batches=3)
    results = run(cfg, log=lambda _: None)
    paths = write_results(results, tmp_path)
    assert {p.name for p in paths} == {"results.json", "report.md", "figure.png"}
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert [(c["d_k"], c["u"], c["dtype"]) for c in loaded["update"]] == [(48, 1, "float64"), (48, 3, "float64")]
    for case in loaded["update"]:
        assert case["seconds_median"] > 0 and case["gflops"] > 0 and case["fraction_of_gemm"] > 0
        assert case["flops_total"] == sum(update_flops(48, 8, case["u"]).values())
    assert loaded["history"]["batches"] == 260 and loaded["history"]["ratio"] > 0
    assert len(loaded["history"]["pair_ratios"]) == 40
    assert {c["u"] for c in loaded["resolve"]} == {1, 3}
    assert [c["keep_W0"] for c in loaded["memory"]] == [False, True]
    assert [c["floor_bytes"] for c in loaded["memory"]] == [(24 * 24 + 24 * 4) * 8] * 2
    assert [c["editor_bytes"] for c in loaded["memory"]] == [(24 * 24 + 24 * 4) * 8, (24 * 24 + 2 * 24 * 4) * 8]
    assert len(loaded["memory"][0]["rss_after_batch_bytes"]) == 2
    assert all(c["construction_peak_rss_bytes"] >= c["baseline_rss_bytes"] for c in loaded["memory"])
    assert all(c["construction_over_floor"] >= 0 for c in loaded["memory"])
    assert "construction / floor" in (tmp_path / "report.md").read_text()
    assert [e["lam"] for e in loaded["precision"]["errors"]] == [1.0, 1e-2, 1e-3]
    assert loaded["precision"]["speedup"] == []  # one dtype only: nothing to compare
    assert "## 3. Flat in history" in (tmp_path / "report.md").read_text()


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="unknown dtypes"):
        BenchConfig(sizes=((8, 2),), dtypes=("float16",))
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        BenchConfig(sizes=((8, 2),), repeats=0)


@pytest.mark.slow
def test_quick_command_runs(tmp_path):
    from rlsedit_cli import main

    assert main(["bench-solver", "--quick", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["update"]


def test_float32_is_close_to_float64_on_the_precision_stream():
    from benchmarks.precision import float32_error

    e = float32_error(64, 8, 4, 10, lam=1.0, decades=1.0, seed=0)
    assert 0 < e["W_rel_error"] < 1e-4 and 0 < e["C_rel_error"] < 1e-4


@pytest.mark.parametrize("d, u, block", [(37, 1, 8), (64, 5, 16), (50, 3, 64)])
def test_one_triangle_kernels_equal_the_dense_products(d, u, block):
    from benchmarks.kernels import lower_panel_downdate_, lower_panel_symm, panel_downdate_

    g = torch.Generator().manual_seed(d)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    C = A @ A.T
    G = torch.randn(d, u, generator=g, dtype=torch.float64)
    Kt = torch.randn(d, u, generator=g, dtype=torch.float64)
    stale = C + torch.triu(torch.full_like(C, 1e3), diagonal=1)  # the upper triangle holds garbage
    torch.testing.assert_close(lower_panel_symm(stale, Kt, block), C @ Kt)
    lower = stale.clone()
    lower_panel_downdate_(lower, G, block)
    torch.testing.assert_close(lower.tril(), (C - G @ G.T).tril())
    full = C.clone()
    panel_downdate_(full, G, block)
    torch.testing.assert_close(full, C - G @ G.T)
