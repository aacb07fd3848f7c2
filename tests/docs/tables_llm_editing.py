"""docs/llm-editing.md's bench table, from the ``summary.json`` of each ``rlsedit bench-llm-edit`` run
(``docs/llm_editing_data/bench_llm_edit/<run>/``, with the run's ``config.json``)."""

from __future__ import annotations

from tests.docs.tables import builder, markdown, read_json

RUNS = [  # (label, run folder)
    ("rlsedit", "rlsedit"),
    ("rlsedit (rerun, `--requests-per-pass 16`, the default)", "rlsedit-rerun"),
    ("rlsedit, `--requests-per-pass 1`", "rpp1"),
    ("memit", "memit"),
    ("alphaedit", "alphaedit"),
    ("rome", "rome"),
    ("ft", "ft"),
]


def summary(run: str) -> dict:
    return read_json(f"llm_editing_data/bench_llm_edit/{run}/summary.json")


@builder("llm_bench_tiny")
def bench_tiny() -> str:
    rows = []
    for label, run in RUNS:
        s = summary(run)
        assert s["stats_tokens"] == 20000 and s["torch_threads"] == 1, run
        rows.append([label, f"{s['stats_seconds']:.1f} s", f"{s['seconds_per_edit']:.2f}",
                     f"{s['target_nll_before_stream']:.4f} -> {s['target_nll_after_stream']:.4f}"])
    return markdown(["editor", "E[kk^T], 20k tokens", "stream, s per edit", "target NLL before -> after the stream"],
                    rows)
