"""Markdown tables of drift_float32.py's results (reads JSON only, computes nothing new).

    python simulations/drift_table.py docs/reliability_data/drift_1024.json [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(path: Path) -> str:
    result = json.loads(path.read_text())
    cfg = result["config"]
    lines = [f"d_k = {cfg['d_k']}, d_v = {cfg['d_v']}, {cfg['edits']} edits, keys' covariance condition "
             f"10^{cfg['key_decades']:g} ({path.name})", "",
             "| updates | dtype | re-factorise every | s / edit row | rel. error of W - W0 (first -> last checkpoint) "
             "| rel. error of C (last) | max symmetry error | C positive definite | cond(C) (last, estimate) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        curve = run["curve"]
        kind = "rank-1" if run["u"] == 1 else f"batches of {run['u']}"
        every = "off" if run["refactor_every"] is None else f"{run['refactor_every'] * run['u']} rows"
        lines.append(
            f"| {kind} | {run['dtype'].removeprefix('torch.')} | {every} | {run['seconds_per_edit_row']:.2e} "
            f"| {curve[0]['W_rel_err_of_change']:.1e} -> {curve[-1]['W_rel_err_of_change']:.1e} "
            f"| {curve[-1]['C_rel_err']:.1e} | {max(p['symmetry_error'] for p in curve):.1e} "
            f"| {all(p['positive_definite'] for p in curve)} | {curve[-1]['condition_number']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="markdown tables of drift_float32.py's JSON results")
    p.add_argument("results", nargs="+", type=Path, help="JSON files written by drift_float32.py")
    args = p.parse_args(argv)
    for path in args.results:
        if not path.is_file():
            p.error(f"{path}: no such file")
    print("\n\n".join(table(path) for path in args.results))


if __name__ == "__main__":
    main()
