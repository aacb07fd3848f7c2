"""Small helpers shared by the experiments (their configs' checks raise rlsedit.config.ConfigError)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from rlsedit.config import ConfigError


def check_positive(obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, tuple):
            if not v or any(x <= 0 for x in v):
                raise ConfigError(f"{name} must be a non-empty list of positive numbers, got {v}")
        elif not v > 0:
            raise ConfigError(f"{name} must be > 0, got {v}")


def check_non_negative(obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        vals = v if isinstance(v, tuple) else (v,)
        if not vals or any(not (math.isfinite(x) and x >= 0) for x in vals):
            raise ConfigError(f"{name} must be finite and >= 0, got {v}")


def quantiles(values: Iterable[float]) -> dict[str, float]:
    xs = sorted(values)
    if not xs:
        return {"n": 0}
    q = statistics.quantiles(xs, n=10, method="inclusive") if len(xs) > 1 else [xs[0]] * 9
    return {"n": len(xs), "min": xs[0], "p10": q[0], "median": statistics.median(xs), "p90": q[8], "max": xs[-1]}


def loglog_slope(x: list[float], y: list[float]) -> float:
    lx = [math.log(a) for a in x]
    ly = [math.log(b) for b in y]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)
