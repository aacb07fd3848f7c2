"""The sweep runner: run an experiment's cells in order, append their metrics, resume where it stopped.

Layout of an output folder:

    config.json     the resolved configuration (experiment name + every field)
    metrics.jsonl   one JSON object per line; each carries ``"cell"`` (the cell's id); a line
                    ``{"cell": ID, "event": "cell_done"}`` follows the last record of a finished cell
    summary.json    written by the experiment once every cell is done

Resuming: when ``config.json`` exists and equals the new configuration, cells with a
``cell_done`` line are skipped; the records of a cell that did not finish (and a truncated last
line) are dropped before the sweep continues. A different configuration is refused
(:class:`SweepConfigError`) unless ``fresh=True``, which starts over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

DONE = "cell_done"


class SweepConfigError(ValueError):
    """The output folder holds a sweep with another configuration."""


def cell_id(cell: dict[str, Any]) -> str:
    """A stable id from the cell's parameters: ``k1=v1,k2=v2`` in the cell's own order."""
    return ",".join(f"{k}={v}" for k, v in cell.items())


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``metrics.jsonl`` (a truncated last line is skipped)."""
    records = []
    if not path.exists():
        return records
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted write
    return records


def finished_records(records: Sequence[dict[str, Any]]) -> tuple[set[str], list[dict[str, Any]]]:
    """The ids of finished cells and the records that belong to them (done markers excluded)."""
    done = {r["cell"] for r in records if r.get("event") == DONE}
    return done, [r for r in records if r.get("cell") in done and r.get("event") != DONE]


def run_sweep(out: Path, config: dict[str, Any], cells: Sequence[dict[str, Any]],
              run_cell: Callable[[dict[str, Any]], list[dict[str, Any]]], *, fresh: bool = False,
              progress: bool = True, desc: str = "sweep") -> list[dict[str, Any]]:
    """Run ``run_cell`` on every cell not yet finished in ``out``; return all finished records."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path, metrics_path = out / "config.json", out / "metrics.jsonl"
    config = _canonical(config)
    if fresh:
        for p in (metrics_path, out / "summary.json"):
            p.unlink(missing_ok=True)
    elif cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != config:
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise SweepConfigError(
                f"{out} holds a sweep with another configuration (differs in {changed}); "
                "use another output folder, or start over with --fresh"
            )
    cfg_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    done, kept = finished_records(read_metrics(metrics_path))
    # rewrite the file with finished cells only (drops half-written cells)
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in kept:
        by_cell.setdefault(r["cell"], []).append(r)
    with metrics_path.open("w") as fh:
        for cid, rs in by_cell.items():
            fh.write("".join(json.dumps(r) + "\n" for r in rs))
            fh.write(json.dumps({"cell": cid, "event": DONE}) + "\n")
    for cid in done - set(by_cell):  # finished cells that produced no records
        with metrics_path.open("a") as fh:
            fh.write(json.dumps({"cell": cid, "event": DONE}) + "\n")
    ids = [cell_id(c) for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError("two cells of the sweep have the same parameters")
    todo = [(cid, c) for cid, c in zip(ids, cells, strict=True) if cid not in done]
    records = list(kept)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=desc, disable=not progress,
               unit="cell", leave=False)
    with metrics_path.open("a") as fh:
        for cid, cell in todo:
            new = [{"cell": cid, **r} for r in run_cell(cell)]
            fh.write("".join(json.dumps(r) + "\n" for r in new))
            fh.write(json.dumps({"cell": cid, "event": DONE}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            records.extend(new)
            bar.update(1)
    bar.close()
    return records
