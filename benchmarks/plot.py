"""The run's figure, drawn from its results dict alone: ``python -m benchmarks.plot DIR``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def plot(r: dict, out: Path) -> Path:
    """Left: time per batch along the long stream (flat). Right: speed-up over the re-solve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    h = r["history"]
    xs = [i * h["block"] for i in range(len(h["block_seconds"]))]
    a.plot(xs, [s * 1e3 for s in h["block_seconds"]], lw=1)
    a.set_ylim(bottom=0)
    a.set_xlabel("batch index")
    a.set_ylabel(f"ms per batch (median of {h['block']})")
    a.set_title(f"RLSEdit step along the stream, {h['d_k']} x {h['d_v']}, u = {h['u']}")
    for size in sorted({(c["d_k"], c["d_v"]) for c in r["resolve"]}):
        cases = [c for c in r["resolve"] if (c["d_k"], c["d_v"]) == size]
        b.plot([c["u"] for c in cases], [c["speedup_vs_resolve"] for c in cases], "o-",
               label=f"{size[0]} x {size[1]}")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("edits per batch u")
    b.set_ylabel("re-solve time / RLSEdit time")
    b.set_title("speed-up over solving from scratch per batch")
    b.legend()
    fig.tight_layout()
    path = out / "figure.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print(plot(json.loads((folder / "results.json").read_text()), folder))
