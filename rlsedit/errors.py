"""Named errors of the solver core.

Every error a user can hit says what was wrong (which argument, which shape, which value) and,
where there is one, what to do about it. Each class also derives from the built-in exception that
fits it, so ``except ValueError`` keeps working for callers that do not know this module.
"""

from __future__ import annotations


class RLSEditError(Exception):
    """Base class of every error raised by :mod:`rlsedit`."""


class ShapeError(RLSEditError, ValueError):
    """An array has the wrong number of dimensions or a size that does not match the problem."""


class DTypeError(RLSEditError, TypeError):
    """An array has a dtype the solver cannot work in (integers, complex, half precision)."""


class NonFiniteError(RLSEditError, ValueError):
    """An array holds NaN or infinite values, or a step would produce them."""


class EmptyBatchError(RLSEditError, ValueError):
    """A batch with zero rows was given: nothing would be edited, which is never what was meant."""


class AnchorError(RLSEditError, ValueError):
    """The anchor is inconsistent: ambiguous arguments, an asymmetric or indefinite Gram matrix."""


class NoUniqueSolutionError(RLSEditError, ValueError):
    """The regularised Gram matrix is singular, so the objective has no unique minimiser.

    Happens with ``lam = 0`` and an anchor Gram that is singular (or no anchor at all).
    """


class FactorizationError(RLSEditError, ArithmeticError):
    """The Cholesky factorisation of the small u x u system failed (the state lost definiteness)."""


class NotAppliedError(RLSEditError, ValueError):
    """A batch given to ``retract`` or ``replace`` cannot be taken out of this state.

    Raised when the editor's ledger of applied batches holds no batch with exactly these keys and
    values (never applied, or already retracted as often as it was applied), for a batch id that is
    not in the ledger, and when the math shows the batch cannot have been applied
    (I - K C K^T not positive definite).
    """


class BatchNotKeptError(RLSEditError, LookupError):
    """A batch was asked for by id, but the editor keeps only its digest, not the batch itself.

    Build the editor with ``keep_batches=True`` to retract or replace by id, or pass the batch's
    keys and values.
    """


class CheckpointError(RLSEditError, ValueError):
    """A checkpoint file cannot be used: truncated, corrupted, or saved for another editor or layer.

    The message says what does not match (editor, shape, dtype, model fingerprint, checksum).
    """


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No checkpoint file exists at the given path."""


class RefactorizationError(RLSEditError, ArithmeticError):
    """Rebuilding C from the accumulated information matrix failed (it is not positive definite)."""


class ParameterError(RLSEditError, ValueError):
    """A hyperparameter or option is out of range or of the wrong kind (e.g. lam < 0, steps = 0)."""


class W0NotKeptError(RLSEditError, AttributeError):
    """The editor was built with ``keep_W0=False``: it holds W0's fingerprint, not W0 itself.

    Pass W0 from where it lives (the model's layer) to whatever needs it, or build the editor with
    ``keep_W0=True`` (the default).
    """
