"""Precise statements of RLSEdit's bounds and limits (docs/method.md section 5), as functions that compute them.

Each function's docstring gives the statement, its assumptions, a short proof and where the bound
is tight; the longer proofs are in ``theory/README.md``. Everything is float64 and uses the solver
only through its public API (the measured side comes from :class:`rlsedit.RLSEditor` or
:func:`rlsedit.batch_solve`).
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
    scaled_limit_rms_bound,
)
from .tradeoff import (
    anchor_null_basis,
    anchor_pinned_limit,
    full_adherence_limit,
    tradeoff_terms,
    weight_pull_bound,
)

__all__ = [
    "NoLimitError",
    "anchor_null_basis",
    "anchor_pinned_limit",
    "anchor_residual_bound",
    "drive",
    "edit_energy",
    "energy_bound",
    "fit_loglog_slope",
    "full_adherence_limit",
    "least_squares_limit",
    "limit_error_bound",
    "limit_residual",
    "loewner_gap_rank",
    "loewner_ratio",
    "noise_level",
    "prior_inverse_norm",
    "quarter_anchor_residual_bound",
    "quarter_energy_bound",
    "quarter_weight_distance_bound",
    "ridge_population_limit",
    "scaled_limit_rms_bound",
    "soft_write_interval",
    "soft_write_interval_from_gram",
    "spectral_bound",
    "step_bound",
    "step_bound_from_gain",
    "tradeoff_terms",
    "weight_distance_bound",
    "weight_pull_bound",
]
