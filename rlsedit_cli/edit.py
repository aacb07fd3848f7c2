"""``rlsedit edit``: edit a tiny fact model (trained or reused) or a local checkpoint, then evaluate.

One editor: the run goes to ``--out DIR`` (``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``after_stream/``, ``along_stream/``, ``summary.json``; :mod:`llm_experiments.experiment`). Several
(``--editor rlsedit,memit``): one run per editor in ``DIR/<editor>/``, then the table of
:mod:`llm_experiments.table` is printed and written to ``DIR/table.md`` (with the figures beside it
for ``--along-stream`` runs).

Settings come from, in this order: the tiny models' defaults (or ``--preset``'s published settings
for the editing, or ``--config FILE``: an :class:`~llm_experiments.experiment.ExperimentConfig` JSON,
e.g. an earlier run's ``config.json``), then every option given on the command line.
``--resume --out DIR`` continues an interrupted run from its last checkpoint, with the config it
was started with.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rlsedit_cli.args import int_list, thread_count

NAME = "edit"
GROUP = "LLM editing"
HELP = "edit a tiny fact model or a checkpoint with a stream of edits (resumable), evaluate"

_RESUME_KEEPS = ("out", "resume", "threads", "no_progress")


def _editors(text: str) -> tuple[str, ...]:
    from llm_experiments.experiment import EDITOR_NAMES

    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in EDITOR_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"editors must be among {', '.join(EDITOR_NAMES)}; got {text!r}")
    return names


def defaults() -> dict:
    """Every option's default: the tiny models' settings (per editor for the editor options)."""
    from llm_experiments.edit.presets import preset
    from llm_experiments.experiment import OPTIONS, ExperimentConfig

    config = ExperimentConfig()
    out = {}
    for name, (section, key) in OPTIONS.items():
        if section == "top":
            out[name] = getattr(config, key)
        elif section == "values":
            out[name] = getattr(config.editing.values, key)
        elif section in ("model", "data", "editing", "evaluation"):
            out[name] = getattr(getattr(config, section), key)
    out["context"] = "bare"
    out["editor"] = "rlsedit"
    for editor, prefix in (("rlsedit", ""), ("alphaedit", ""), ("ft", "ft_")):
        for key, value in preset("tiny", editor).editor_options.items():
            out[prefix + key] = 0.0 if value is None else value
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    from llm_experiments.edit.presets import PRESETS
    from llm_experiments.experiment import CONTEXTS, DATASETS, EDITOR_NAMES

    d = defaults()

    def opt(group, flag: str, help_text: str, **kw) -> None:
        dest = kw.get("dest") or flag.lstrip("-").replace("-", "_")
        shown = d.get(dest)
        suffix = "" if shown is None or kw.get("action") == "store_true" else f" (default: {shown})"
        group.add_argument(flag, default=argparse.SUPPRESS, help=help_text + suffix, **kw)

    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="run folder (new or empty; with --resume, the interrupted run's); "
                   "DIR/<editor>/ for several editors")
    g.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last checkpoint, with its own config.json")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="start from this ExperimentConfig JSON (e.g. an earlier run's config.json); options override")
    g.add_argument("--preset", choices=PRESETS, default=None,
                   help="the editing settings of a preset: 'tiny' (the default) or a published model's "
                        "(llama3-8b, qwen2.5-7b: layers, lam, mu, n_w, values; rlsedit, memit and alphaedit)")
    opt(g, "--save-every", "batches between checkpoints of the editors' states, for --resume (0: none)", type=int)
    g = p.add_argument_group("model and data")
    opt(g, "--model", "tiny-llama or tiny-qwen2 (trained on the fact world, or reused from --cache), "
        "or the path of a local checkpoint directory")
    opt(g, "--data", "'world' (requests drawn from the tiny model's fact world) or a JSON file of requests "
        "(the first --n-edits records)")
    opt(g, "--dataset", "metric suite of a --data file: counterfact or zsre (the file's format is detected: "
        "CounterFact/MultiCounterFact, MEND's ZsRE, EasyEdit/KnowEdit, MQuAKE; docs/evaluation.md), or requests "
        "(a JSON list of EditRequest fields, scored with the CounterFact suite)", choices=DATASETS)
    opt(g, "--snippets", "CounterFact's attribute_snippets.json: the Consistency reference texts of a CounterFact "
        "file (TF-IDF is fitted on the references used, unless --tfidf is given)")
    opt(g, "--tfidf", "a folder with MEMIT's idf.npy and tfidf_vocab.json: Consistency's TF-IDF statistics for "
        "a CounterFact file, as the authors used them (default: fitted on the references used)", metavar="DIR")
    opt(g, "--cache", "cache directory for tiny models and E[kk^T] statistics", dest="cache_dir")
    opt(g, "--quick", "a 16-person world and a 2-layer model that train in seconds: a smoke test of the "
        "machinery, not an edit target", action="store_true")
    opt(g, "--people", "people in the tiny model's fact world, 5 facts each (a 10,000-edit stream needs 2000); "
        "a new size trains a new model", type=int)
    opt(g, "--hidden", "the tiny model's hidden size (a new size trains a new model; heads stay 4)", type=int)
    opt(g, "--d-ff", "the tiny model's MLP width, the dimension of the edit keys (a new size trains a new model)",
        type=int)
    opt(g, "--world-seed", "seed of the fact world (a new seed trains a new model; tuning uses other seeds than "
        "reports)", type=int)
    opt(g, "--train-seed", "seed of the tiny model's initialisation and batch order (a new seed trains a new model)",
        type=int)
    opt(g, "--edit-seed", "seed of the world's request order and counterfactual targets", type=int)
    opt(g, "--device", "torch device of a checkpoint (tiny models run on CPU)")
    opt(g, "--dtype", "a checkpoint's dtype: float32, bfloat16, float16, auto (default: float32)")
    g = p.add_argument_group("stream")
    g.add_argument("--editor", type=_editors, default=None,
                   help=f"editor, or a comma-separated list run one after the other ({', '.join(EDITOR_NAMES)}) "
                        "(default: rlsedit)")
    opt(g, "--n-edits", "number of edit requests in the stream", type=int)
    opt(g, "--batch-size", "edits per batch (the paper: 100)", type=int)
    g = p.add_argument_group("edit site and prior")
    opt(g, "--layers", "edited layers, comma-separated (tiny models keep their facts in layer 0)", type=int_list)
    opt(g, "--fact-token", "key position: the subject's last token or the prompt's last token",
        choices=("subject_last", "last"))
    opt(g, "--lam", "weight of ||W - W0||^2 (rlsedit, memit, rome)", type=float)
    opt(g, "--mu", "weight of the anchor n_w E[kk^T] (rlsedit, memit, rome; the paper: 1)", type=float)
    opt(g, "--n-w", "anchor size: the Gram is n_w * E[kk^T] (the paper: 15000). The default suits streams "
        "of a few hundred edits on the tiny models; docs/edit-benchmark.md gives the rule for longer ones",
        type=float)
    opt(g, "--l2", "AlphaEdit's ridge weight", type=float)
    opt(g, "--threshold", "AlphaEdit's null space: eigenvalues of E[kk^T] below this", type=float)
    opt(g, "--ft-steps", "FT's gradient steps per batch", type=int)
    opt(g, "--ft-lr", "FT's step, relative to 1/||K||_2^2, in (0, 2)", type=float)
    opt(g, "--ft-norm-bound", "FT's entrywise bound on |W - W0| (0: none)", type=float)
    opt(g, "--context", "keys and targets from the bare prompt, or averaged over the package's six English "
        "prefixes (unknown words for a tiny model's word tokenizer)", choices=CONTEXTS)
    opt(g, "--solver-dtype", "the editors' state dtype", choices=("float64", "float32"))
    opt(g, "--stats-corpus", "text file for E[kk^T], one document per line (default: the fact world's training "
        "texts; required for a checkpoint)")
    opt(g, "--stats-tokens", "tokens of the statistics corpus", type=int)
    g = p.add_argument_group("target values (MEMIT's compute_z)")
    opt(g, "--value-steps", "Adam steps", type=int)
    opt(g, "--value-lr", "Adam learning rate", type=float)
    opt(g, "--kl-factor", "weight of the KL term on '{} is a'", type=float)
    opt(g, "--clamp-factor", "||delta|| <= clamp * ||h|| at the fact token", type=float)
    opt(g, "--value-weight-decay", "weight of ||delta|| / ||h||^2", type=float)
    g = p.add_argument_group("evaluation")
    g.add_argument("--no-eval", action="store_true",
                   help="no evaluation after the stream: record the editing steps only (target NLL, residuals, time)")
    g.add_argument("--no-generation", action="store_true",
                   help="skip Fluency and Consistency (text generation, the slow part of the evaluation)")
    opt(g, "--max-length", "generated text length in tokens, prompt included (MEMIT: 100)", type=int)
    opt(g, "--generation-every", "Fluency and Consistency on every K-th edit only (1: all, as the papers; "
        "generation is most of the evaluation time on a long stream)", type=int, metavar="K")
    opt(g, "--along-stream", "also evaluate along the stream: the edits so far and early-edit cohorts at "
        "checkpoints", action="store_true")
    opt(g, "--along-generation", "also Fluency and Consistency at the along-stream checkpoints (slow; off: "
        "probabilities only)", action="store_true")
    opt(g, "--checkpoint-every", "edits between along-stream checkpoints, a multiple of --batch-size (0: only "
        "when a cohort is complete and at the end)", type=int)
    opt(g, "--along-every", "at each along-stream checkpoint, evaluate every K-th of the edits made so far "
        "(1: all; cohorts are always evaluated in full)", type=int, metavar="K")
    opt(g, "--cohorts", "early-edit cohorts as numbers of first batches, comma-separated", type=int_list,
        dest="cohort_batches")
    g = p.add_argument_group("machine")
    opt(g, "--threads", "torch CPU threads", type=thread_count)
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _options(args: argparse.Namespace) -> dict:
    """The options given on the command line, by ExperimentConfig.from_options's names."""
    from llm_experiments.experiment import OPTIONS

    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}
    for flag in ("quick", "along_stream", "along_generation"):  # store_true: given only when set
        if given.get(flag) is False:
            del given[flag]
    if args.no_generation:
        given["generation"] = False
    if args.no_eval:
        given["evaluate"] = False
    given.pop("editor", None)
    return given


