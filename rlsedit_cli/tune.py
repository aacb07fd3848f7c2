"""``rlsedit tune``: the tuning protocol of :mod:`llm_experiments.tuning` on its tuning split.

Stage ``values`` runs every target-value candidate with every editor at its reference knobs on
the first batch of each tuning stream; stage ``editors`` runs every editor's grid on the whole
tuning streams with the values stage 1 chose. Each run is an ``rlsedit edit`` command into
``OUT/<stage>/<candidate>/<editor>/seed-<s>``, its output in ``seed-<s>.log`` beside it (a
finished run is reused, so an interrupted tuning resumes and two processes can share the work
with ``--editors``); ``OUT/tuning.json`` records every run's scores, the model facts the rules
used, and the selection.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_experiments.experiment import DEFAULT_CACHE_DIR
from rlsedit_cli.args import thread_count

NAME = "tune"
GROUP = "LLM editing"
HELP = "choose the editors' settings on the tuning split (the protocol of docs/edit-benchmark.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from llm_experiments.tuning import EDITORS, REGIMES

    p.add_argument("--regime", choices=sorted(REGIMES), required=True, help="model size and stream to tune for")
    p.add_argument("--stage", choices=("values", "editors", "all", "select"), default="all",
                   help="values: stage 1 (shared target values); editors: stage 2 (each editor's grid, with "
                        "stage 1's choice); all: both; select: only read the finished runs and write tuning.json")
    p.add_argument("--editors", default=",".join(EDITORS),
                   help="comma-separated editors to run (the selection needs every editor's runs)")
    p.add_argument("--out", required=True, help="tuning folder (finished runs in it are reused)")
    p.add_argument("--cache", default=DEFAULT_CACHE_DIR, help="cache directory for tiny models and statistics")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads per run")


def _editors(text: str) -> list[str]:
    from llm_experiments.tuning import EDITORS

    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in EDITORS]
    if not names or bad:
        raise SystemExit(f"rlsedit tune: --editors must be among {', '.join(EDITORS)}; got {text!r}")
    return names


def _run(argv: list[str], out: Path) -> dict:
    """One `rlsedit edit` run into ``out`` (its output in ``out``'s name + ``.log`` beside it, a line
    on the terminal), or the summary of the finished run already there."""
    from rlsedit_cli._runs import run_once

    code = run_once(argv, out, out.parent / f"{out.name}.log", str(out))
    if code != 0:
        raise SystemExit(f"rlsedit tune: `rlsedit edit {' '.join(argv)}` failed (status {code})")
    return json.loads((out / "summary.json").read_text())


def _facts(summary: dict, cache: str):
    from llm_experiments.tuning import model_facts

    model_dir = Path(summary["config"]["resolved"]["model_path"])
    return model_facts(model_dir, Path(cache).expanduser() / "stats")


def _row(summary: dict, **fields) -> dict:
    from llm_experiments.table import run_values

    v = run_values(summary)
    return {**fields, "score": v["score"], "efficacy": v["efficacy"], "generalization": v["generalization"],
            "specificity": v["specificity"], "type_accuracy": v.get("type_accuracy"),
            "seconds": summary["seconds"]["total"]}


def run(args: argparse.Namespace) -> int:
    from llm_experiments.tuning import (
        EDITOR_GRIDS,
        EDITORS,
        REFERENCE,
        REGIMES,
        TUNING_EDIT_SEEDS,
        TUNING_WORLD_SEED,
        VALUE_CANDIDATES,
        TuningError,
        check_split,
        current_rows,
        describe,
        edit_argv,
        needs_facts,
        select_knobs,
        select_values,
    )

    check_split()
    regime = REGIMES[args.regime]
    editors = _editors(args.editors)
    # editors whose rules read the model's statistics run after one that computes them
    editors.sort(key=lambda e: e in ("alphaedit", "ft"))
    root = Path(args.out)
    record_file = root / "tuning.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    record["regime"] = describe(regime)
    record.setdefault("values", {"rows": []})
    record.setdefault("editors", {})
    facts = None
    for editor, part in record["editors"].items():  # runs of a replaced grid: kept aside, not chosen from
        current, old = current_rows(editor, part["rows"])
        for r in old:
            src = root / "editors" / f"point-{r['point']}" / editor / f"seed-{r['edit_seed']}"
            dst = root / "superseded" / f"point-{r['point']}" / editor / f"seed-{r['edit_seed']}"
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
        part["rows"] = current
        part["superseded"] = part.get("superseded", []) + old

    def run_one(stage, candidate, values, editor, knobs, seed, n_edits=None):
        nonlocal facts
        out = root / stage / candidate / editor / f"seed-{seed}"
        if needs_facts(editor, knobs) and facts is None:
            first = next((p for p in sorted(root.glob("*/*/*/seed-*/summary.json"))), None)
            if first is None:  # nothing has computed the statistics yet: let a memit write do it
                probe = edit_argv(regime, "memit", values, REFERENCE["memit"], world_seed=TUNING_WORLD_SEED,
                                  edit_seed=seed, out=root / "statistics-probe", n_edits=regime.batch_size,
                                  cache=args.cache, threads=args.threads)
                first = root / "statistics-probe" / "summary.json"
                _run(probe, first.parent)
            facts = _facts(json.loads(first.read_text()), args.cache)
            record["model_facts"] = facts.to_dict()
        argv = edit_argv(regime, editor, values, knobs, world_seed=TUNING_WORLD_SEED, edit_seed=seed, out=out,
                         facts=facts, n_edits=n_edits, cache=args.cache, threads=args.threads)
        summary = _run(argv, out)
        return summary

    def save():
        record_file.parent.mkdir(parents=True, exist_ok=True)
        record_file.write_text(json.dumps(record, indent=1) + "\n")

    if args.stage in ("values", "all"):
        rows = {(r["candidate"], r["editor"], r["edit_seed"]): r for r in record["values"]["rows"]}
        for seed in TUNING_EDIT_SEEDS:
            for cand in VALUE_CANDIDATES:
                for editor in editors:
                    s = run_one("values", cand["name"], cand, editor, REFERENCE[editor], seed,
                                n_edits=regime.batch_size)
                    rows[(cand["name"], editor, seed)] = _row(s, candidate=cand["name"], editor=editor,
                                                              edit_seed=seed, knobs=REFERENCE[editor])
                    record["values"]["rows"] = list(rows.values())
                    save()
    if args.stage in ("editors", "all"):
        try:
            absent = sorted(set(EDITORS) - {r["editor"] for r in record["values"]["rows"]})
            if absent:
                raise TuningError(f"no stage-1 runs of {absent} (the values are chosen over every editor)")
            chosen = select_values(record["values"]["rows"])["chosen"]
        except TuningError as exc:
            raise SystemExit(f"rlsedit tune: stage 1 is not finished: {exc}") from exc
        values = next(c for c in VALUE_CANDIDATES if c["name"] == chosen)
        for editor in editors:
            part = record["editors"].setdefault(editor, {"rows": []})
            rows = {(r["point"], r["edit_seed"]): r for r in part["rows"]}
            for seed in TUNING_EDIT_SEEDS:
                for i, knobs in enumerate(EDITOR_GRIDS[editor]):
                    s = run_one("editors", f"point-{i}", values, editor, knobs, seed)
                    rows[(i, seed)] = _row(s, point=i, knobs=knobs, edit_seed=seed, values=chosen)
                    part["rows"] = list(rows.values())
                    save()
            sel = select_knobs(editor, part["rows"])
            if sel["needs_extension"]:  # the grid's best lies on its edge: one point beyond it
                i = len(EDITOR_GRIDS[editor])
                for seed in TUNING_EDIT_SEEDS:
                    s = run_one("editors", f"point-{i}", values, editor, sel["extension"], seed)
                    rows[(i, seed)] = _row(s, point=i, knobs=sel["extension"], edit_seed=seed, values=chosen)
                    part["rows"] = list(rows.values())
                    save()
    # the selection, from whatever is finished
    lines = []
    try:
        sel = select_values(record["values"]["rows"])
        record["values"]["selection"] = sel
        lines.append(f"values: {sel['chosen']} (" + ", ".join(f"{k} {v:.1f}" for k, v in sel["means"].items()) + ")")
    except TuningError as exc:
        lines.append(f"values: not selected ({exc})")
    for editor in EDITORS:
        part = record["editors"].get(editor)
        if not part or not part["rows"]:
            continue
        try:
            sel = select_knobs(editor, part["rows"])
            part["selection"] = sel
            lines.append(f"{editor}: point {sel['chosen']} {sel['knobs']} ("
                         + ", ".join(f"{m:.1f}" for m in sel["means"]) + ")")
        except TuningError as exc:
            lines.append(f"{editor}: not selected ({exc})")
    save()
    print(f"tuning of regime {regime.name} ({regime.description}) in {record_file}:")
    print("\n".join("  " + x for x in lines))
    return 0
