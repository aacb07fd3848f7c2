"""Durable editor state: safetensors checkpoints, written atomically and verified when read.

A checkpoint is one safetensors file. Its tensors are the editor's state tensors (``W0``, ``W`` and
the editor's buffers, e.g. RLSEditor's ``C``), stored bit for bit; an editor built with
``keep_W0=False`` has no ``W0`` tensor and stores W0's fingerprint in ``state`` instead. Its
metadata (strings) holds

    format            "rlsedit-checkpoint", format_version "2" (files of version "1" are read too)
    rlsedit_version   the package version that wrote it; torch_version likewise
    editor            the editor's name ("rlsedit", "memit", ...)
    state             JSON of the state's scalars: hyperparameters, n_rows, n_batches, and with
                      keep_W0=False "W0_fingerprint" (sha256 of W0's dtype, shape and bytes)
    dtype, shape      the editor's dtype and (d_k, d_v)
    tensors           JSON {name: [dtype, shape]} of every tensor
    strides           JSON {name: stride}: the memory layout, restored on load (a transposed C
                      and a contiguous one hold the same values but round differently in matmul,
                      and a resumed stream must continue bit for bit)
    checksum          sha256 over every tensor's name, dtype, shape and bytes, and over the
                      other metadata entries (so a flipped byte anywhere is caught)
    extra             JSON chosen by the caller (a stream runner stores its position here)

Writing goes through :func:`atomic_write`: a temporary file in the same directory, flushed and
fsynced, then renamed over the target, then the directory fsynced. A reader sees the old file or the
new one, never a mixture, whenever the writer is killed. Reading checks the header, the file size
against the tensors it declares, the checksum, and what the caller expects (editor, shape, dtype,
W0, or W0's fingerprint); anything that does not match raises :class:`~rlsedit.errors.CheckpointError`
saying what.

The format version stayed "1" with ``keep_W0=False``: a checkpoint with W0 is byte for byte what it
was before the option existed, and a reader that predates it refuses one without W0 (its state
"misses ['W0']") rather than misreading it.

Version "2" holds a state of format version 2: for RLSEditor, the ledger of applied batches
(:mod:`rlsedit.ledger`; the int64 tensors ``ledger_ids`` and ``ledger_rows``, the uint8
``ledger_digests``, with ``keep_batches`` the kept batches ``kept_K`` and ``kept_V``, and three
scalars in ``state``). The version was raised because a version-1 reader would load such a file
and drop the ledger without a word; it refuses a version-"2" file instead. A version-"1" file is
still read: its RLSEditor has no ledger and counts the batches it holds as unrecorded
(:meth:`rlsedit.RLSEditor.from_state_dict` says what retraction does with them). The file's
version and its state's ``format_version`` must agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ._validate import as_tensor, resolve_dtype
from .base import Editor, weight_fingerprint
from .errors import CheckpointError, MissingCheckpointError, RLSEditError

FORMAT = "rlsedit-checkpoint"
FORMAT_VERSION = "2"
# The file versions this rlsedit reads, and the state format version each one holds.
READABLE_FORMAT_VERSIONS = {"1": 1, "2": 2}
_REQUIRED = ("format", "format_version", "rlsedit_version", "editor", "state", "dtype", "shape",
             "tensors", "strides", "checksum", "extra")
_CHUNK = 1 << 24  # 16 MiB per write call


# -- atomic files --------------------------------------------------------------------------------
def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - filesystems without directory fsync
        pass
    finally:
        os.close(fd)


def temporary_prefix(path: Path | str) -> str:
    """Name prefix of :func:`atomic_write`'s temporary files for ``path`` (they end in ``.tmp``)."""
    return f".{Path(path).name}."


