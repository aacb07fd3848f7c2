"""``rlsedit llm-stats``: compute (or import) E[k k^T] of a local model's edited layers into a cache.

Computes the statistics of ``--layers`` over local text files (one text per non-empty line) and
stores them in ``--cache-dir`` (see :mod:`llm_experiments.edit.statistics`), or imports a MEMIT/AlphaEdit
``.npz`` for one layer with ``--import-npz``. Prints one line per layer. The cache is keyed by
content (the weights' fingerprint, layer, corpus, token count, ...): one directory can hold the
statistics of several checkpoints, corpora and token counts, and a checkpoint finds its own again
wherever it was saved. A cache file that cannot be used ends the command with one line naming the
file and the option that fixes it (``--overwrite``, or another ``--cache-dir``).
"""

from __future__ import annotations

import argparse
import time

NAME = "llm-stats"
GROUP = "LLM editing"
HELP = "compute or import E[kk^T] of a local model's edited layers"


def _layers(text: str) -> list[int]:
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers must be comma-separated ints, got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("--layers must name at least one layer")
    return layers


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local Hugging Face checkpoint directory (with config.json)")
    p.add_argument("--layers", required=True, type=_layers, help="edited layers, comma-separated (e.g. 4,5,6,7,8)")
    p.add_argument("--cache-dir", required=True, help="directory of the statistics cache (one file per layer)")
    p.add_argument("--corpus", nargs="*", default=[], help="local text files, one text per non-empty line")
    p.add_argument("--corpus-id", default="", help="a name for the corpus, recorded in the cache key")
    p.add_argument("--max-tokens", type=int, default=100_000, help="tokens to accumulate (all positions)")
    p.add_argument("--seq-len", type=int, default=None,
                   help="truncate each text to this many tokens (None: min(1024, the model's context))")
    p.add_argument("--batch-size", type=int, default=8, help="texts per forward pass")
    p.add_argument("--device", default="cpu", help="device for the model (e.g. cpu, cuda, cuda:1)")
    p.add_argument("--dtype", default=None, help="model dtype: float32, bfloat16, float16, auto (None: float32)")
    p.add_argument("--stats-dtype", choices=["float64", "float32"], default="float64",
                   help="dtype the sums are accumulated in")
    p.add_argument("--import-npz", default=None,
                   help="instead of computing, import this MEMIT/AlphaEdit .npz (mom2.mom2, mom2.count) for the "
                        "single layer in --layers; you vouch that it was computed on this model")
    p.add_argument("--overwrite", action="store_true", help="recompute (or re-import) even if a cache file exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from llm_experiments.edit.statistics import (
        StatsCacheMismatchError,
        StatsFormatError,
        TextCorpus,
        get_second_moments,
        import_memit_npz,
    )
    from llm_experiments.model.loading import load_model

    if args.max_tokens < 1 or args.batch_size < 1:
        raise SystemExit("rlsedit llm-stats: --max-tokens and --batch-size must be >= 1")
    if args.import_npz is None and not args.corpus:
        raise SystemExit("rlsedit llm-stats: give --corpus files to compute from, or --import-npz")
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    start = time.perf_counter()
    if args.import_npz is not None and len(args.layers) != 1:
        raise SystemExit("rlsedit llm-stats: --import-npz takes exactly one layer in --layers")
    corpus = None
    if args.import_npz is None:
        try:
            corpus = TextCorpus(files=args.corpus, corpus_id=args.corpus_id)
        except FileNotFoundError as exc:
            raise SystemExit(f"rlsedit llm-stats: --corpus: {exc}") from exc
    try:
        if corpus is None:
            moments = {args.layers[0]: import_memit_npz(args.import_npz, args.cache_dir, model, args.layers[0],
                                                        corpus_id=args.corpus_id, overwrite=args.overwrite)}
        else:
            moments = get_second_moments(model, tokenizer, args.layers, corpus, args.cache_dir,
                                         max_tokens=args.max_tokens, seq_len=args.seq_len,
                                         batch_size=args.batch_size, dtype=getattr(torch, args.stats_dtype),
                                         progress=not args.no_progress, overwrite=args.overwrite)
    except FileExistsError as exc:
        if exc.errno is not None:  # the file system's, not the import's refusal
            raise SystemExit(f"rlsedit llm-stats: the cache cannot be written ({exc}); give another --cache-dir") \
                from exc
        raise SystemExit(f"rlsedit llm-stats: {exc.args[0].split(';')[0]}; --overwrite imports it again") from exc
    except StatsFormatError as exc:
        if corpus is None:  # the .npz itself
            raise SystemExit(f"rlsedit llm-stats: --import-npz: {exc}") from exc
        raise SystemExit(f"rlsedit llm-stats: {exc}; --overwrite recomputes it (or give another --cache-dir)") \
            from exc
    except StatsCacheMismatchError as exc:
        raise SystemExit(f"rlsedit llm-stats: {exc}; --overwrite recomputes it (or give another --cache-dir)") \
            from exc
    except OSError as exc:
        raise SystemExit(f"rlsedit llm-stats: the cache cannot be written or read ({exc}); "
                         "give another --cache-dir") from exc
    elapsed = time.perf_counter() - start
    print(f"{'layer':>5} {'tokens':>9} {'trace E[kk^T]':>14} {'source':>20}")
    for layer, m in sorted(moments.items()):
        print(f"{layer:>5} {m.count:>9} {float(m.moment().trace()):>14.6g} {m.source:>20}")
    print(f"{len(moments)} layer(s) in {elapsed:.2f} s; cache: {args.cache_dir}")
    return 0
