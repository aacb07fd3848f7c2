"""``rlsedit llm-edit``: edit a local model with a stream of requests from a JSON file, resumably.

The requests file is a JSON list of objects with :class:`EditRequest`'s fields (``case_id``,
``prompt`` with one ``{}``, ``subject``, ``target_new``, optional ``target_true``, prompt lists, ...).
The configuration is ``--config`` (an :class:`EditingConfig` JSON) or ``--preset`` with
``--editor``; ``--layers`` and ``--batch-size`` override either. Statistics, when the editor needs
them, are read from ``--stats-dir`` (written by ``rlsedit llm-stats``; found by the model's weights,
wherever it was saved). Results in ``--out``:
``config.json`` (the resolved configuration), ``metrics.jsonl`` (one line per batch),
``summary.json``, and ``checkpoints/`` (``--resume`` continues from there). No evaluation is run
here; the metrics are the editing step's own (target NLL, residuals, time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

NAME = "llm-edit"
GROUP = "LLM editing"
HELP = "edit a local model with a stream of requests (JSON), resumably"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local Hugging Face checkpoint directory (the unedited model)")
    p.add_argument("--requests", required=True, help="JSON list of requests with EditRequest's fields")
    p.add_argument("--out", required=True, help="directory for config.json, metrics.jsonl, summary.json, checkpoints/")
    p.add_argument("--config", default=None, help="an EditingConfig JSON file (instead of --preset)")
    p.add_argument("--preset", default=None, help="published settings: llama3-8b or qwen2.5-7b (see presets.py)")
    p.add_argument("--editor", default="rlsedit", help="editor for --preset: rlsedit, memit or alphaedit")
    p.add_argument("--layers", default=None, help="override the edited layers, comma-separated")
    p.add_argument("--batch-size", type=int, default=None, help="override the requests per batch")
    p.add_argument("--stats-dir", default=None, help="cache directory of E[kk^T] (from rlsedit llm-stats)")
    p.add_argument("--limit", type=int, default=None, help="edit only the first N requests of the file")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="write a checkpoint every K batches (and after the last)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoints on the unedited model")
    p.add_argument("--device", default="cpu", help="device for the model (e.g. cpu, cuda)")
    p.add_argument("--dtype", default=None, help="model dtype: float32, bfloat16, float16, auto (None: float32)")


def _read_json(path: str, what: str):
    """The JSON in ``path``, or a one-line exit naming the file and what is wrong with it."""
    from llm_experiments.data.loaders import JSONFileError, read_json_file

    try:
        return read_json_file(path)
    except JSONFileError as exc:
        raise SystemExit(f"rlsedit llm-edit: {what} {path}: {exc.why}") from exc


def _requests(path: str, limit: int | None):
    from llm_experiments.data.requests import EditRequest, RequestError

    records = _read_json(path, "--requests")
    if not isinstance(records, list):
        raise SystemExit(f"rlsedit llm-edit: {path} must hold a JSON list of requests")
    fields = {f.name for f in dataclasses.fields(EditRequest)}
    out = []
    for i, rec in enumerate(records[:limit] if limit is not None else records):
        if not isinstance(rec, dict):
            raise SystemExit(f"rlsedit llm-edit: request {i} of {path}: expected a JSON object, "
                             f"got {type(rec).__name__}")
        if set(rec) - fields:
            raise SystemExit(f"rlsedit llm-edit: request {i} of {path} has unknown fields {sorted(set(rec) - fields)}")
        rec = {k: tuple(v) if isinstance(v, list) else v for k, v in rec.items()}
        try:
            out.append(EditRequest(**rec))
        except (RequestError, TypeError) as exc:
            raise SystemExit(f"rlsedit llm-edit: request {i} of {path}: {exc}") from exc
    return out


def _config(args: argparse.Namespace):
    from llm_experiments.edit.presets import preset
    from llm_experiments.edit.session import EditingConfig

    if (args.config is None) == (args.preset is None):
        raise SystemExit("rlsedit llm-edit: give exactly one of --config and --preset")
    changes = {}
    if args.layers is not None:
        try:
            changes["layers"] = tuple(int(x) for x in args.layers.split(",") if x.strip())
        except ValueError:
            raise SystemExit(f"rlsedit llm-edit: --layers takes comma-separated integers, got {args.layers!r}") \
                from None
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    # EditingConfig refuses a bad field with a ValueError naming it (a TypeError for a wrong JSON shape)
    if args.config:
        doc = _read_json(args.config, "--config")
        if not isinstance(doc, dict):
            raise SystemExit(f"rlsedit llm-edit: --config {args.config}: expected a JSON object, "
                             f"got {type(doc).__name__}")
        try:
            config = EditingConfig.from_dict(doc)
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"rlsedit llm-edit: --config {args.config}: {exc}") from exc
    else:
        try:
            config = preset(args.preset, args.editor)
        except ValueError as exc:
            raise SystemExit(f"rlsedit llm-edit: --preset: {exc}") from exc
    try:
        return config.replace(**changes) if changes else config
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"rlsedit llm-edit: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from llm_experiments.edit.session import EditingSession
    from llm_experiments.edit.statistics import (
        StatsCacheMissError,
        StatsFormatError,
        load_second_moments,
    )
    from llm_experiments.model.loading import ModelPathError, load_model

    if args.checkpoint_every < 1:
        raise SystemExit("rlsedit llm-edit: --checkpoint-every must be >= 1")
    if args.limit is not None and args.limit < 0:
        raise SystemExit("rlsedit llm-edit: --limit must be >= 0")
    config = _config(args)
    requests = _requests(args.requests, args.limit)
    out = Path(args.out)
    try:
        model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    except ModelPathError as exc:
        raise SystemExit(f"rlsedit llm-edit: --model: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / "checkpoints"
    if args.resume:
        session = EditingSession.resume(model, tokenizer, checkpoints, config=config)
    else:
        moments = None
        if config.needs_statistics:
            if args.stats_dir is None:
                raise SystemExit(f"rlsedit llm-edit: editor {config.editor!r} needs E[kk^T]: give --stats-dir")
            try:
                moments = load_second_moments(model, config.layers, args.stats_dir)
            except (StatsCacheMissError, StatsFormatError) as exc:
                raise SystemExit(f"rlsedit llm-edit: --stats-dir: {exc} (`rlsedit llm-stats --model "
                                 f"{args.model} --cache-dir DIR ...` writes them; give that DIR)") from exc
        session = EditingSession(model, tokenizer, config, second_moments=moments)
    run_args = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    (out / "config.json").write_text(json.dumps({"editing": config.to_dict(), "command": run_args}, indent=1))
    start = time.perf_counter()
    with open(out / "metrics.jsonl", "a" if args.resume else "w") as fh:
        for report in session.run(requests, checkpoint_dir=checkpoints, checkpoint_every=args.checkpoint_every):
            row = {"batch": report.index, "position": report.position, "case_ids": list(report.case_ids),
                   "seconds": round(report.seconds, 3), "target_nll_before": report.target_nll_before,
                   "target_nll_after_delta": report.target_nll_after,
                   "layers": [dataclasses.asdict(layer) for layer in report.layers]}
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"batch {report.index}: {report.position}/{len(requests)} edits, {report.seconds:.2f} s")
    summary = {"edits": session.position, "batches": session.batches_done,
               "seconds_this_run": round(time.perf_counter() - start, 3), "resumed": bool(args.resume)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0
