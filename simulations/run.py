"""Running an experiment by name: config -> sweep -> summary.json."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import build_config, config_dict
from .experiments import EXPERIMENTS
from .sweep import run_sweep


def experiment_module(name: str) -> ModuleType:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])


def run_experiment(name: str, out: str | Path, *, quick: bool = False, config: Any = None, file: str | None = None,
                   sets: list[str] | None = None, fresh: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run experiment ``name`` into ``out`` (resuming a partly finished run); return its summary."""
    mod = experiment_module(name)
    if config is None:
        config = build_config(mod.Config, quick=quick, file=file, sets=sets)
    out = Path(out)
    start = time.perf_counter()
    records = run_sweep(out, config_dict(name, config), mod.cells(config),
                        lambda cell: mod.run_cell(config, cell), fresh=fresh, progress=progress, desc=name)
    summary = {"experiment": name, **mod.summarize(config, records),
               "wall_seconds_this_run": round(time.perf_counter() - start, 3)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