def configs_from_args(args: argparse.Namespace) -> list:
    """One validated ExperimentConfig per editor of ``args`` (SystemExit naming a bad option)."""
    from llm_experiments.experiment import EditRunError, ExperimentConfig

    base = None
    if args.config is not None:
        try:
            doc = json.loads(Path(args.config).read_text())
            base = ExperimentConfig.from_dict(doc.get("config", doc) if isinstance(doc, dict) else doc)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SystemExit(f"rlsedit edit: --config {args.config}: cannot be read ({exc})") from exc
        except (EditRunError, ValueError) as exc:
            raise SystemExit(f"rlsedit edit: --config {args.config}: {exc}") from exc
    options = _options(args)
    editors = args.editor or ((base.editing.editor,) if base is not None else ("rlsedit",))
    try:
        return [ExperimentConfig.from_options(base, preset_name=args.preset, editor=e, **options) for e in editors]
    except (EditRunError, ValueError) as exc:
        raise SystemExit(f"rlsedit edit: {exc}") from exc


def config_from_args(args: argparse.Namespace, editor: str):
    """The ExperimentConfig of ``args`` for one ``editor`` (scripts and tests)."""
    from llm_experiments.experiment import ExperimentConfig

    return ExperimentConfig.from_options(preset_name=args.preset, editor=editor, **_options(args))


