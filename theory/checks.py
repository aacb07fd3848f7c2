"""Every bound of :mod:`theory` checked along one stream, on any editor.

:func:`check_stream` feeds a stream into an editor (anything with ``update(K, V)`` and ``W``; by
default a float64 :class:`rlsedit.RLSEditor`) batch by batch and, after each batch, yields one
:class:`Check` per bound: the measured quantity, the bound, and their ratio (measured / bound for
upper bounds; bound / measured for the soft-write lower bound), so that "the bound holds" always
reads "ratio <= 1".

Which side comes from where:

* measured: only the editor's ``W`` (before and after each batch) and the stream;
* reference: :func:`theory.reference.solve_stream`, the normal equations formed and solved from
  scratch in float64 (C_t, the minimiser W_t*, log det A_t), never the editor's internal state;
* bound: the functions of :mod:`theory` applied to the stream and the reference.

The check ``optimality`` is first order in the editor's error: ||W - W_t*||_F against
``OPTIMALITY_FACTOR * eps * kappa_max(t) * (||W0||_F + ||W_t* - W0||_F)``, the forward error a
stable float solver of A_t (W - W0) = B_t is allowed (eps of the editor's dtype, kappa_max the
largest cond(A_s) or cond(S_s), s <= t, :class:`theory.reference.ReferenceStep`; the scale is
that of the computed sum W0 + correction).
The same allowance on W, propagated through each measured quantity, is that check's ``slack``;
the reference's own relative rounding, OPTIMALITY_FACTOR * eps64 * kappa_max(t), is its ``rel``.

Three checks read no editor at all (:data:`CONSISTENCY_IDENTITIES`: ``loewner``, ``c_norm``,
``regret_logdet_identity``): they verify theorems about A_t on the reference, and no editor,
right or broken, can fail them. They are reported apart from the evidence. Default anchor
(V0 = K0 W0) throughout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

import rlsedit

from . import bounds, retention
from ._linalg import DTYPE, as64, spectral_norm
from .limits import limit_residual
from .reference import ReferenceStep, logdet_ratio, solve_stream

BOUND_NAMES = (
    "optimality", "energy", "weight_distance", "anchor_residual", "quarter_energy", "quarter_weight_distance",
    "quarter_anchor_residual", "spectral", "c_norm", "step", "soft_write_upper", "soft_write_lower",
    "loewner", "limit_error", "retention", "retention_cohort", "comparator", "comparator_quarter", "regret",
    "regret_identity", "regret_logdet_identity",
)
# Checks computed from the stream and the reference alone: theorems about A_t, not about an editor.
CONSISTENCY_IDENTITIES = ("loewner", "c_norm", "regret_logdet_identity")
LOWER_BOUNDS = ("soft_write_lower",)

EPS64 = float(torch.finfo(torch.float64).eps)
# Forward-error allowance per unit of eps * kappa_max, the table the solver's tests use
# (tests/strategies.py: over 300 random problems the float64 recursion's error / (eps kappa) had
# median 0.3 and maximum 121).
OPTIMALITY_FACTOR = 1000.0
# Rounding of evaluating a residual K W - V (per unit of eps times the norms involved).
_EVAL = 64.0


@dataclass(frozen=True)
class Check:
    """One comparison: ``ratio <= 1`` means the bound held.

    ``slack`` is the absolute allowance on the measured side: the change of the measured
    quantity when the editor's W is off by the allowed forward error (see the module docstring),
    plus the rounding of evaluating it. ``rel`` is the relative rounding of the reference side.
    :meth:`holds` applies both, together with a caller's relative tolerance.
    """

    bound: str
    batch: int
    measured: float
    value: float
    ratio: float
    slack: float = 0.0
    rel: float = 0.0

    def holds(self, rtol: float) -> bool:
        """The bound held up to ``rtol + rel`` relative and ``slack`` absolute (for the
        soft-write lower bound, ``value <= measured``; for every other one, ``measured <= value``)."""
        r = rtol + self.rel
        if not (math.isfinite(self.measured) and math.isfinite(self.value)):
            return False
        if self.bound in LOWER_BOUNDS:
            return self.value <= self.measured * (1 + r) + self.slack
        return self.measured <= self.value * (1 + r) + self.slack

    def margin(self, rtol: float) -> float:
        """The ratio after the allowances: <= 1 exactly when :meth:`holds`.

        Upper bounds: (measured - slack) / (value (1 + rtol + rel)), clipped at 0; the soft-write
        lower bound: value / (measured (1 + rtol + rel) + slack). Where :attr:`ratio` exceeds 1 and
        the margin does not, the check was decided by the rounding allowance alone (both sides at
        the level of the editor's forward error): it held, but says little.
        """
        r = rtol + self.rel
        if self.bound in LOWER_BOUNDS:
            return _ratio(self.value, self.measured * (1 + r) + self.slack)
        return _ratio(max(self.measured - self.slack, 0.0), self.value * (1 + r))


def _ratio(num: float, den: float) -> float:
    if not (math.isfinite(num) and math.isfinite(den)):
        return math.inf
    if den == 0.0:
        return 0.0 if num <= 0.0 else math.inf
    return num / den


def _qslack(Q: float, a: float) -> float:
    """Allowance on Q = ||L W - Y||^2 when sqrt(Q) may be off by a: (sqrt(Q) + a)^2 - Q."""
    return 2.0 * math.sqrt(max(Q, 0.0)) * a + a * a


def _norm(M: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(M))


def default_editor(W0: Any, *, lam: float, mu: float = 0.0, anchor_gram: Any = None) -> rlsedit.RLSEditor:
    """The editor :func:`check_stream` checks when given none: a float64 RLSEditor."""
    anchor = {} if anchor_gram is None or mu == 0.0 else {"anchor_gram": as64(anchor_gram, "anchor_gram")}
    return rlsedit.RLSEditor(as64(W0, "W0"), lam=lam, mu=mu, dtype=DTYPE, **anchor)


def check_stream(W0: Any, keys: Sequence[Any], values: Sequence[Any], *, lam: float, mu: float = 0.0,
                 anchor_gram: Any = None, editor: Any = None, W_lim: Any = None, comparator: Any = None,
                 cohort_batches: int = 1, every: int = 1,
                 reference: Sequence[ReferenceStep] | None = None) -> Iterator[Check]:
    """Stream (keys[i], values[i]) into ``editor`` and yield the checks after each batch.

    Args:
        W0, keys, values, lam, mu, anchor_gram: the problem (default anchor V0 = K0 W0).
        editor: any object with ``update(K, V)`` and a ``W`` attribute (d_k, d_v), built for this
            problem and not yet fed; default :func:`default_editor`. Only ``W`` is read.
        W_lim: a reference for the a-posteriori limit bound (any matrix is valid).
        comparator: a matrix W* for the comparator bounds (e.g. the map that generated a
            realisable stream); without one, ``retention_cohort`` uses W* = W0 and ``comparator``,
            ``comparator_quarter`` are skipped.
        cohort_batches: the early cohort is the first ``cohort_batches`` batches.
        every: the cumulative bounds are checked after every ``every``-th batch and the last one
            (the per-step ones after each batch).
        reference: :func:`theory.reference.solve_stream`'s result for this problem, to share one
            independent solve between several editors (computed here when omitted).
    """
    W0 = as64(W0, "W0")
    G = None if anchor_gram is None or mu == 0.0 else as64(anchor_gram, "anchor_gram")
    if len(keys) != len(values):
        raise ValueError(f"keys has {len(keys)} batches but values has {len(values)}")
    if cohort_batches < 1:
        raise ValueError(f"cohort_batches must be >= 1, got {cohort_batches}")
    ref = list(reference) if reference is not None else solve_stream(W0, keys, values, lam=lam, mu=mu,
                                                                      anchor_gram=G)
    if len(ref) != len(keys) + 1:
        raise ValueError(f"reference has {len(ref)} steps, expected {len(keys) + 1} (one per batch and the prior)")
    if editor is None:
        editor = default_editor(W0, lam=lam, mu=mu, anchor_gram=G)
    w_dtype = editor.W.dtype if isinstance(editor.W, torch.Tensor) else torch.as_tensor(editor.W).dtype
    eps = float(torch.finfo(w_dtype).eps) if w_dtype.is_floating_point else EPS64
    W_star = None if comparator is None else as64(comparator, "comparator")
    W_lim64 = None if W_lim is None else as64(W_lim, "W_lim")
    n_W0 = _norm(W0)
    g_norm = 0.0 if G is None else spectral_norm(G)
    p_norm = lam + mu * g_norm  # ||P||_2 for P = lam I + mu G
    W_prev = as64(editor.W, "editor.W").clone()
    delta_prev = 0.0  # the allowance on W_{t-1} (W_0 = W0 is exact)
    seen_K: list[torch.Tensor] = []
    seen_V: list[torch.Tensor] = []
    E_t = 0.0
    pre_energy = 0.0  # sum_i ||E_i||_F^2, the editor's pre-update residuals
    pre_slack = 0.0
    innov = 0.0  # sum_i tr(E_i^T S_i^{-1} E_i), editor's E_i, reference S_i
    innov_slack = 0.0
    logdet_sum = 0.0  # sum_i log det S_i on the reference
    y2_max = 0.0  # max_i ||E_i*||_2^2 along the reference trajectory
    for i, (K, V) in enumerate(zip(keys, values, strict=True)):
        K, V = as64(K, "keys").reshape(-1, W0.shape[0]), as64(V, "values").reshape(-1, W0.shape[1])
        prev, st = ref[i], ref[i + 1]
        E = V - K @ W_prev  # (u, d_v): the editor's residual of this batch before it
        editor.update(K, V)
        W = as64(editor.W, "editor.W").clone()
        seen_K.append(K)
        seen_V.append(V)
        rho = OPTIMALITY_FACTOR * EPS64 * st.kappa_max  # reference's relative rounding
        # allowed ||W - W_t*||: an editor computes W0 + (a correction), so the forward error scales
        # with ||W0|| + ||W_t* - W0|| (>= ||W_t*||; much larger when W_t* is small beside W0)
        delta = OPTIMALITY_FACTOR * eps * st.kappa_max * (n_W0 + _norm(st.W - W0))
        n_K = spectral_norm(K)
        n_W = _norm(W)
        evalr = _EVAL * EPS64 * (n_K * (n_W + _norm(W_prev)) + _norm(V))

        # -- first order: distance to the independent solve --------------------------------
        dist = _norm(W - st.W)
        yield Check("optimality", i, dist, delta, _ratio(dist, delta))

        # -- per step -------------------------------------------------------------------------
        e = _norm(E)
        gain = spectral_norm(st.C @ K.T)  # ||C_t K^T||_2, C_t from the reference
        step_meas = _norm(W - W_prev)
        step_val = bounds.step_bound_from_gain(st.C @ K.T, e)
        step_slack = delta + delta_prev + gain * n_K * delta_prev + _EVAL * EPS64 * (n_W + _norm(W_prev))
        yield Check("step", i, step_meas, step_val, _ratio(step_meas, step_val), step_slack, rho)
        after = _norm(V - K @ W)
        kck = st.S_eig - 1.0  # eigenvalues of K C_{t-1} K^T on the reference
        lo, hi = e / (1.0 + float(kck[-1])), e / (1.0 + max(float(kck[0]), 0.0))
        sw_slack = n_K * (delta + delta_prev) + evalr
        yield Check("soft_write_upper", i, after, hi, _ratio(after, hi), sw_slack, rho)
        yield Check("soft_write_lower", i, after, lo, _ratio(lo, after), sw_slack, rho)
        r = bounds.loewner_ratio(prev.C, st.C)
        yield Check("loewner", i, r, 1.0, r, 0.0, rho)

        # -- running sums for the regret checks --------------------------------------------------
        inn = retention.innovation(prev.C, K, E)
        innov += inn
        a = n_K * delta_prev + evalr
        innov_slack += _qslack(inn, a) + rho * inn
        pre_energy += e * e
        pre_slack += _qslack(e * e, a)
        logdet_sum += float(torch.log(st.S_eig).sum())
        y2_max = max(y2_max, spectral_norm(st.E) ** 2)
        E_t += bounds.edit_energy(W0, K, V)
        W_prev, delta_prev = W, delta
        if (i + 1) % every and i + 1 != len(keys):
            continue

        # -- cumulative ---------------------------------------------------------------------------
        K_all, V_all = torch.cat(seen_K), torch.cat(seen_V)
        D = W - W0
        F = float(((K_all @ W - V_all) ** 2).sum())
        weights = lam * float((D**2).sum())
        anchor = 0.0 if G is None else mu * float((D * (G @ D)).sum())
        J = F + weights + anchor
        root_A = math.sqrt(st.norm_A)
        d_eval = _EVAL * EPS64 * (n_W + n_W0)  # rounding of D = W - W0
        a_all = root_A * (delta + d_eval) + _EVAL * EPS64 * _norm(V_all)
        yield Check("energy", i, J, E_t, _ratio(J, E_t), _qslack(J, a_all))
        quarter = weights + anchor
        yield Check("quarter_energy", i, quarter, E_t / 4, _ratio(quarter, E_t / 4),
                    _qslack(quarter, math.sqrt(p_norm) * (delta + d_eval)))
        dist0 = _norm(D)
        if lam > 0:
            for name, val in (("weight_distance", (E_t / lam) ** 0.5),
                              ("quarter_weight_distance", (E_t / (4 * lam)) ** 0.5)):
                yield Check(name, i, dist0, val, _ratio(dist0, val), delta + d_eval)
        if G is not None and mu > 0:
            h = anchor / mu
            h_slack = _qslack(h, math.sqrt(g_norm) * (delta + d_eval))
            for name, val in (("anchor_residual", E_t / mu), ("quarter_anchor_residual", E_t / (4 * mu))):
                yield Check(name, i, h, val, _ratio(h, val), h_slack)
        spec = spectral_norm(D)
        spec_val = st.norm_C * spectral_norm(bounds.drive(W0, K_all, V_all))
        yield Check("spectral", i, spec, spec_val, _ratio(spec, spec_val), delta + d_eval, rho)
        yield Check("c_norm", i, st.norm_C, ref[0].norm_C, _ratio(st.norm_C, ref[0].norm_C), 0.0, rho)
        if W_lim64 is not None:
            lim_meas = _norm(W - W_lim64)
            lim_val = st.norm_C * _norm(limit_residual(W_lim64, W0, K_all, V_all, lam=lam, mu=mu, anchor_gram=G))
            yield Check("limit_error", i, lim_meas, lim_val, _ratio(lim_meas, lim_val),
                        delta + _EVAL * EPS64 * (n_W + _norm(W_lim64)), rho)

        # -- retention, comparator, regret ----------------------------------------------------
        # the reference minimum carries its own W error (second order at the optimum) and rounding
        jmin_slack = st.norm_A * (rho * (n_W0 + _norm(st.W - W0))) ** 2 + _qslack(st.J_min, a_all - root_A * delta)
        f_slack = _qslack(F, a_all) + jmin_slack
        yield Check("retention", i, F, st.J_min, _ratio(F, st.J_min), f_slack, rho)
        if i + 1 >= cohort_batches:
            Kc, Vc = torch.cat(seen_K[:cohort_batches]), torch.cat(seen_V[:cohort_batches])
            Fc = float(((Kc @ W - Vc) ** 2).sum())
            ref_W = W0 if W_star is None else W_star
            cb = retention.cohort_retention_bound(st.C, Kc, Vc, ref_W, W0, K_all, V_all, lam=lam, mu=mu,
                                                  anchor_gram=G)
            yield Check("retention_cohort", i, Fc, cb, _ratio(Fc, cb), _qslack(Fc, a_all), rho)
        if W_star is not None:
            cj = retention.comparator_bound(W_star, W0, K_all, V_all, lam=lam, mu=mu, anchor_gram=G)
            yield Check("comparator", i, F, cj, _ratio(F, cj), _qslack(F, a_all), rho)
            cq = retention.quarter_comparator_bound(W_star, W0, K_all, V_all, lam=lam, mu=mu, anchor_gram=G)
            yield Check("comparator_quarter", i, F, cq, _ratio(F, cq), _qslack(F, a_all), rho)
        ld = logdet_ratio(ref, i + 1)
        rb = retention.regret_bound(st.J_min, ref[0].J_min, y2_max, ld)
        yield Check("regret", i, pre_energy, rb, _ratio(pre_energy, rb), pre_slack + jmin_slack, rho)
        # the innovation identity J_t(W_t) - J_0(W_0) = sum_i tr(E_i^T S_i^{-1} E_i), both sides from
        # the editor's trajectory: its error against the allowance (W_t's error enters J_t only at
        # second order, J_t being minimal at W_t*)
        gap = abs(J - ref[0].J_min - innov)
        tol = st.norm_A * delta**2 + _qslack(J, a_all - root_A * delta) + innov_slack + rho * (J + innov)
        yield Check("regret_identity", i, gap, tol, _ratio(gap, tol))
        ld_gap = abs(logdet_sum - ld)
        ld_tol = rho * (abs(logdet_sum) + abs(st.logdet) + abs(ref[0].logdet)) + 1e-12
        yield Check("regret_logdet_identity", i, ld_gap, ld_tol, _ratio(ld_gap, ld_tol))


GAP_NAMES = ("comparator_gap", "comparator_gap_identity")


def check_baseline_gap(W0: Any, keys: Sequence[Any], values: Sequence[Any], *, lam: float, mu: float = 0.0,
                       anchor_gram: Any = None, baseline: Any, editor: Any = None,
                       reference: Sequence[ReferenceStep] | None = None) -> Iterator[tuple[Check, float]]:
    """A baseline and an RLS editor fed the same stream in lockstep: the objective gap after each batch.

    Yields ``(check, relative_gap)`` pairs, where relative_gap = (J_t(W_b) - J_t(W_rls)) / J_t(W_rls):

    * ``comparator_gap``: J_t(W_rls) <= J_t(W_b) (measured: the RLS editor's objective; bound: the
      baseline's), the RLS editor's optimality seen from another editor's weight;
    * ``comparator_gap_identity``: |J_t(W_b) - J_t(W_rls) - tr(D^T A_t D)| against its allowance,
      D = W_b - W_rls, A_t from the reference (:func:`theory.retention.objective_gap`). The identity
      holds for any W_b when W_rls is the minimiser and is off by 2 tr(D^T (A_t W_rls - b_t))
      otherwise: a check of the RLS editor that is first order in its error.
    """
    W0 = as64(W0, "W0")
    G = None if anchor_gram is None or mu == 0.0 else as64(anchor_gram, "anchor_gram")
    ref = list(reference) if reference is not None else solve_stream(W0, keys, values, lam=lam, mu=mu,
                                                                      anchor_gram=G)
    if editor is None:
        editor = default_editor(W0, lam=lam, mu=mu, anchor_gram=G)
    seen_K: list[torch.Tensor] = []
    seen_V: list[torch.Tensor] = []
    for i, (K, V) in enumerate(zip(keys, values, strict=True)):
        K, V = as64(K, "keys").reshape(-1, W0.shape[0]), as64(V, "values").reshape(-1, W0.shape[1])
        editor.update(K, V)
        baseline.update(K, V)
        seen_K.append(K)
        seen_V.append(V)
        st = ref[i + 1]
        W_r, W_b = as64(editor.W, "editor.W"), as64(baseline.W, "baseline.W")
        K_all, V_all = torch.cat(seen_K), torch.cat(seen_V)
        J_r = retention.objective_value(W_r, W0, K_all, V_all, lam=lam, mu=mu, anchor_gram=G)
        J_b = retention.objective_value(W_b, W0, K_all, V_all, lam=lam, mu=mu, anchor_gram=G)
        rho = OPTIMALITY_FACTOR * EPS64 * st.kappa_max
        delta = rho * (_norm(W0) + _norm(st.W - W0))
        root_A = math.sqrt(st.norm_A)
        evalr = _EVAL * EPS64 * (root_A * (_norm(W_r) + _norm(W_b) + 2 * _norm(W0)) + _norm(V_all))
        # J_t(W_rls) exceeds the minimum by at most ||A|| delta^2 (second order at the optimum)
        r_slack = st.norm_A * delta**2 + _qslack(J_r, evalr) + _qslack(J_b, evalr)
        rel_gap = (J_b - J_r) / J_r if J_r > 0 else math.inf
        yield Check("comparator_gap", i, J_r, J_b, _ratio(J_r, J_b), r_slack, rho), rel_gap
        quad = retention.objective_gap(W_b, W_r, st.A)
        err = abs(J_b - J_r - quad)
        D = _norm(W_b - W_r)
        tol = 2.0 * D * st.norm_A * delta + r_slack + rho * (J_b + quad)
        yield Check("comparator_gap_identity", i, err, tol, _ratio(err, tol)), rel_gap
