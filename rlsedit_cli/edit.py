"""``rlsedit edit``: edit a tiny fact model (trained or reused) or a local checkpoint, then evaluate.

One editor: the run goes to ``--out DIR`` (``config.json``, ``metrics.jsonl``, ``after_stream/``,
``along_stream/``, ``summary.json``; :mod:`llm_experiments.experiment`). Several (``--editor rlsedit,memit``): one
run per editor in ``DIR/<editor>/``, then the table of :mod:`llm_experiments.table` is printed and written to
``DIR/table.md`` (with the figures beside it for ``--along-stream`` runs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llm_experiments.experiment import DEFAULT_CACHE_DIR, EDITOR_NAMES, EditRunConfig, EditRunError, run_edit
from rlsedit_cli.args import thread_count

NAME = "edit"
GROUP = "LLM editing"
HELP = "edit a tiny fact model or a checkpoint with a stream of edits, evaluate"

_D = EditRunConfig()


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _editors(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in EDITOR_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"editors must be among {', '.join(EDITOR_NAMES)}; got {text!r}")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=_D.model,
                   help="tiny-llama or tiny-qwen2 (trained on the fact world, or reused from --cache), "
                        "or the path of a local checkpoint directory")
    g.add_argument("--data", default=_D.data,
                   help="'world' (requests drawn from the tiny model's fact world) or a CounterFact / ZsRE "
                        "JSON file (the first N records)")
    g.add_argument("--dataset", choices=("counterfact", "zsre"), default=_D.dataset,
                   help="format and metric suite of a --data file")
    g.add_argument("--snippets", default=None,
                   help="CounterFact's attribute_snippets.json: the Consistency reference texts of a CounterFact "
                        "file (TF-IDF is fitted on the references used, unless --tfidf is given)")
    g.add_argument("--tfidf", default=None, metavar="DIR",
                   help="a folder with MEMIT's idf.npy and tfidf_vocab.json: Consistency's TF-IDF statistics for "
                        "a CounterFact file, as the authors used them (default: fitted on the references used)")
    g.add_argument("--cache", default=DEFAULT_CACHE_DIR,
                   help="cache directory for tiny models and E[kk^T] statistics")
    g.add_argument("--quick", action="store_true",
                   help="a 16-person world and a 2-layer model that train in seconds: a smoke test of the "
                        "machinery, not an edit target")
    g.add_argument("--people", type=int, default=_D.people,
                   help="people in the tiny model's fact world, 5 facts each (a 10,000-edit stream needs 2000); "
                        "a new size trains a new model")
    g.add_argument("--hidden", type=int, default=_D.hidden,
                   help="the tiny model's hidden size (a new size trains a new model; heads stay 4)")
    g.add_argument("--d-ff", type=int, default=_D.d_ff,
                   help="the tiny model's MLP width, the dimension of the edit keys (a new size trains a new model)")
    g.add_argument("--world-seed", type=int, default=_D.world_seed,
                   help="seed of the fact world (a new seed trains a new model; tuning uses other seeds than reports)")
    g.add_argument("--train-seed", type=int, default=_D.train_seed,
                   help="seed of the tiny model's initialisation and batch order (a new seed trains a new model)")
    g.add_argument("--edit-seed", type=int, default=_D.edit_seed,
                   help="seed of the world's request order and counterfactual targets")
    g = p.add_argument_group("stream")
    g.add_argument("--editor", type=_editors, default=(_D.editor,),
                   help=f"editor, or a comma-separated list run one after the other ({', '.join(EDITOR_NAMES)})")
    g.add_argument("--n-edits", type=int, default=_D.n_edits, help="number of edit requests in the stream")
    g.add_argument("--batch-size", type=int, default=_D.batch_size, help="edits per batch (the paper: 100)")
    g.add_argument("--out", required=True, help="run folder (new or empty); DIR/<editor>/ for several editors")
    g = p.add_argument_group("edit site and prior")
    g.add_argument("--layers", type=_ints, default=_D.layers,
                   help="edited layers, comma-separated (tiny models keep their facts in layer 0)")
    g.add_argument("--fact-token", choices=("subject_last", "last"), default=_D.fact_token,
                   help="key position: the subject's last token or the prompt's last token")
    g.add_argument("--lam", type=float, default=_D.lam, help="weight of ||W - W0||^2 (rlsedit, memit, rome)")
    g.add_argument("--mu", type=float, default=_D.mu,
                   help="weight of the anchor n_w E[kk^T] (rlsedit, memit, rome; the paper: 1)")
    g.add_argument("--n-w", type=float, default=_D.n_w,
                   help="anchor size: the Gram is n_w * E[kk^T] (the paper: 15000). The default suits streams "
                        "of a few hundred edits on the tiny models; for thousands, raise it (300 over 10,000 edits "
                        "on the d_ff 2048 model: docs/edit-benchmark.md)")
    g.add_argument("--l2", type=float, default=_D.l2, help="AlphaEdit's ridge weight")
    g.add_argument("--threshold", type=float, default=_D.threshold,
                   help="AlphaEdit's null space: eigenvalues of E[kk^T] below this")
    g.add_argument("--ft-steps", type=int, default=_D.ft_steps, help="FT's gradient steps per batch")
    g.add_argument("--ft-lr", type=float, default=_D.ft_lr, help="FT's step, relative to 1/||K||_2^2, in (0, 2)")
    g.add_argument("--ft-norm-bound", type=float, default=_D.ft_norm_bound,
                   help="FT's entrywise bound on |W - W0| (0: none)")
    g.add_argument("--context", choices=("bare", "default"), default=_D.context,
                   help="keys and targets from the bare prompt, or averaged over the package's six English "
                        "prefixes (unknown words for a tiny model's word tokenizer)")
    g.add_argument("--stats-corpus", default=None,
                   help="text file for E[kk^T], one document per line (default: the fact world's training "
                        "texts; required for a checkpoint)")
    g.add_argument("--stats-tokens", type=int, default=_D.stats_tokens, help="tokens of the statistics corpus")
    g = p.add_argument_group("target values (MEMIT's compute_z)")
    g.add_argument("--value-steps", type=int, default=_D.value_steps, help="Adam steps")
    g.add_argument("--value-lr", type=float, default=_D.value_lr, help="Adam learning rate")
    g.add_argument("--kl-factor", type=float, default=_D.kl_factor, help="weight of the KL term on '{} is a'")
    g.add_argument("--clamp-factor", type=float, default=_D.clamp_factor,
                   help="||delta|| <= clamp * ||h|| at the fact token")
    g.add_argument("--value-weight-decay", type=float, default=_D.value_weight_decay,
                   help="weight of ||delta|| / ||h||^2")
    g = p.add_argument_group("evaluation")
    g.add_argument("--no-generation", action="store_true",
                   help="skip Fluency and Consistency (text generation, the slow part of the evaluation)")
    g.add_argument("--max-length", type=int, default=_D.max_length,
                   help="generated text length in tokens, prompt included (MEMIT: 100)")
    g.add_argument("--generation-every", type=int, default=_D.generation_every, metavar="K",
                   help="Fluency and Consistency on every K-th edit only (1: all, as the papers; generation "
                        "is most of the evaluation time on a long stream)")
    g.add_argument("--along-stream", action="store_true",
                   help="also evaluate along the stream: the edits so far and early-edit cohorts at checkpoints")
    g.add_argument("--along-generation", action="store_true",
                   help="also Fluency and Consistency at the along-stream checkpoints (slow; off: probabilities only)")
    g.add_argument("--checkpoint-every", type=int, default=_D.checkpoint_every,
                   help="edits between along-stream checkpoints, a multiple of --batch-size (0: only when a "
                        "cohort is complete and at the end)")
    g.add_argument("--along-every", type=int, default=_D.along_every, metavar="K",
                   help="at each along-stream checkpoint, evaluate every K-th of the edits made so far "
                        "(1: all; cohorts are always evaluated in full)")
    g.add_argument("--cohorts", type=_ints, default=_D.cohort_batches,
                   help="early-edit cohorts as numbers of first batches, comma-separated")
    g = p.add_argument_group("machine")
    g.add_argument("--threads", type=thread_count, default=_D.threads, help="torch CPU threads")
    g.add_argument("--device", default=_D.device, help="torch device of a checkpoint (tiny models run on CPU)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, editor: str) -> EditRunConfig:
    return EditRunConfig(
        model=args.model, data=args.data, dataset=args.dataset, editor=editor, n_edits=args.n_edits,
        batch_size=args.batch_size, layers=args.layers, fact_token=args.fact_token, lam=args.lam, mu=args.mu,
        n_w=args.n_w, l2=args.l2, threshold=args.threshold, ft_steps=args.ft_steps, ft_lr=args.ft_lr,
        ft_norm_bound=args.ft_norm_bound, value_steps=args.value_steps, value_lr=args.value_lr,
        kl_factor=args.kl_factor, clamp_factor=args.clamp_factor, value_weight_decay=args.value_weight_decay,
        context=args.context, snippets=args.snippets, tfidf=args.tfidf, stats_corpus=args.stats_corpus,
        stats_tokens=args.stats_tokens,
        generation=not args.no_generation, max_length=args.max_length, along_stream=args.along_stream,
        along_generation=args.along_generation, generation_every=args.generation_every,
        along_every=args.along_every,
        checkpoint_every=args.checkpoint_every, cohort_batches=args.cohorts, edit_seed=args.edit_seed,
        people=args.people, hidden=args.hidden, d_ff=args.d_ff, world_seed=args.world_seed,
        train_seed=args.train_seed,
        quick=args.quick, cache_dir=args.cache, threads=args.threads, device=args.device)


def run(args: argparse.Namespace) -> int:
    from llm_experiments.table import draw_figures, read_run, report

    editors = args.editor
    try:
        configs = [config_from_args(args, e) for e in editors]  # all validated before any work
    except EditRunError as exc:
        raise SystemExit(f"rlsedit edit: {exc}") from exc
    out = Path(args.out)
    dirs = [out] if len(editors) == 1 else [out / e for e in editors]
    start = time.perf_counter()
    for config, run_dir in zip(configs, dirs, strict=True):
        try:
            s = run_edit(config, run_dir, progress=not args.no_progress)
        except EditRunError as exc:
            raise SystemExit(f"rlsedit edit: {exc}") from exc
        cells = ", ".join(f"{m} {s[m]:.1f}" for m in ("efficacy", "generalization", "specificity", "fluency",
                                                       "consistency") if m in s)
        print(f"{config.editor}: {s['n_edits']} edits in {s['seconds']['total']:.0f} s: {cells} -> {run_dir}")
    summaries = [read_run(d) for d in dirs]
    table = report(summaries)
    print()
    print(table)
    if len(editors) > 1:
        (out / "table.md").write_text(table + "\n")
        for path in draw_figures(summaries, out):
            print(f"wrote {path}")
    print(f"{time.perf_counter() - start:.0f} s in all")
    return 0