def stale_temporaries(path: Path | str) -> list[Path]:
    """Temporary files a killed :func:`atomic_write` of ``path`` left behind (safe to delete)."""
    path = Path(path)
    prefix = temporary_prefix(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp"))


def atomic_write(path: Path | str, data: bytes | Callable[[BinaryIO], None], *,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never half-written.

    ``data`` is the file's bytes, or a function that writes them to the binary file it is given.
    The bytes go to a temporary file in the same directory (same filesystem, so the rename is
    atomic), which is flushed and fsynced, renamed over ``path`` with :func:`os.replace`, and the
    directory is fsynced so that the rename survives a power cut. If anything fails (or the process
    is interrupted by an exception) the temporary file is removed and ``path`` is untouched; a
    SIGKILL can leave the temporary file behind (see :func:`stale_temporaries`), never a partial
    ``path``. ``on_progress(written, total)`` is called after every chunk of ``bytes`` data.
    The new file gets mode 0o644.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise MissingCheckpointError(f"cannot write {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                view = memoryview(data)
                total = len(view)
                for start in range(0, total, _CHUNK):
                    f.write(view[start:start + _CHUNK])
                    if on_progress is not None:
                        on_progress(min(start + _CHUNK, total), total)
                if total == 0 and on_progress is not None:
                    on_progress(0, 0)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


# -- checksums -----------------------------------------------------------------------------------
def tensor_checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in name order, then over the
    metadata entries other than ``checksum`` (sorted JSON): ``"sha256:<hex>"``."""
    h = hashlib.sha256()
    if metadata is not None:
        h.update(json.dumps({k: v for k, v in metadata.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


# -- writing -------------------------------------------------------------------------------------
def _split_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, list[int]], dict[str, Any]]:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    strides = {k: list(v.stride()) for k, v in state.items() if isinstance(v, torch.Tensor)}
    scalars = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    return tensors, strides, scalars


def _dense_strides(shape: list[int], stride: Any) -> bool:
    """Whether ``stride`` lays out ``shape`` densely (some permutation of a contiguous layout)."""
    if not (isinstance(stride, list) and len(stride) == len(shape) and all(isinstance(s, int) for s in stride)):
        return False
    expected = 1
    for size, st in sorted(zip(shape, stride, strict=True), key=lambda p: p[1]):
        if size > 1 and st != expected:
            return False
        expected *= size
    return True


def _with_strides(t: torch.Tensor, stride: list[int]) -> torch.Tensor:
    out = torch.empty_strided(tuple(t.shape), tuple(stride), dtype=t.dtype, device=t.device)
    return out.copy_(t)


def checkpoint_bytes(editor: Editor, *, extra: dict[str, Any] | None = None) -> bytes:
    """The safetensors file of ``editor`` (with metadata and checksum) as bytes."""
    from safetensors.torch import save

    from . import __version__

    if not isinstance(editor, Editor):
        raise TypeError(f"expected an rlsedit Editor, got {type(editor).__name__}")
    tensors, strides, scalars = _split_state(editor.state_dict())
    try:
        extra_json = json.dumps({} if extra is None else extra, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"extra metadata must be JSON-serialisable and finite: {exc}") from exc
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rlsedit_version": __version__,
        "torch_version": torch.__version__,
        "editor": editor.name,
        "state": json.dumps(scalars, allow_nan=False, sort_keys=True),
        "dtype": str(editor.dtype).removeprefix("torch."),
        "shape": json.dumps([editor.d_k, editor.d_v]),
        "n_rows": str(editor.n_rows),
        "n_batches": str(editor.n_batches),
        "tensors": json.dumps({k: [str(v.dtype).removeprefix("torch."), list(v.shape)]
                               for k, v in sorted(tensors.items())}),
        "strides": json.dumps(strides, sort_keys=True),
        "extra": extra_json,
    }
    metadata["checksum"] = tensor_checksum(tensors, metadata)
    return save(tensors, metadata=metadata)


def save_editor(editor: Editor, path: Path | str, *, extra: dict[str, Any] | None = None,
                on_progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``editor`` to ``path`` atomically (:func:`atomic_write`). ``extra``: JSON metadata."""
    atomic_write(path, checkpoint_bytes(editor, extra=extra), on_progress=on_progress)


# -- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: the rebuilt editor, the caller's ``extra`` and the raw metadata."""

    editor: Editor
    extra: dict[str, Any]
    metadata: dict[str, str]


def read_header(path: Path | str) -> tuple[dict[str, str], dict[str, Any]]:
    """Parse and check a checkpoint's header without loading tensors: (metadata, tensor entries).

    Refuses a missing file, a file that is not safetensors, a header without the rlsedit metadata,
    and a truncated file (shorter than the tensors its header declares).
    """
    path = Path(path)
    if not path.exists():
        raise MissingCheckpointError(f"no checkpoint at {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if n > size - 8 or n > 100_000_000:
            raise CheckpointError(
                f"{path} is truncated or not a safetensors file: header of {n} bytes declared, "
                f"file has {size} bytes"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has a corrupted header (not JSON): {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupted header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rlsedit checkpoint (its metadata has no format={FORMAT!r})")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path} has a corrupted header (metadata values must be strings)")
    missing = [k for k in _REQUIRED if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata misses {missing}")
    if metadata["format_version"] not in READABLE_FORMAT_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {metadata['format_version']!r}; this rlsedit reads "
            f"{' and '.join(repr(v) for v in READABLE_FORMAT_VERSIONS)}"
        )
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path} has a corrupted header entry for tensor {name!r}")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise CheckpointError(
            f"{path} is truncated or has trailing bytes: its header declares {8 + n + end} bytes, "
            f"the file has {size}"
        )
    return metadata, header


def _loads(path: Path, metadata: dict[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata {key!r} is corrupted: {exc}") from exc


def load_checkpoint(path: Path | str, *, editor: str | None = None, shape: tuple[int, int] | None = None,
                    dtype: Any = None, W0: Any = None, device: Any = None) -> Checkpoint:
    """Read, verify and rebuild a checkpoint written by :func:`save_editor`.

    Args:
        editor: the editor name expected ("rlsedit", ...); None accepts any.
        shape: the (d_k, d_v) of the layer being resumed; None accepts any.
        dtype: the expected dtype; None accepts any.
        W0: the pre-trained weight of the layer being resumed; if given, the checkpoint's W0 must
            equal it (cast to the checkpoint's dtype) exactly, or the checkpoint belongs to another
            model or layer. A checkpoint saved with ``keep_W0=False`` is checked by fingerprint.
        device: where to put the editor's tensors (default CPU).

    Raises:
        MissingCheckpointError: no file at ``path``.
        CheckpointError: truncated or corrupted file, checksum mismatch, or a mismatch with what
            the caller expects; the message names it.
    """
    from safetensors.torch import load_file

    from .registry import EDITORS

    path = Path(path)
    metadata, _ = read_header(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path} could not be read as safetensors: {exc}") from exc
    checksum = tensor_checksum(tensors, metadata)
    if checksum != metadata["checksum"]:
        raise CheckpointError(
            f"{path} is corrupted: checksum of its tensors and metadata is {checksum}, the file says "
            f"{metadata['checksum']}"
        )
    declared = _loads(path, metadata, "tensors")
    actual = {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in tensors.items()}
    if declared != actual:
        raise CheckpointError(f"{path}: the tensors {actual} differ from the metadata's {declared}")
    strides = _loads(path, metadata, "strides")
    if not (isinstance(strides, dict) and strides.keys() == tensors.keys()
            and all(_dense_strides(list(tensors[k].shape), strides[k]) for k in tensors)):
        raise CheckpointError(f"{path}: checkpoint metadata 'strides' is not a dense layout of its tensors")
    tensors = {k: _with_strides(v, strides[k]) for k, v in tensors.items()}
    # The file is intact: now compare it with what the caller expects.
    name = metadata["editor"]
    if editor is not None and name != editor:
        raise CheckpointError(f"{path} holds a {name!r} editor, expected {editor!r}")
    if name not in EDITORS:
        raise CheckpointError(f"{path} names an unknown editor {name!r}; known: {sorted(EDITORS)}")
    saved_shape = tuple(_loads(path, metadata, "shape"))
    if shape is not None and tuple(shape) != saved_shape:
        raise CheckpointError(
            f"{path} is for a layer of shape (d_k, d_v) = {saved_shape}, expected {tuple(shape)}"
        )
    expected_dtype = resolve_dtype(dtype)
    if expected_dtype is not None and metadata["dtype"] != str(expected_dtype).removeprefix("torch."):
        raise CheckpointError(
            f"{path} has dtype {metadata['dtype']}, expected {str(expected_dtype).removeprefix('torch.')}"
        )
    state = _loads(path, metadata, "state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint metadata 'state' is not a JSON object")
    expected_state = READABLE_FORMAT_VERSIONS[metadata["format_version"]]
    if state.get("format_version") != expected_state:
        raise CheckpointError(
            f"{path}: a checkpoint of format version {metadata['format_version']!r} holds a state of "
            f"format version {expected_state}, but its state says {state.get('format_version')!r}"
        )
    state.update(tensors)
    try:
        ed = EDITORS[name].from_state_dict(state)
    except (RLSEditError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} does not describe a valid {name!r} editor: {exc}") from exc
    if W0 is not None:
        W0 = as_tensor(W0, "W0", dtype=ed.dtype)
        if tuple(W0.shape) != (ed.d_k, ed.d_v):
            raise CheckpointError(f"{path} is for W0 of shape {(ed.d_k, ed.d_v)}, expected {tuple(W0.shape)}")
        if ed.keep_W0:
            if not torch.equal(W0.cpu(), ed.W0.cpu()):
                gap = float((W0.cpu().double() - ed.W0.cpu().double()).abs().max())
                raise CheckpointError(
                    f"{path} was made from another W0 (max |difference| = {gap:.3e}): it belongs to "
                    "another model or layer"
                )
        else:
            given = weight_fingerprint(W0)
            if given != ed.W0_fingerprint:
                raise CheckpointError(
                    f"{path} was made from another W0 (saved with keep_W0=False, its W0 fingerprint "
                    f"{ed.W0_fingerprint} is not the given W0's {given}): it belongs to another model "
                    "or layer"
                )
    if device is not None:
        ed = EDITORS[name].from_state_dict({k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                            for k, v in ed.state_dict().items()})
    extra = _loads(path, metadata, "extra")
    return Checkpoint(ed, extra if isinstance(extra, dict) else {}, metadata)


def load_editor(path: Path | str, **expect: Any) -> Editor:
    """:func:`load_checkpoint`'s editor (same arguments)."""
    return load_checkpoint(path, **expect).editor
