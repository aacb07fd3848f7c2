"""Shared helper for the frozen config dataclasses of this package."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any], error: type[Exception]) -> T:
    """Build the dataclass ``cls`` from ``data``, refusing unknown fields with ``error`` (named)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**data)
