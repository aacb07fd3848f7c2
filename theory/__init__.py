"""Precise statements of RLSEdit's bounds and limits (docs/method.md section 5), as functions that compute them.

Each function's docstring gives the statement, its assumptions, a short proof and where the bound
is tight; the longer proofs are in ``theory/README.md``. Everything is float64. The measured side of
a check comes from an editor's ``W`` alone (:func:`theory.checks.check_stream` takes any editor);
the reference side from :func:`theory.reference.solve_stream`, the normal equations solved from
scratch; :mod:`theory.mutants` holds the broken editors every check must catch.
"""

from .bounds import (
    anchor_residual_bound,
    drive,
    edit_energy,
    energy_bound,
    loewner_gap_rank,
    loewner_ratio,
    prior_inverse_norm,
    quarter_anchor_residual_bound,
    quarter_energy_bound,
    quarter_weight_distance_bound,
    soft_write_interval,
    soft_write_interval_from_gram,
    spectral_bound,
    step_bound,
    step_bound_from_gain,
    weight_distance_bound,
)
from .limits import (
    NoLimitError,
    fit_loglog_slope,
    least_squares_limit,
    limit_error_bound,
    limit_residual,
    noise_level,
    ridge_population_limit,
    sandwich_constant,
    scaled_limit_rms_bound,
)
from .reference import ReferenceError, ReferenceStep, solve_stream
from .retention import (
    cohort_retention_bound,
    comparator_bound,
    edit_residual,
    innovation,
    logdet_S,
    objective_gap,
    objective_value,
    quarter_comparator_bound,
    regret_bound,
    regulariser,
)
from .tradeoff import (
    anchor_null_basis,
    anchor_pinned_first_order,
    anchor_pinned_limit,
    full_adherence_limit,
    tradeoff_terms,
    weight_pull_bound,
)

__all__ = [
    "NoLimitError",
    "ReferenceError",
    "ReferenceStep",
    "anchor_null_basis",
    "anchor_pinned_first_order",
    "anchor_pinned_limit",
    "anchor_residual_bound",
    "cohort_retention_bound",
    "comparator_bound",
    "drive",
    "edit_energy",
    "edit_residual",
    "energy_bound",
    "fit_loglog_slope",
    "full_adherence_limit",
    "innovation",
    "least_squares_limit",
    "limit_error_bound",
    "limit_residual",
    "loewner_gap_rank",
    "loewner_ratio",
    "logdet_S",
    "noise_level",
    "objective_gap",
    "objective_value",
    "prior_inverse_norm",
    "quarter_anchor_residual_bound",
    "quarter_comparator_bound",
    "quarter_energy_bound",
    "quarter_weight_distance_bound",
    "regret_bound",
    "regulariser",
    "ridge_population_limit",
    "sandwich_constant",
    "scaled_limit_rms_bound",
    "soft_write_interval",
    "soft_write_interval_from_gram",
    "solve_stream",
    "spectral_bound",
    "step_bound",
    "step_bound_from_gain",
    "tradeoff_terms",
    "weight_distance_bound",
    "weight_pull_bound",
]
