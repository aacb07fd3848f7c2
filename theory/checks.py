"""Every bound of :mod:`theory.bounds` checked against the measured quantity along one stream.

:func:`check_stream` feeds a stream into :class:`rlsedit.RLSEditor` batch by batch and, after each
batch, yields one :class:`Check` per bound: the measured quantity, the bound, and their ratio
(measured / bound for upper bounds; bound / measured for the soft-write lower bound), so that
"the bound holds" always reads "ratio <= 1". The measured side comes from the editor's state (the
recursion); the bounds are computed from the stream by the functions of :mod:`theory`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

import rlsedit

from . import bounds
from ._linalg import as64, spectral_norm
from .limits import limit_error_bound

BOUND_NAMES = (
    "energy", "weight_distance", "anchor_residual", "quarter_energy", "quarter_weight_distance",
    "quarter_anchor_residual", "spectral", "c_norm", "step", "soft_write_upper", "soft_write_lower",
    "loewner", "limit_error",
)


EPS64 = float(torch.finfo(torch.float64).eps)


@dataclass(frozen=True)
class Check:
    """One comparison: ``ratio <= 1`` means the bound held.

    ``slack`` is the absolute rounding allowance of the measured side: most measured quantities
    are differences of stored matrices (W_t - W_{t-1}, W_t - W0), whose float64 rounding is
    relative to the matrices' norms, not to the (possibly tiny) difference.
    :meth:`holds` applies it together with a relative tolerance.
    """

    bound: str
    batch: int
    measured: float
    value: float
    ratio: float
    slack: float = 0.0

    def holds(self, rtol: float) -> bool:
        """The bound held up to ``rtol`` relative and ``slack`` absolute (for the soft-write lower
        bound, ``value <= measured``; for every other one, ``measured <= value``)."""
        if self.bound == "soft_write_lower":
            return self.value <= self.measured * (1 + rtol) + self.slack
        return self.measured <= self.value * (1 + rtol) + self.slack


# Rounding allowance, in units of eps times the stored matrices' norms: the forward error of the
# float64 recursion on the well-conditioned parts, plus the subtraction (see Check.slack).
_ROUND = 64.0


def _ratio(num: float, den: float) -> float:
    if den == 0.0:
        return 0.0 if num <= 0.0 else float("inf")
    return num / den


def check_stream(W0: Any, keys: Sequence[Any], values: Sequence[Any], *, lam: float, mu: float = 0.0,
                 anchor_gram: Any = None, W_lim: Any = None, every: int = 1) -> Iterator[Check]:
    """Stream (keys[i], values[i]) into an RLSEditor (float64) and yield the checks after each batch.

    ``W_lim`` (optional): a reference for the a-posteriori limit bound (any matrix works; the
    population limit is the interesting one). ``every``: the cumulative bounds are checked after
    every ``every``-th batch (the per-step ones after each batch). The default anchor V0 = K0 W0
    is assumed (``anchor_gram`` = K0^T K0).
    """
    W0 = as64(W0, "W0")
    G = None if anchor_gram is None else as64(anchor_gram, "anchor_gram")
    anchor = {} if G is None else {"anchor_gram": G}
    editor = rlsedit.RLSEditor(W0, lam=lam, mu=mu, dtype=torch.float64, **anchor)
    c0_norm = bounds.prior_inverse_norm(W0.shape[0], lam=lam, mu=mu, anchor_gram=G)
    E_t = 0.0
    B_t = torch.zeros_like(W0)
    n_W0 = float(torch.linalg.vector_norm(W0))
    seen_K: list[torch.Tensor] = []
    seen_V: list[torch.Tensor] = []
    for i, (K, V) in enumerate(zip(keys, values, strict=True)):
        K, V = as64(K, "keys"), as64(V, "values")
        C_prev, W_prev = editor.C.clone(), editor.W.clone()
        rec = editor.update(K, V)
        C_t, W_t = editor.C, editor.W
        seen_K.append(K)
        seen_V.append(V)
        # per-step results
        nW = float(torch.linalg.vector_norm(W_t))
        step_meas = float(torch.linalg.vector_norm(W_t - W_prev))
        step_val = bounds.step_bound(C_t, K, rec.residual_before)
        step_slack = _ROUND * EPS64 * (nW + float(torch.linalg.vector_norm(W_prev)))
        yield Check("step", i, step_meas, step_val, _ratio(step_meas, step_val), step_slack)
        lo, hi = bounds.soft_write_interval(C_prev, K, rec.residual_before)
        yield Check("soft_write_upper", i, rec.residual_after, hi, _ratio(rec.residual_after, hi))
        yield Check("soft_write_lower", i, rec.residual_after, lo, _ratio(lo, rec.residual_after))
        r = bounds.loewner_ratio(C_prev, C_t)
        yield Check("loewner", i, r, 1.0, r)
        # cumulative results (E_t and B_t are sums over batches)
        E_t += bounds.edit_energy(W0, K, V)
        B_t += bounds.drive(W0, K, V)
        if (i + 1) % every and i + 1 != len(keys):
            continue
        D = W_t - W0
        J = rlsedit.objective(W_t, W0, seen_K, seen_V, lam=lam, mu=mu, **anchor)
        dist = float(torch.linalg.vector_norm(D))
        # rounding of D = W_t - W0 (absolute), and of the quadratic terms built from it
        d_slack = _ROUND * EPS64 * (nW + n_W0)
        g_norm = 0.0 if G is None else spectral_norm(G)
        h_slack = 2.0 * g_norm * (dist + d_slack) * d_slack
        q_slack = 2.0 * lam * (dist + d_slack) * d_slack + mu * h_slack
        K_all = torch.cat(seen_K)
        e_slack = q_slack + 2.0 * spectral_norm(K_all) * (J.edits**0.5 + 1.0) * _ROUND * EPS64 * nW
        yield Check("energy", i, J.total, E_t, _ratio(J.total, E_t), e_slack)
        quarter = J.weights + J.anchor
        yield Check("quarter_energy", i, quarter, E_t / 4, _ratio(quarter, E_t / 4), q_slack)
        if lam > 0:
            for name, val in (("weight_distance", (E_t / lam) ** 0.5),
                              ("quarter_weight_distance", (E_t / (4 * lam)) ** 0.5)):
                yield Check(name, i, dist, val, _ratio(dist, val), d_slack)
        if mu > 0 and G is not None:
            h = J.anchor / mu
            for name, val in (("anchor_residual", E_t / mu), ("quarter_anchor_residual", E_t / (4 * mu))):
                yield Check(name, i, h, val, _ratio(h, val), h_slack)
        spec_meas = spectral_norm(D)
        spec_val = spectral_norm(C_t) * spectral_norm(B_t)
        yield Check("spectral", i, spec_meas, spec_val, _ratio(spec_meas, spec_val), d_slack)
        cn = spectral_norm(C_t)
        yield Check("c_norm", i, cn, c0_norm, _ratio(cn, c0_norm))
        if W_lim is not None:
            W_lim64 = as64(W_lim, "W_lim")
            lim_meas = float(torch.linalg.vector_norm(W_t - W_lim64))
            lim_val = limit_error_bound(C_t, W_lim, W0, seen_K, seen_V, lam=lam, mu=mu, anchor_gram=G)
            lim_slack = _ROUND * EPS64 * (nW + float(torch.linalg.vector_norm(W_lim64)))
            yield Check("limit_error", i, lim_meas, lim_val, _ratio(lim_meas, lim_val), lim_slack)
