"""Resumable edit streams: feed batches to an editor, checkpoint every N batches, resume after a crash.

A stream is anything with ``n_batches``, ``batch(t) -> (K, V)`` for any position t (so a resumed
run needs no replay) and ``describe() -> dict`` (JSON, identifies the stream). :func:`run_stream`
applies batches from the last checkpoint's position on, writing a checkpoint (atomically, with the
position and the stream's description in its metadata) after every ``every`` batches and after
the last. The checkpoint holds the editor's state bit for bit, and a batch depends only on its
position, so a run killed at any point (between batches or inside a checkpoint write) and resumed
ends with the same W, bitwise, as an uninterrupted run on the same dtype, device and thread count.

:class:`GaussianStream` is such a stream of random Gaussian edits, for solver-level runs and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .base import Editor, UpdateRecord
from .checkpoint import load_checkpoint, save_editor, stale_temporaries
from .errors import CheckpointError, MissingCheckpointError, ParameterError


class Stream(Protocol):
    n_batches: int

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GaussianStream:
    """Batches of Gaussian keys (scaled by 1/sqrt(d_k)) and values; batch t is seeded by (seed, t)."""

    d_k: int
    d_v: int
    n_batches: int
    batch_size: int
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d_k", "d_v", "n_batches", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError(f"seed must be a non-negative int, got {self.seed!r}")

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= t < self.n_batches:
            raise IndexError(f"batch {t} is outside the stream's {self.n_batches} batches")
        rng = np.random.default_rng([self.seed, t])
        K = rng.standard_normal((self.batch_size, self.d_k)) / np.sqrt(self.d_k)
        V = rng.standard_normal((self.batch_size, self.d_v))
        return torch.from_numpy(K), torch.from_numpy(V)

    def describe(self) -> dict[str, Any]:
        return {"kind": "synthetic", **asdict(self)}


@dataclass(frozen=True)
class StreamRun:
    """What :func:`run_stream` did: the editor, where it started, and the checkpoints it wrote."""

    editor: Editor
    resumed_from: int  # 0 for a fresh start
    checkpoints_written: int
    stale_temporaries_removed: int


def run_stream(
    new_editor: Callable[[], Editor],
    stream: Stream,
    checkpoint: Path | str,
    *,
    every: int,
    on_batch: Callable[[int, UpdateRecord], None] | None = None,
    on_write_progress: Callable[[int, int], None] | None = None,
    config: dict[str, Any] | None = None,
    on_checkpoint: Callable[[int, Editor], None] | None = None,
) -> StreamRun:
    """Run ``stream`` into an editor, resuming from ``checkpoint`` if it exists.

    Args:
        new_editor: builds the editor for a fresh start (not called when resuming).
        stream: the batches (see the module docstring).
        checkpoint: the checkpoint file; its directory must exist.
        every: write a checkpoint after every ``every`` batches (and after the last one).
        on_batch: called with (position, record) after each applied batch.
        on_write_progress: passed to :func:`rlsedit.checkpoint.atomic_write` (bytes written, total).
        on_checkpoint: called with (position, editor) after each checkpoint is written, e.g. to
            log ``editor.health()`` so that a long run can be monitored.
        config: JSON describing how ``new_editor`` builds the editor (hyperparameters, dtype);
            stored in each checkpoint, and a checkpoint written with another config is refused.

    A checkpoint from another stream (its description differs), with another ``config``, or beyond
    this stream's end is refused with :class:`CheckpointError`; temporary files of writes that were
    killed are removed.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ParameterError(f"every must be a positive int, got {every!r}")
    checkpoint = Path(checkpoint)
    directory = checkpoint.parent if str(checkpoint.parent) else Path(".")
    if not directory.is_dir():  # refuse before any work, not at the first checkpoint
        raise MissingCheckpointError(f"cannot checkpoint to {checkpoint}: directory {directory} does not exist")
    description = stream.describe()
    stale = stale_temporaries(checkpoint)
    for p in stale:
        p.unlink(missing_ok=True)
    try:
        ck = load_checkpoint(checkpoint)
    except MissingCheckpointError:
        editor, start = new_editor(), 0
    else:
        saved = ck.extra.get("stream")
        if saved != description:
            raise CheckpointError(f"{checkpoint} belongs to stream {saved}, not to {description}")
        if ck.extra.get("config") != config:
            raise CheckpointError(
                f"{checkpoint} was written with editor config {ck.extra.get('config')}, not {config}"
            )
        start = ck.extra.get("position")
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= stream.n_batches:
            raise CheckpointError(
                f"{checkpoint} records stream position {start!r}, outside 0..{stream.n_batches}"
            )
        editor = ck.editor
    written = 0
    for t in range(start, stream.n_batches):
        K, V = stream.batch(t)
        record = editor.update(K, V)
        if on_batch is not None:
            on_batch(t, record)
        done = t + 1
        if done % every == 0 or done == stream.n_batches:
            save_editor(editor, checkpoint, extra={"position": done, "stream": description, "config": config},
                        on_progress=on_write_progress)
            written += 1
            if on_checkpoint is not None:
                on_checkpoint(done, editor)
    return StreamRun(editor, start, written, len(stale))
