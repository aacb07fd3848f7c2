"""What one benchmark case runs: editors at a given size, the per-batch re-solve, flop counts.

Editors are built from a state dict with C_0 = I, which is exactly ``RLSEditor(W0, lam=1.0)``
(C_0 = (lam I)^{-1}) without paying the O(d_k^3) Cholesky factorisation that the constructor
spends on it: at 18944 x 18944 that factorisation alone takes minutes on a small CPU, and the
per-batch cost measured here does not depend on C's values.
"""

from __future__ import annotations

import torch

import rlsedit
from rlsedit.base import Editor, weight_fingerprint


def _state_like(editor_cls: type[Editor], tiny_kwargs: dict, W0: torch.Tensor, buffers: dict[str, torch.Tensor],
                *, keep_W0: bool = True) -> dict:
    """A state dict for ``editor_cls`` with W = W0 and the given buffers.

    The template comes from a real 2 x 1 editor, so every other entry (format version, counters,
    hyperparameters) is what the class itself writes; with ``keep_W0=False`` it holds W0's
    fingerprint in place of W0, as such an editor does.
    """
    template = editor_cls(torch.zeros(2, 1, dtype=W0.dtype), keep_W0=keep_W0, **tiny_kwargs).state_dict()
    unknown = set(buffers) - set(template)
    if unknown:
        raise KeyError(f"{editor_cls.__name__}'s state has no entries {sorted(unknown)}")
    template.update(buffers, W=W0)
    if keep_W0:
        template["W0"] = W0
    else:
        template["W0_fingerprint"] = weight_fingerprint(W0)
    return template


def random_weight(d_k: int, d_v: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(d_k, d_v, generator=g, dtype=dtype) / d_k**0.5)


def identity(d_k: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.eye(d_k, dtype=dtype)


def rls_editor(W0: torch.Tensor, *, keep_W0: bool = True) -> rlsedit.RLSEditor:
    """``RLSEditor(W0, lam=1.0, keep_W0=keep_W0)``: C_0 = I, W_0* = W0."""
    d_k = W0.shape[0]
    state = _state_like(rlsedit.RLSEditor, {"lam": 1.0}, W0, {"C": identity(d_k, W0.dtype)}, keep_W0=keep_W0)
    return rlsedit.RLSEditor.from_state_dict(state)


def memit_editor(W0: torch.Tensor, *, keep_W0: bool = True) -> rlsedit.MEMITEditor:
    """``MEMITEditor(W0, lam=1.0, keep_W0=keep_W0)``: every batch is written from C_0 = I."""
    d_k = W0.shape[0]
    state = _state_like(rlsedit.MEMITEditor, {"lam": 1.0}, W0, {"C0": identity(d_k, W0.dtype)}, keep_W0=keep_W0)
    return rlsedit.MEMITEditor.from_state_dict(state)


def alphaedit_editor(W0: torch.Tensor, *, keep_W0: bool = True) -> rlsedit.AlphaEditEditor:
    """``AlphaEditEditor`` with projector P = I (an anchor whose Gram is below the threshold).

    Its per-batch cost (a d_k x d_k product and a d_k x d_k solve) does not depend on P's values.
    """
    d_k = W0.shape[0]
    anchor = torch.zeros(1, 2, dtype=W0.dtype)
    state = _state_like(rlsedit.AlphaEditEditor, {"anchor_keys": anchor}, W0,
                        {"P": identity(d_k, W0.dtype), "past_gram": torch.zeros(d_k, d_k, dtype=W0.dtype)},
                        keep_W0=keep_W0)
    return rlsedit.AlphaEditEditor.from_state_dict(state)


class ResolveEachBatch:
    """The per-batch re-solve: the same cumulative objective, solved from scratch at every batch.

        A_t = A_{t-1} + K_t^T K_t,   b_t = b_{t-1} + K_t^T V_t      (A_0 = lam I, b_0 = lam W0)
        W_t = A_t^{-1} b_t   by a Cholesky factorisation of A_t      (docs/method.md section 3)

    This is what an editor without the Woodbury recursion pays per batch, O(d_k^3 + d_k^2 d_v):
    MEMIT and AlphaEdit solve a d_k x d_k system per batch, and the authors' released driver
    re-inverts C_0 per batch. The information matrix is accumulated incrementally, so the cost
    does not grow with the stream either: it is the solve that costs.
    """

    def __init__(self, W0: torch.Tensor, lam: float = 1.0) -> None:
        d_k = W0.shape[0]
        self.A = lam * identity(d_k, W0.dtype)  # (d_k, d_k)
        self.b = lam * W0.clone()  # (d_k, d_v)
        self.W = W0.clone()

    def update(self, K: torch.Tensor, V: torch.Tensor) -> None:
        self.A.addmm_(K.T, K)  # (d_k, u) @ (u, d_k)
        self.b.addmm_(K.T, V)  # (d_k, u) @ (u, d_v)
        L, info = torch.linalg.cholesky_ex(self.A)  # (d_k, d_k)
        if int(info) != 0:
            raise rlsedit.FactorizationError(f"A_t is not positive definite (leading minor {int(info)})")
        self.W = torch.cholesky_solve(self.b, L)  # (d_k, d_v)


def update_flops(d_k: int, d_v: int, u: int) -> dict[str, int]:
    """Floating-point operations of one RLSEdit step, per step of docs/method.md section 4.

    A product (m, k) @ (k, n) counts 2 m k n; a Cholesky factorisation of u x u counts u^3 / 3;
    a triangular solve with n right-hand sides counts u^2 n.
    """
    return {
        "F = C K^T": 2 * d_k * d_k * u,
        "S = I + K F": 2 * u * d_k * u,
        "E = V - K W": 2 * u * d_k * d_v,
        "S = R^T R": u**3 // 3,
        "Z = S^{-1} E": 2 * u * u * d_v,
        "G = F R^{-1}": d_k * u * u,
        "W += F Z": 2 * d_k * u * d_v,
        "C -= G G^T": 2 * d_k * d_k * u,
    }


def batch(d_k: int, d_v: int, u: int, dtype: torch.dtype, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of unit expected norm and values of unit scale: nothing overflows along a stream."""
    K = torch.randn(u, d_k, generator=g, dtype=dtype) / d_k**0.5
    V = torch.randn(u, d_v, generator=g, dtype=dtype)
    return K, V
