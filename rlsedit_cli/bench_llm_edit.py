"""``rlsedit bench-llm-edit``: time the editing machinery on a randomly initialised model built from a config.

No checkpoint or data is needed: the model has random weights (seeded), the vocabulary is a local
word-level one, the corpus and the requests are synthetic ("the language of w12 w40 is w7 ."). It
measures the cost of each step (statistics, target values, writes), the peak memory, and the
target NLL before and after the stream; the edits of a random model mean nothing about editing
quality. Results go to ``--out``: ``config.json``, ``metrics.jsonl`` (one line per batch),
``summary.json``.

``--arch tiny`` (the default) is a small Llama of ``--hidden`` / ``--d-ff`` / ``--num-layers``.
``--arch llama3-8b`` / ``qwen2.5-7b`` builds the real architecture (:data:`llm_experiments.edit.presets.ARCHITECTURES`:
widths, heads, key/value heads, vocabulary size, rotary base) with the published editing settings
(:func:`llm_experiments.edit.presets.preset`), cut after the last edited layer unless ``--num-layers`` says otherwise:
the edited layers, their keys, statistics and writes are at real size, while every forward pass
runs through ``num_layers`` of the full model's blocks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from llm_experiments.edit.presets import ARCHITECTURES
from rlsedit_cli.args import thread_count

NAME = "bench-llm-edit"
GROUP = "benchmarks"
HELP = "time each stage of LLM editing (statistics, C_0, values, writes) on a random model of a real architecture"

ARCHS = tuple(ARCHITECTURES)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for config.json, metrics.jsonl, summary.json")
    p.add_argument("--editor", default="rlsedit", help="rlsedit, memit, alphaedit, rome or ft")
    p.add_argument("--arch", choices=("tiny", *ARCHS), default="tiny",
                   help="'tiny' (the sizes below) or a real architecture with its published editing settings")
    p.add_argument("--hidden", type=int, default=128, help="hidden size d_v (--arch tiny)")
    p.add_argument("--d-ff", type=int, default=1024, help="MLP width d_k (--arch tiny)")
    p.add_argument("--num-layers", type=int, default=None,
                   help="decoder blocks (default: 4 for tiny; a real architecture is cut after its last edited layer)")
    p.add_argument("--layers", default=None,
                   help="edited layers, comma-separated (default: 1,2 for tiny; the preset's for a real architecture)")
    p.add_argument("--lam", type=float, default=None,
                   help="the ridge weight lam of rlsedit/memit/rome (default: 1e-6 for tiny, the preset's 0 for a "
                        "real architecture, which needs E[kk^T] of full rank: more statistics tokens than d_k)")
    p.add_argument("--solver-dtype", choices=("float64", "float32"), default="float64",
                   help="the editors' state dtype (the presets use float64)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--edits", type=int, default=40, help="requests in the stream")
    p.add_argument("--batch-size", type=int, default=20, help="requests per batch")
    p.add_argument("--stats-tokens", type=int, default=20_000, help="tokens for E[kk^T]")
    p.add_argument("--steps", type=int, default=25, help="Adam steps of the target optimisation")
    p.add_argument("--requests-per-pass", type=int, default=16, help="requests optimised per forward pass")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, corpus and requests")


def _world(seed: int, n_words: int = 200):
    import random

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(n_words)]
    glue = "The language of home city is was born in a the and .".split()
    return rng, words, glue


def _layers(text: str) -> tuple[int, ...]:
    """``--layers 4,5,6`` as a tuple (ValueError names the option)."""
    try:
        layers = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--layers must be comma-separated layer indices, got {text!r}") from None
    if min(layers) < 0:
        raise ValueError(f"--layers must be >= 0, got {text!r}")
    return layers


def _configs(args: argparse.Namespace, vocab: int):
    """The editing config and the model config of ``args`` (ValueError names a bad option)."""
    from transformers import AutoConfig

    from llm_experiments.edit.presets import preset
    from llm_experiments.edit.session import EditingConfig
    from llm_experiments.edit.values import ValueConfig

    layers = _layers(args.layers) if args.layers else None
    if args.arch == "tiny":
        layers = layers or (1, 2)
        lam = 1e-6 if args.lam is None else args.lam
        opts = {"rlsedit": {"lam": lam, "mu": 1.0}, "memit": {"lam": lam, "mu": 1.0},
                "rome": {"lam": lam, "mu": 1.0}, "alphaedit": {"l2": 1e-6, "threshold": 1e-6}, "ft": {}}
        if args.editor not in opts:
            raise ValueError(f"unknown editor {args.editor!r}")
        config = EditingConfig(editor=args.editor, layers=layers, batch_size=args.batch_size,
                               fact_token="subject_last",
                               values=ValueConfig(steps=args.steps, requests_per_pass=args.requests_per_pass),
                               editor_options=opts[args.editor], n_w=1.0, solver_dtype=args.solver_dtype)
        model_config = AutoConfig.for_model(
            "llama", vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.d_ff,
            num_hidden_layers=args.num_layers or 4, num_attention_heads=4, num_key_value_heads=4,
            max_position_embeddings=256)
    else:
        base = preset(args.arch, args.editor)
        layers = layers or base.layers
        values = dataclasses.replace(base.values, steps=args.steps, requests_per_pass=args.requests_per_pass)
        options = dict(base.editor_options)
        if args.lam is not None and "lam" in options:
            options["lam"] = args.lam
        config = base.replace(layers=layers, batch_size=args.batch_size, values=values,
                              solver_dtype=args.solver_dtype, editor_options=options)
        shape = dict(ARCHITECTURES[args.arch])
        shape["num_hidden_layers"] = args.num_layers or max(layers) + 1
        shape["vocab_size"] = max(shape["vocab_size"], vocab)  # the word ids are a subset of the real vocabulary
        model_config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    if max(config.layers) >= model_config.num_hidden_layers:
        raise ValueError(f"--layers {list(config.layers)} needs more than "
                         f"--num-layers {model_config.num_hidden_layers}")
    return config, model_config


def _peak_memory(device: str) -> dict:
    """Peak resident memory of this process (and the CUDA allocator's peak on a GPU), in bytes."""
    import resource

    import torch

    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if str(device).startswith("cuda"):
        out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return out


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from llm_experiments.data.requests import EditRequest
    from llm_experiments.edit.session import EditingSession
    from llm_experiments.edit.statistics import TextCorpus, compute_second_moments
    from llm_experiments.model.tokenizer import build_word_tokenizer
    from llm_experiments.model.tokens import encode_prompt, encode_target

    torch.set_num_threads(args.threads)
    rng, words, glue = _world(args.seed)
    tok = build_word_tokenizer(glue + words)
    try:
        config, model_config = _configs(args, len(tok))
    except ValueError as exc:
        raise SystemExit(f"rlsedit bench-llm-edit: {exc}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_config(model_config).eval().to(args.device)
    build_s = time.perf_counter() - start
    texts = [" ".join(rng.choice(glue + words) for _ in range(30)) for _ in range(args.stats_tokens // 30 + 1)]
    requests = [EditRequest(case_id=i, prompt="The language of {} is",
                            subject=f"{rng.choice(words)} {rng.choice(words)}", target_new=" " + rng.choice(words))
                for i in range(args.edits)]
    bench = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    (out / "config.json").write_text(json.dumps({"bench": bench, "editing": config.to_dict()}, indent=1))

    def target_nll() -> float:
        total = 0.0
        with torch.no_grad():
            for r in requests:
                p, t = encode_prompt(tok, r.prompt, r.subject), encode_target(tok, r.target_new)
                ids = torch.tensor([list(p.input_ids) + list(t[:-1])], device=args.device)
                logp = model(ids).logits.log_softmax(-1)[0]
                total += -sum(float(logp[len(p.input_ids) - 1 + j, x]) for j, x in enumerate(t)) / len(t)
        return total / len(requests)

    start = time.perf_counter()
    moments = compute_second_moments(model, tok, config.layers, TextCorpus(texts=texts, corpus_id="bench"),
                                     max_tokens=args.stats_tokens, batch_size=8, progress=False)
    stats_s = time.perf_counter() - start
    nll_before = target_nll()
    start = time.perf_counter()
    session = EditingSession(model, tok, config, second_moments=moments)
    setup_s = time.perf_counter() - start
    with open(out / "metrics.jsonl", "w") as fh:
        for report in session.run(requests):
            fh.write(json.dumps(report.to_row()) + "\n")
            print(f"batch {report.index}: {report.position} edits, {report.seconds:.2f} s")
    stream_s = sum(json.loads(line)["seconds"] for line in (out / "metrics.jsonl").read_text().splitlines())
    summary = {"arch": args.arch, "num_layers": model_config.num_hidden_layers,
               "d_k": model_config.intermediate_size, "d_v": model_config.hidden_size,
               "parameters": sum(p.numel() for p in model.parameters()), "build_seconds": round(build_s, 3),
               **_peak_memory(args.device),
               "stats_seconds": round(stats_s, 3), "stats_tokens": args.stats_tokens,
               "editor_setup_seconds": round(setup_s, 3), "stream_seconds": round(stream_s, 3),
               "seconds_per_edit": round(stream_s / args.edits, 4),
               "target_nll_before_stream": nll_before, "target_nll_after_stream": target_nll(),
               "torch_threads": args.threads}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0
