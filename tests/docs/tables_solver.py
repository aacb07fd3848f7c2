"""docs/solver.md's measured tables, from docs/solver_data/."""

from __future__ import annotations

from tests.docs.tables import builder, markdown, read_json


@builder("solver_ledger_cost")
def ledger_cost() -> str:
    """The ledger's digest against the Woodbury step at 14336 x 4096, u = 100 (simulations/ledger_cost.py)."""
    rows = [[r["dtype"], f"{r['batch_MB']:.2f} MiB", f"{1e3 * r['digest']['min_s']:.1f} ms",
             f"{r['step']['min_s']:.2f} s", f"{100 * r['digest_over_step']:.2f}%",
             f"{1e3 * r['copy_for_keep_batches']['min_s']:.2f} ms"]
            for r in read_json("solver_data/ledger_cost.jsonl")]
    return markdown(["dtype", "batch K, V", "digest", "Woodbury step (`rls_update`)", "digest / step",
                     "copy kept by `keep_batches`"], rows)
