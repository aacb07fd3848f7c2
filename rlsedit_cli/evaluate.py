"""``rlsedit evaluate``: score a local checkpoint on CounterFact/ZsRE and general capability.

The model is evaluated as it is (no edits): the pre-edit baseline of a run, or an edited checkpoint
saved by another tool. Results go to ``--out`` as protocol ``after_stream`` writes them
(``config.json``, ``records.jsonl``, ``metrics.jsonl``, ``summary.json``); a table in the papers'
scale (100 x) is printed.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

NAME = "evaluate"
GROUP = "LLM editing"
HELP = "score a local checkpoint on CounterFact/ZsRE and general capability"

DTYPES = ("float32", "bfloat16", "float16")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local Hugging Face causal LM checkpoint directory")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the --model directory)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype the model's weights are loaded in")
    p.add_argument("--device", default="cpu",
                   help="device for the model ('cpu', 'cuda', 'cuda:1', ...), or 'auto' to spread it over the "
                        "available devices with device_map='auto' (needs accelerate)")
    p.add_argument("--dataset", choices=["counterfact", "zsre"], default="counterfact",
                   help="format of --data and the metric suite applied to it")
    p.add_argument("--data", default=None,
                   help="counterfact.json / multi_counterfact.json or zsre_mend_eval.json (omit to measure "
                        "capability only)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N records of --data")
    p.add_argument("--zsre-target", choices=["answers", "alt"], default="answers",
                   help="ZsRE field used as the new target (MEMIT and AlphaEdit use answers[0])")
    p.add_argument("--snippets", default=None,
                   help="attribute_snippets.json: reference texts for Consistency (CounterFact)")
    p.add_argument("--idf", default=None, help="idf.npy, the TF-IDF statistics for Consistency")
    p.add_argument("--vocab", default=None, help="tfidf_vocab.json, the TF-IDF vocabulary for Consistency")
    p.add_argument("--generation", action="store_true",
                   help="also Fluency and Consistency (CounterFact; needs --snippets, --idf and --vocab)")
    p.add_argument("--max-length", type=int, default=100,
                   help="generated text length in tokens, prompt included (MEMIT: 100)")
    p.add_argument("--top-k", type=int, default=5, help="top-k sampling for generation (MEMIT: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generation's random stream")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    p.add_argument("--heldout", default=None,
                   help="held-out text for perplexity (.jsonl with a 'text' field, or plain text with "
                        "documents separated by blank lines)")
    p.add_argument("--ppl-window", type=int, default=512, help="perplexity window length in tokens")
    p.add_argument("--glue", action="append", default=[], metavar="TASK=PATH",
                   help="a zero-shot GLUE task and its dev.tsv (sst2, mrpc, cola, rte); repeat for several")
    p.add_argument("--glue-limit", type=int, default=None, help="score only the first N examples of each task")
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fail(message: str):
    return SystemExit(f"rlsedit evaluate: {message}")


def _check(args: argparse.Namespace) -> dict[str, str]:
    for name in ("batch_size", "max_length", "top_k", "ppl_window"):
        if getattr(args, name) < 1:
            raise _fail(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("limit", "glue_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise _fail(f"--{name.replace('_', '-')} must be >= 0")
    if args.generation and (args.dataset != "counterfact" or not (args.snippets and args.idf and args.vocab)):
        raise _fail("--generation needs --dataset counterfact, --snippets, --idf and --vocab")
    glue = {}
    for item in args.glue:
        task, sep, path = item.partition("=")
        if not sep or not path:
            raise _fail(f"--glue takes TASK=PATH, got {item!r}")
        glue[task] = path
    if not (args.data or args.heldout or glue):
        raise _fail("nothing to evaluate: give --data, --heldout or --glue")
    if not Path(args.model).is_dir():
        raise _fail(f"--model {args.model}: not a directory")
    return glue


def _load_model(args: argparse.Namespace):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_arg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    kwargs = {dtype_arg: getattr(torch, args.dtype), "local_files_only": True}
    if args.device == "auto":
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    if args.device != "auto":
        model = model.to(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model, local_files_only=True)
    return model.eval(), tokenizer


def run(args: argparse.Namespace) -> int:
    glue_paths = _check(args)
    from llm_experiments.data.loaders import DataError, load_counterfact, load_tfidf, load_zsre
    from llm_experiments.evaluate.capability import (
        CapabilityDataError,
        glue_zero_shot,
        load_glue,
        load_texts,
        perplexity,
    )
    from llm_experiments.evaluate.metrics import as_percent
    from llm_experiments.evaluate.protocols import EvaluationConfig, EvaluationError, evaluate_after_stream

    try:
        if args.data is None:
            requests = []
        elif args.dataset == "counterfact":
            requests = load_counterfact(args.data, snippets=args.snippets, limit=args.limit)
        else:
            requests = load_zsre(args.data, target=args.zsre_target, limit=args.limit)
        tfidf = load_tfidf(args.idf, args.vocab) if args.generation else None
        capability = {}
        if args.heldout:
            capability["perplexity"] = functools.partial(perplexity, texts=load_texts(args.heldout),
                                                         max_length=args.ppl_window, batch_size=args.batch_size)
        for task, path in glue_paths.items():
            capability[task] = functools.partial(glue_zero_shot, task=task, batch_size=args.batch_size,
                                                 examples=load_glue(task, path, limit=args.glue_limit))
        config = EvaluationConfig(dataset=args.dataset, batch_size=args.batch_size, generation=args.generation,
                                  max_length=args.max_length, top_k=args.top_k, seed=args.seed)
    except (DataError, CapabilityDataError, EvaluationError) as exc:
        raise _fail(str(exc)) from exc
    model, tokenizer = _load_model(args)
    run_config = {key: value for key, value in vars(args).items() if not key.startswith("_")}
    try:
        summary = evaluate_after_stream(model, tokenizer, requests, config, args.out, tfidf=tfidf,
                                        capability=capability, run_config=run_config,
                                        progress=not args.no_progress)
    except EvaluationError as exc:
        raise _fail(str(exc)) from exc
    print(f"rlsedit evaluate: {len(requests)} requests, {args.dataset}, results in {args.out}")
    for metric, (mean, sem) in as_percent(summary["edited"]).items():
        print(f"  {metric:<26} {mean:9.2f}" + ("" if sem is None else f" +- {sem:.2f}") + "   (x100)")
    for name, result in summary["capability"].items():
        print(f"  {name:<26} " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
    print(f"  {summary['seconds']:.1f} s")
    return 0
