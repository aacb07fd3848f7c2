"""``rlsedit compare``: the editors side by side over several held-out seeds, with 95% intervals.

For a regime of :mod:`llm_experiments.tuning` (``demo``, ``matched``, ``crowded``), every editor
runs the regime's stream with the settings the tuning protocol chose (:data:`llm_experiments.tuning.TUNED`)
on each reported seed: one ``rlsedit edit`` command per run, into ``OUT/seed-<s>/<editor>/`` (a
finished run is reused, so an interrupted comparison resumes). Then the runs are aggregated
(:func:`llm_experiments.table.aggregate`): the paper's table with the mean over seeds and the 95%
interval, early-edit retention and general capability, and the rankings the intervals support.
``OUT/table.md`` holds the report, ``OUT/aggregate.json`` the runs' compact summaries.

``--zsre``: the same edits as questions, scored by ZsRE's metric suite
(:func:`llm_experiments.tuning.write_zsre`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llm_experiments.experiment import DEFAULT_CACHE_DIR
from rlsedit_cli.args import thread_count

NAME = "compare"
GROUP = "LLM editing"
HELP = "compare editors over several held-out seeds with the tuned settings (mean and 95% interval)"


def _ints(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, got {text!r}")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    from llm_experiments.tuning import REGIMES, REPORT_EDIT_SEEDS

    p.add_argument("--regime", choices=sorted(REGIMES), default="demo",
                   help="model size and stream: " + "; ".join(f"{r.name}: {r.description}" for r in REGIMES.values()))
    p.add_argument("--editors", default="rlsedit,memit,alphaedit",
                   help="comma-separated editors (rlsedit, memit, alphaedit, rome, ft)")
    p.add_argument("--seeds", type=_ints, default=argparse.SUPPRESS,
                   help="edit seeds (stream order and counterfactual targets) on the reported world; never the "
                        f"tuning split's (default: the regime's; {', '.join(str(s) for s in REPORT_EDIT_SEEDS)} "
                        "for matched and crowded, 0-4 for the demo)")
    p.add_argument("--settings-from", choices=sorted(REGIMES), default=argparse.SUPPRESS, metavar="REGIME",
                   help="use the settings tuned for another regime, its rules applied unchanged to this one's model "
                        "and stream (default: this regime's own)")
    p.add_argument("--zsre", action="store_true",
                   help="the same edits in ZsRE form (questions; ZsRE's token-accuracy metrics)")
    p.add_argument("--generation-every", type=int, default=argparse.SUPPRESS, metavar="K",
                   help="Fluency and Consistency on every K-th edit (0: none; default: the regime's)")
    p.add_argument("--out", required=True, help="comparison folder (finished runs in it are reused)")
    p.add_argument("--cache", default=DEFAULT_CACHE_DIR, help="cache directory for tiny models and statistics")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads")


def verdict(aggs, reference: str = "rlsedit") -> list[str]:
    """Plain sentences on what separates the editors: each key metric's ranking where the editors'
    95% intervals separate, and ``reference``'s paired differences whose interval excludes 0."""
    from llm_experiments.table import key_metrics, paired_difference, ranking

    out = []
    ref = next((a for a in aggs if a.label == reference), None)
    for name, label in key_metrics(aggs):
        r = ranking(aggs, name)
        line = f"{label}: " + ("no ranking (the 95% intervals overlap)" if r == "no separation" else r)
        if ref is not None:
            sure = []
            for other in aggs:
                if other is ref:
                    continue
                mean, half, _ = paired_difference(ref, other, name)
                if half is not None and abs(mean) > half:
                    sure.append(f"{'above' if mean > 0 else 'below'} {other.label} by {abs(mean):.1f} ± {half:.1f}")
            line += f"; paired by seed, {reference} is " + (", ".join(sure) if sure else "not separated from any")
        out.append(line)
    return out


