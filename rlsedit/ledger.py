"""The ledger of applied batches: what RLSEditor checks before it retracts or replaces a batch.

Why the math is not enough. ``retract(K, V)`` is the inverse Woodbury step (docs/method.md
section 4); its only built-in check is that I - K C K^T is positive definite. That check refuses
keys that carry more information than the state holds, but a batch of fresh small keys, an applied
batch's keys with other values (the values never enter C), or keys off by 1% all pass it, and the
step then moves W to a point that is the solution of no stream of batches. So the editor keeps a
ledger: for every batch it applies, an entry

    batch_id   an int, unique for the editor's lifetime (never reused, also not after a retraction)
    rows       u, the batch's number of rows
    digest     "sha256:<hex>" of the batch exactly as the editor used it (:func:`batch_digest`)

and ``retract``/``replace`` look the batch up *before any arithmetic*: a batch whose digest is not
in the ledger is refused with :class:`~rlsedit.errors.NotAppliedError` and the state is untouched.
A retraction removes the entry, so a second retraction of the same batch is refused too; a batch
applied twice has two entries and can be retracted twice (a multiset).

Cost. An entry is O(1) memory (two ints and a 32-byte digest; 48 bytes in a state dict or
checkpoint). Hashing reads the batch once, u (d_k + d_v) numbers, beside the step's
O(d_k^2 u) flops: docs/solver.md has the measured times at 14336 x 4096.

Kept batches. With ``keep_batches=True`` the ledger also keeps a copy of each applied batch (K and
V in the editor's dtype, on its device: u (d_k + d_v) numbers per batch, in memory and in
checkpoints), so that a batch can be retracted or replaced by its id alone.

The digest identifies the batch's numbers, not the caller's arrays: it is taken after the cast to
the editor's dtype (a float64 batch given to a float32 editor is hashed as the float32 batch the
recursion used), over row-major bytes (any strides), with the dtype and both shapes in the hash,
and with -0.0 written as +0.0 (equal numbers, equal digests). A key one ulp away, or values off by
one, give another digest.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

import torch

from ._validate import check_finite_tensor
from .base import StateDictError
from .errors import BatchNotKeptError, NotAppliedError

DIGEST_BYTES = 32  # sha256
# The state-dict entries of a ledger (format 2); with keep_batches also KEPT_KEYS.
LEDGER_KEYS = ("keep_batches", "unrecorded_batches", "next_batch_id", "ledger_ids", "ledger_rows",
               "ledger_digests")
KEPT_KEYS = ("kept_K", "kept_V")


def batch_digest(K: torch.Tensor, V: torch.Tensor) -> str:
    """sha256 over [dtype, K's shape, V's shape], K's bytes and V's bytes: ``"sha256:<hex>"``.

    K and V must already be in the editor's dtype (they are hashed as given). Each is copied once
    (``t + 0.0`` turns -0.0 into +0.0) and read row-major from the CPU.
    """
    if K.dtype != V.dtype:
        raise ValueError(f"batch_digest needs K and V in one dtype, got {K.dtype} and {V.dtype}")
    header = json.dumps([str(K.dtype).removeprefix("torch."), list(K.shape), list(V.shape)])
    h = hashlib.sha256(header.encode())
    for t in (K, V):
        canonical = (t.detach() + 0.0).contiguous().cpu()  # -0.0 + 0.0 = +0.0 (IEEE 754)
        if canonical.numel():
            h.update(canonical.reshape(-1).view(torch.uint8).numpy())  # hashes the buffer in place
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    """One applied batch: its id, its number of rows and its :func:`batch_digest`."""

    batch_id: int
    rows: int
    digest: str


@dataclass(frozen=True)
class PendingEntry:
    """What :meth:`Ledger.prepare` computed before the step; :meth:`Ledger.commit` records it."""

    rows: int
    digest: str
    kept: tuple[torch.Tensor, torch.Tensor] | None


class Ledger:
    """The applied batches of one editor, in the order they were applied.

    Attributes:
        keep_batches: whether each batch's K and V are kept (for retraction by id).
        unrecorded_batches: batches the editor holds that have no entry: those applied before it
            had a ledger (an editor restored from a format-1 state). They cannot be verified.
        next_id: the id the next applied batch gets.
    """

    def __init__(self, *, keep_batches: bool = False, unrecorded_batches: int = 0, next_id: int = 0) -> None:
        self.keep_batches = keep_batches
        self.unrecorded_batches = unrecorded_batches
        self.next_id = next_id
        self._entries: dict[int, LedgerEntry] = {}  # batch_id -> entry, in application order
        self._by_digest: dict[str, list[int]] = {}  # digest -> ids holding it, oldest first
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries.values())

    @property
    def rows(self) -> int:
        """Rows of the recorded batches (the editor's n_rows less those of unrecorded batches)."""
        return sum(e.rows for e in self._entries.values())

    def find(self, digest: str) -> LedgerEntry | None:
        """The most recently applied entry with this digest, or None."""
        ids = self._by_digest.get(digest)
        return self._entries[ids[-1]] if ids else None

    def entry(self, batch_id: object) -> LedgerEntry:
        """The entry of ``batch_id``; :class:`NotAppliedError` if no applied batch has that id."""
        if isinstance(batch_id, bool) or not isinstance(batch_id, int):
            raise NotAppliedError(f"a batch id is an int (update() returns it), got {batch_id!r}")
        entry = self._entries.get(batch_id)
        if entry is None:
            issued = f"the ids issued so far are 0 to {self.next_id - 1}" if self.next_id else "no id was issued yet"
            raise NotAppliedError(
                f"no applied batch has id {batch_id}: it was never issued or was already retracted "
                f"({issued}; {len(self)} batch(es) are in the ledger)"
            )
        return entry

    def kept_batch(self, batch_id: object) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, V) of an applied batch, as the editor used them (the ledger's own tensors)."""
        entry = self.entry(batch_id)
        if not self.keep_batches:
            raise BatchNotKeptError(
                f"batch {entry.batch_id} is in the ledger, but this editor does not keep its batches "
                "(only their digests): retract it with its keys and values, retract(K, V), or build "
                "the editor with keep_batches=True"
            )
        return self._kept[entry.batch_id]

    def not_found(self, digest: str, K_name: str, V_name: str, dtype: torch.dtype, *, rows: int,
                  n_rows: int) -> str:
        """The message of the NotAppliedError for a batch whose digest is not in the ledger."""
        too_many = f" (it has {rows} rows; only {n_rows} edit rows were applied)" if rows > n_rows else ""
        msg = (
            f"this batch cannot have been applied: no batch in the ledger has its digest "
            f"({digest[:19]}...){too_many}. The ledger holds {len(self)} applied batch(es); a batch is "
            f"retracted only with exactly the {K_name} and {V_name} that update() was given (after the "
            f"cast to {str(dtype).removeprefix('torch.')}), bit for bit, and only as many times as it "
            "was applied"
        )
        if self.unrecorded_batches:
            msg += (
                f". This editor also holds {self.unrecorded_batches} batch(es) applied before it had a "
                "ledger (it was restored from a format-1 state or checkpoint), which cannot be verified: "
                "allow_unrecorded=True retracts one of them on the math check alone "
                "(I - K C K^T positive definite), which does not detect other values or near-miss keys"
            )
        return msg

    # -- writing ----------------------------------------------------------------------------------
    def prepare(self, K: torch.Tensor, V: torch.Tensor) -> PendingEntry:
        """Hash (and, with keep_batches, copy) a validated batch; changes nothing.

        Runs before the step, so that nothing that allocates can fail after the state changed.
        """
        kept = (K.clone(), V.clone()) if self.keep_batches else None
        return PendingEntry(K.shape[0], batch_digest(K, V), kept)

    def commit(self, pending: PendingEntry) -> int:
        """Record a batch the editor has applied; returns its new id. Cannot fail."""
        batch_id = self.next_id
        self.next_id += 1
        self._insert(LedgerEntry(batch_id, pending.rows, pending.digest), pending.kept)
        return batch_id

    def _insert(self, entry: LedgerEntry, kept: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self._entries[entry.batch_id] = entry
        self._by_digest.setdefault(entry.digest, []).append(entry.batch_id)
        if kept is not None:
            self._kept[entry.batch_id] = kept

    def remove(self, batch_id: int) -> None:
        """Drop the entry of a retracted batch (and its kept copy)."""
        entry = self._entries.pop(batch_id)
        ids = self._by_digest[entry.digest]
        ids.remove(batch_id)
        if not ids:
            del self._by_digest[entry.digest]
        self._kept.pop(batch_id, None)

    def clone(self) -> Ledger:
        """A copy whose changes do not reach this ledger (kept tensors are shared: never written)."""
        other = Ledger(keep_batches=self.keep_batches, unrecorded_batches=self.unrecorded_batches,
                       next_id=self.next_id)
        other._entries = dict(self._entries)
        other._by_digest = {d: list(ids) for d, ids in self._by_digest.items()}
        other._kept = dict(self._kept)
        return other

    # -- state ----------------------------------------------------------------------------------
    def state(self, d_k: int, d_v: int, dtype: torch.dtype, device: torch.device) -> dict[str, object]:
        """The ledger as state-dict entries (see :meth:`RLSEditor.state_dict`)."""
        entries = self.entries
        digests = [bytes.fromhex(e.digest.removeprefix("sha256:")) for e in entries]
        state: dict[str, object] = {
            "keep_batches": self.keep_batches,
            "unrecorded_batches": self.unrecorded_batches,
            "next_batch_id": self.next_id,
            "ledger_ids": torch.tensor([e.batch_id for e in entries], dtype=torch.int64),
            "ledger_rows": torch.tensor([e.rows for e in entries], dtype=torch.int64),
            "ledger_digests": torch.frombuffer(bytearray(b"".join(digests)), dtype=torch.uint8)
            .reshape(len(entries), DIGEST_BYTES) if entries else torch.zeros(0, DIGEST_BYTES, dtype=torch.uint8),
        }
        if self.keep_batches:
            Ks = [self._kept[e.batch_id][0] for e in entries]
            Vs = [self._kept[e.batch_id][1] for e in entries]
            state["kept_K"] = torch.cat(Ks) if Ks else torch.zeros(0, d_k, dtype=dtype, device=device)
            state["kept_V"] = torch.cat(Vs) if Vs else torch.zeros(0, d_v, dtype=dtype, device=device)
        return state

    @classmethod
    def legacy(cls, n_batches: int) -> Ledger:
        """The ledger of an editor restored from a format-1 state: every batch it holds is unrecorded.

        New batches get ids from ``n_batches`` on, so that no id names a position those batches had.
        """
        return cls(keep_batches=False, unrecorded_batches=n_batches, next_id=n_batches)

    @classmethod
    def from_state(cls, state: dict, *, n_batches: int, n_rows: int, d_k: int, d_v: int,
                   dtype: torch.dtype, device: torch.device) -> Ledger:
        """Rebuild and check the ledger of a format-2 state; :class:`StateDictError` names what is wrong.

        Checked: every entry is there with its type, dtype and shape; ids strictly increase (the
        order of application) below ``next_batch_id``; every batch has a row; the entries and the
        unrecorded batches add up to the state's ``n_batches`` and ``n_rows``; and kept batches
        (if any) have the recorded shapes and digests.
        """
        missing = [k for k in LEDGER_KEYS if k not in state]
        if missing:
            raise StateDictError(f"state misses the ledger entries {missing}")
        keep = state["keep_batches"]
        if not isinstance(keep, bool):
            raise StateDictError(f"state['keep_batches'] must be True or False, got {keep!r}")
        unrecorded, next_id = (_count(state, k) for k in ("unrecorded_batches", "next_batch_id"))
        ids = _vector(state, "ledger_ids")
        rows = _vector(state, "ledger_rows")
        n = ids.shape[0]
        digests = state["ledger_digests"]
        if not (isinstance(digests, torch.Tensor) and digests.dtype == torch.uint8
                and tuple(digests.shape) == (n, DIGEST_BYTES)):
            raise StateDictError(
                f"state['ledger_digests'] must be a torch.uint8 tensor of shape ({n}, {DIGEST_BYTES}), got "
                f"{_describe(digests)}"
            )
        if rows.shape[0] != n:
            raise StateDictError(f"state['ledger_rows'] has {rows.shape[0]} entries, state['ledger_ids'] {n}")
        id_list, row_list = ids.tolist(), rows.tolist()
        if n and (id_list[0] < 0 or any(b <= a for a, b in itertools.pairwise(id_list))
                  or id_list[-1] >= next_id):
            raise StateDictError(
                f"state['ledger_ids'] must increase strictly from >= 0 to below next_batch_id = {next_id}, "
                f"got {id_list[:8]}{'...' if n > 8 else ''}"
            )
        if any(r < 1 for r in row_list):
            raise StateDictError("state['ledger_rows'] holds a batch of fewer than 1 row")
        if n + unrecorded != n_batches:
            raise StateDictError(
                f"the ledger holds {n} batches and {unrecorded} unrecorded ones, but state['n_batches'] "
                f"is {n_batches}"
            )
        recorded_rows = sum(row_list)
        if (recorded_rows != n_rows) if unrecorded == 0 else (recorded_rows + unrecorded > n_rows):
            raise StateDictError(
                f"the ledger's batches hold {recorded_rows} rows (and {unrecorded} unrecorded batches "
                f"at least one each), which does not fit state['n_rows'] = {n_rows}"
            )
        raw = digests.cpu().contiguous().numpy().tobytes()
        hexes = ["sha256:" + raw[i * DIGEST_BYTES:(i + 1) * DIGEST_BYTES].hex() for i in range(n)]
        kept: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n
        if keep:
            K_all = _kept(state, "kept_K", (recorded_rows, d_k), dtype)
            V_all = _kept(state, "kept_V", (recorded_rows, d_v), dtype)
            start = 0
            for i, u in enumerate(row_list):
                K = K_all[start:start + u].to(device).clone()
                V = V_all[start:start + u].to(device).clone()
                start += u
                if batch_digest(K, V) != hexes[i]:
                    raise StateDictError(
                        f"the kept batch of id {id_list[i]} (rows {start - u}..{start - 1} of kept_K and "
                        "kept_V) does not have the digest its ledger entry records"
                    )
                kept[i] = (K, V)
        else:
            extra = [k for k in KEPT_KEYS if k in state]
            if extra:
                raise StateDictError(f"state has keep_batches=False but holds {extra}")
        ledger = cls(keep_batches=keep, unrecorded_batches=unrecorded, next_id=next_id)
        for i in range(n):
            ledger._insert(LedgerEntry(id_list[i], row_list[i], hexes[i]), kept[i])
        return ledger


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return repr(x) if isinstance(x, int | float | str | type(None)) else type(x).__name__


def _count(state: dict, key: str) -> int:
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateDictError(f"state[{key!r}] must be a non-negative int, got {_describe(value)}")
    return value


def _vector(state: dict, key: str) -> torch.Tensor:
    t = state[key]
    if not (isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.ndim == 1):
        raise StateDictError(f"state[{key!r}] must be a 1-D torch.int64 tensor, got {_describe(t)}")
    return t.cpu()


def _kept(state: dict, key: str, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    t = state.get(key)
    if not (isinstance(t, torch.Tensor) and t.dtype == dtype and tuple(t.shape) == shape):
        raise StateDictError(
            f"state has keep_batches=True, so state[{key!r}] must be a {dtype} tensor of shape {shape} "
            f"(the ledger's rows), got {_describe(t)}"
        )
    check_finite_tensor(t, f"state[{key!r}]")
    return t