def _resume_configs(args: argparse.Namespace) -> tuple[list, list[Path]]:
    """The runs to continue in ``--out``: one, or one per editor folder of a several-editor run."""
    from llm_experiments.experiment import EditRunError, read_run_config

    given = [k for k, v in vars(args).items() if not k.startswith("_") and k not in _RESUME_KEEPS
             and v not in (None, False) and k != "command"]
    if given:
        raise SystemExit(f"rlsedit edit: --resume continues the run in --out with its own config.json; "
                         f"drop --{given[0].replace('_', '-')}")
    out = Path(args.out)
    dirs = [out] if (out / "config.json").is_file() else sorted(
        d for d in out.iterdir() if (d / "config.json").is_file()) if out.is_dir() else []
    if not dirs:
        raise SystemExit(f"rlsedit edit: --resume: {out} holds no run (no config.json)")
    try:
        configs = [read_run_config(d) for d in dirs]
    except EditRunError as exc:
        raise SystemExit(f"rlsedit edit: {exc}") from exc
    if getattr(args, "threads", None) is not None:
        configs = [c.replace(threads=args.threads) for c in configs]
    return configs, dirs


def run(args: argparse.Namespace) -> int:
    from llm_experiments.experiment import EditRunError, run_edit
    from llm_experiments.table import draw_figures, read_run, report

    if args.resume:
        configs, dirs = _resume_configs(args)
    else:
        configs = configs_from_args(args)  # all validated before any work
        out = Path(args.out)
        dirs = [out] if len(configs) == 1 else [out / c.editing.editor for c in configs]
    start = time.perf_counter()
    for config, run_dir in zip(configs, dirs, strict=True):
        if args.resume and (run_dir / "summary.json").is_file():
            print(f"{config.editing.editor}: finished already -> {run_dir}")
            continue
        try:
            s = run_edit(config, run_dir, progress=not args.no_progress, resume=args.resume)
        except EditRunError as exc:
            raise SystemExit(f"rlsedit edit: {exc}") from exc
        cells = ", ".join(f"{m} {s[m]:.1f}" for m in ("efficacy", "generalization", "specificity", "fluency",
                                                       "consistency") if m in s)
        print(f"{config.editing.editor}: {s['n_edits']} edits in {s['seconds']['total']:.0f} s: {cells} -> {run_dir}")
    if all(json.loads((d / "summary.json").read_text()).get("after_stream") for d in dirs):  # evaluated runs
        summaries = [read_run(d) for d in dirs]
        table = report(summaries)
        print()
        print(table)
        if len(dirs) > 1:
            root = dirs[0].parent
            (root / "table.md").write_text(table + "\n")
            for path in draw_figures(summaries, root):
                print(f"wrote {path}")
    print(f"{time.perf_counter() - start:.0f} s in all")
    return 0