def run(args: argparse.Namespace) -> int:
    from llm_experiments.experiment import EDITOR_NAMES
    from llm_experiments.table import aggregate, aggregate_report, compact, read_run
    from llm_experiments.tuning import (
        REGIMES,
        REPORT_WORLD_SEED,
        TUNING_EDIT_SEEDS,
        TuningError,
        edit_argv,
        model_facts,
        needs_facts,
        settings_for,
        write_zsre,
    )
    from rlsedit_cli._runs import run_once

    start = time.perf_counter()
    regime = REGIMES[args.regime]
    if getattr(args, "seeds", None) is None:
        args.seeds = regime.report_seeds
    editors = [x.strip() for x in args.editors.split(",") if x.strip()]
    if not editors or any(e not in EDITOR_NAMES for e in editors) or len(set(editors)) != len(editors):
        raise SystemExit(f"rlsedit compare: --editors must be distinct names among {', '.join(EDITOR_NAMES)}; "
                         f"got {args.editors!r}")
    leaked = sorted(set(args.seeds) & set(TUNING_EDIT_SEEDS))
    if leaked:
        raise SystemExit(f"rlsedit compare: --seeds {leaked} belong to the tuning split; report other seeds")
    source = getattr(args, "settings_from", None) or regime.name
    try:
        settings = settings_for(source)
    except TuningError as exc:
        raise SystemExit(f"rlsedit compare: {exc}") from exc
    missing = [e for e in editors if e not in settings]
    if missing:
        raise SystemExit(f"rlsedit compare: no tuned settings for {missing} in regime {source}")
    generation = getattr(args, "generation_every", regime.generation_every)
    order = sorted(editors, key=lambda e: needs_facts(e, settings[e]))  # rules read the statistics of earlier runs
    root = Path(args.out)
    dirs = {}
    facts = None
    print(f"rlsedit compare: regime {regime.name}, editors {', '.join(editors)}, edit seeds "
          f"{', '.join(str(s) for s in args.seeds)}; each run's own output goes to {root}/seed-S/EDITOR.log "
          "(the first run trains the tiny model if none is cached)", flush=True)
    for seed in args.seeds:
        data = write_zsre(regime, REPORT_WORLD_SEED, seed, root / f"seed-{seed}" / "zsre.json") if args.zsre else None
        for editor in order:
            out = root / f"seed-{seed}" / editor
            if needs_facts(editor, settings[editor]) and facts is None:
                done = next(iter(sorted(root.glob("seed-*/*/summary.json"))), None)
                if done is None:
                    raise SystemExit(f"rlsedit compare: {editor}'s rule reads E[kk^T]; list another editor first")
                model_dir = Path(json.loads(done.read_text())["config"]["resolved"]["model_path"])
                facts = model_facts(model_dir, Path(args.cache).expanduser() / "stats")
            argv = edit_argv(regime, editor, settings["values"], settings[editor], world_seed=REPORT_WORLD_SEED,
                             edit_seed=seed, out=out, facts=facts, along=True,
                             generation_every=0 if args.zsre else generation, data=data, cache=args.cache,
                             threads=args.threads)
            code = run_once(argv, out, out.parent / f"{editor}.log", f"seed {seed}, {editor}")
            if code != 0:
                return code
            dirs[(seed, editor)] = out
    summaries = [read_run(dirs[(s, e)]) for e in editors for s in args.seeds]
    aggs = aggregate(summaries)
    text = (f"Regime {regime.name}: {regime.description}; world seed {REPORT_WORLD_SEED}, edit seeds "
            f"{', '.join(str(s) for s in args.seeds)}; settings chosen on the tuning split"
            f"{'' if source == regime.name else f' for regime {source} (its rules applied unchanged)'}"
            f"{' (ZsRE form)' if args.zsre else ''}.\n\n" + aggregate_report(aggs))
    lines = verdict(aggs) if len(aggs) > 1 else []
    if lines:
        text += "\n\nIn words:\n\n" + "\n".join(f"- {x}" for x in lines)
        if all("no ranking" in x and "not separated" in x for x in lines):
            text += ("\n\nNo difference between these editors is outside the noise of these seeds. "
                     "`rlsedit compare --regime matched` is the benchmark sized to show one (docs/edit-benchmark.md).")
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(text + "\n")
    (root / "aggregate.json").write_text(json.dumps(
        {"regime": regime.name, "settings_from": source, "zsre": args.zsre, "world_seed": REPORT_WORLD_SEED,
         "edit_seeds": list(args.seeds),
         "runs": [compact(s) for s in summaries]}, indent=1) + "\n")
    print()
    print(text)
    print(f"\n{time.perf_counter() - start:.0f} s in all; table in {root / 'table.md'}")
    return 0
