"""``rlsedit llm-bench``: time the editing machinery on a randomly initialised Llama built from a config.

No checkpoint or data is needed: the model is a ``LlamaForCausalLM`` with random weights (seeded),
the vocabulary a local word-level one, the corpus and the requests synthetic ("the language of
w12 w40 is w7 ."). It measures the cost of each step (statistics, target values, writes) and
the target NLL before and after the stream; the edits of a random model mean nothing about
editing quality. Results go to ``--out``: ``config.json``, ``metrics.jsonl`` (one line per batch),
``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rlsedit.cli import thread_count


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for config.json, metrics.jsonl, summary.json")
    p.add_argument("--editor", default="rlsedit", help="rlsedit, memit, alphaedit, rome or ft")
    p.add_argument("--hidden", type=int, default=128, help="hidden size d_v")
    p.add_argument("--d-ff", type=int, default=1024, help="MLP width d_k")
    p.add_argument("--num-layers", type=int, default=4, help="decoder blocks")
    p.add_argument("--layers", default="1,2", help="edited layers, comma-separated")
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


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .editing import EditingConfig, EditingSession
    from .keys import encode_prompt, encode_target
    from .requests import EditRequest
    from .stats import TextCorpus, compute_second_moments
    from .tokenizer import build_word_tokenizer
    from .values import ValueConfig

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng, words, glue = _world(args.seed)
    tok = build_word_tokenizer(glue + words)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.d_ff, num_hidden_layers=args.num_layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)).eval()
    layers = tuple(int(x) for x in args.layers.split(","))
    opts = {"rlsedit": {"lam": 1e-6, "mu": 1.0}, "memit": {"lam": 1e-6, "mu": 1.0}, "rome": {"lam": 1e-6, "mu": 1.0},
            "alphaedit": {"l2": 1e-6, "threshold": 1e-6}, "ft": {}}
    if args.editor not in opts:
        raise SystemExit(f"rlsedit llm-bench: unknown editor {args.editor!r}")
    config = EditingConfig(editor=args.editor, layers=layers, batch_size=args.batch_size, fact_token="subject_last",
                           values=ValueConfig(steps=args.steps, requests_per_pass=args.requests_per_pass),
                           editor_options=opts[args.editor], n_w=1.0)
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
                logp = model(torch.tensor([list(p.input_ids) + list(t[:-1])])).logits.log_softmax(-1)[0]
                total += -sum(float(logp[len(p.input_ids) - 1 + j, x]) for j, x in enumerate(t)) / len(t)
        return total / len(requests)

    start = time.perf_counter()
    moments = compute_second_moments(model, tok, layers, TextCorpus(texts=texts, corpus_id="bench"),
                                     max_tokens=args.stats_tokens, batch_size=8, progress=False)
    stats_s = time.perf_counter() - start
    nll_before = target_nll()
    start = time.perf_counter()
    session = EditingSession(model, tok, config, second_moments=moments)
    setup_s = time.perf_counter() - start
    with open(out / "metrics.jsonl", "w") as fh:
        for report in session.run(requests):
            row = {"batch": report.index, "position": report.position, "seconds": round(report.seconds, 3),
                   "target_nll_before": report.target_nll_before, "target_nll_after_delta": report.target_nll_after,
                   "layers": [vars(layer) for layer in report.layers]}
            fh.write(json.dumps(row) + "\n")
            print(f"batch {report.index}: {report.position} edits, {report.seconds:.2f} s")
    stream_s = sum(json.loads(line)["seconds"] for line in (out / "metrics.jsonl").read_text().splitlines())
    summary = {"stats_seconds": round(stats_s, 3), "stats_tokens": args.stats_tokens,
               "editor_setup_seconds": round(setup_s, 3), "stream_seconds": round(stream_s, 3),
               "seconds_per_edit": round(stream_s / args.edits, 4),
               "target_nll_before_stream": nll_before, "target_nll_after_stream": target_nll(),
               "torch_threads": args.threads}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0
