"""Conversion of user inputs to tensors, with checks that name the offending argument.

Nothing here mutates its input: numpy arrays are wrapped (``torch.as_tensor``), and a copy is made
only where the dtype or device has to change. Callers that keep state clone what they store.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import DTypeError, NonFiniteError, ParameterError, ShapeError

_SOLVER_DTYPES = (torch.float32, torch.float64)


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """Map ``None``, a torch dtype, a numpy dtype or a name like ``"float32"`` to a torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            out = getattr(torch, np.dtype(dtype).name)
        except (TypeError, AttributeError) as exc:
            raise DTypeError(f"dtype={dtype!r} is not a dtype the solver understands") from exc
    if out is not None and out not in _SOLVER_DTYPES:
        raise DTypeError(f"dtype={out} is not supported: the solver works in torch.float32 or torch.float64")
    return out


def as_tensor(
    x: Any,
    name: str,
    *,
    ndim: int | None = 2,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Return ``x`` as a floating torch tensor, checking its dtype, number of dimensions and values.

    With ``dtype=None`` the dtype follows the input (float32 or float64). Half precision, integers,
    booleans and complex numbers are refused with a :class:`DTypeError` naming ``name``.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()  # a model parameter (requires_grad) must not drag autograd into the solver
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic array-likes
            raise DTypeError(f"{name} could not be converted to an array: {exc}") from exc
        if arr.dtype == object:
            raise DTypeError(f"{name} is not a numeric array (numpy dtype object)")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                or arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.complexfloating)):
            raise DTypeError(f"{name} has numpy dtype {arr.dtype}, expected a floating dtype")
        if np.issubdtype(arr.dtype, np.complexfloating) or arr.dtype == np.bool_:
            raise DTypeError(f"{name} has dtype {arr.dtype}, expected float32 or float64")
        if np.issubdtype(arr.dtype, np.integer):
            raise DTypeError(
                f"{name} has integer dtype {arr.dtype}; convert it to float64 or float32 first"
            )
        t = torch.as_tensor(arr)
    if not t.is_floating_point():
        raise DTypeError(f"{name} has dtype {t.dtype}, expected float32 or float64")
    target = dtype if dtype is not None else t.dtype
    if target not in _SOLVER_DTYPES:
        raise DTypeError(
            f"{name} has dtype {t.dtype}; the solver works in float32 or float64 "
            f"(pass dtype=torch.float32 to convert, e.g. for a bfloat16 model weight)"
        )
    if ndim is not None and t.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    t = t.to(dtype=target, device=device) if device is not None else t.to(dtype=target)
    if check_finite:
        check_finite_tensor(t, name)
    return t


def check_finite_tensor(t: torch.Tensor, name: str) -> None:
    """Raise :class:`NonFiniteError` naming ``name``, the count and the first bad index."""
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        first = tuple(int(i) for i in bad[0].tolist())
        raise NonFiniteError(
            f"{name} holds {bad.shape[0]} non-finite value(s) (NaN or Inf); first at index {first}"
        )


def as_weight(value: Any, name: str) -> float:
    """A regulariser weight: a finite, non-negative real number."""
    if isinstance(value, torch.Tensor | np.ndarray):
        if np.ndim(value) != 0 and np.size(value) != 1:
            raise ShapeError(f"{name} must be a scalar, got an array of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise DTypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise NonFiniteError(f"{name} must be finite, got {value}")
    if value < 0:
        raise ParameterError(f"{name} must be >= 0, got {value}")
    return value


def check_columns(t: torch.Tensor, name: str, expected: int, what: str) -> None:
    if t.shape[1] != expected:
        raise ShapeError(
            f"{name} has {t.shape[1]} columns but {what} is {expected} (shape {tuple(t.shape)})"
        )


def as_batch(
    K: Any, V: Any, *, d_k: int, d_v: int, dtype: torch.dtype, device: torch.device,
    K_name: str = "K", V_name: str = "V",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one edit batch: K (u, d_k), V (u, d_v), u >= 1, finite; cast to the state's dtype."""
    from .errors import EmptyBatchError

    K = as_tensor(K, K_name, dtype=dtype, device=device)
    V = as_tensor(V, V_name, dtype=dtype, device=device)
    check_columns(K, K_name, d_k, "d_k (W.shape[0])")
    check_columns(V, V_name, d_v, "d_v (W.shape[1])")
    if K.shape[0] != V.shape[0]:
        raise ShapeError(
            f"{K_name} has {K.shape[0]} rows but {V_name} has {V.shape[0]}: one key per value"
        )
    if K.shape[0] == 0:
        raise EmptyBatchError(f"empty batch: {K_name} and {V_name} have 0 rows")
    check_scale(K, V, K_name, V_name)
    return K, V


def check_scale(K: torch.Tensor, V: torch.Tensor, K_name: str = "K", V_name: str = "V") -> None:
    """Refuse a batch whose Gram K^T K or cross term K^T V would overflow the working dtype."""
    limit = float(torch.finfo(K.dtype).max)
    nK = float(torch.linalg.vector_norm(K, dtype=torch.float64))
    nV = float(torch.linalg.vector_norm(V, dtype=torch.float64))
    if not (nK * nK < limit and nK * nV < limit):
        raise NonFiniteError(
            f"{K_name}/{V_name} are too large for {K.dtype}: ||{K_name}||_F = {nK:.3e}, "
            f"||{V_name}||_F = {nV:.3e}, and products of them overflow; rescale them or use float64"
        )
