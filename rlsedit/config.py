"""Configuration dataclasses: one base class, one validation vocabulary, one way to read them back.

Every package's settings (an experiment's sections, the tiny model's training, the evaluation
protocols, the simulations, the benchmark suite) are frozen dataclasses deriving from
:class:`Config`. The base class gives each of them the same behaviour:

- **validated on construction**: ``__post_init__`` converts lists to tuples and mappings to nested
  configs where the field's type says so, then calls the subclass's :meth:`Config.validate`, which
  states its rules with the checks below (``self.require(POSITIVE_INT, "steps", "batch_size")``).
  A broken rule raises the class's :attr:`Config.error` (a :class:`ConfigError`, so a ValueError)
  naming the class, the field, the rule and the value: ``"TrainConfig.hidden must be a positive
  integer, got 0"``;
- **one way from a dict**: :meth:`Config.from_dict` refuses unknown fields by name, builds nested
  configs from nested dicts and tuples from lists; :meth:`Config.to_dict` is its inverse (JSON
  ready), :meth:`Config.from_json` reads a file, :meth:`Config.merge` applies a dict of overrides
  the same way, :meth:`Config.replace` makes a changed copy (validated again).

The solver (:mod:`rlsedit.editor` and friends) takes plain arguments and does not use this module;
it lives here because every outer package builds on :mod:`rlsedit` and may import it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

# torch.set_num_threads(100000) kills the process (a segfault), so every thread count is bounded.
MAX_THREADS = 1024

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A configuration that breaks one of its rules (the message names class, field, rule, value)."""


# -- the checks: (rule in words, predicate) ------------------------------------------------------
Check = tuple[str, Callable[[Any], bool]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE_INT: Check = ("a positive integer", lambda v: _is_int(v) and v >= 1)
NON_NEGATIVE_INT: Check = ("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE: Check = ("a finite number > 0", lambda v: _is_real(v) and v > 0)
NON_NEGATIVE: Check = ("a finite number >= 0", lambda v: _is_real(v) and v >= 0)
BOOLEAN: Check = ("true or false", lambda v: isinstance(v, bool))
THREADS: Check = (f"an integer from 1 to {MAX_THREADS}", lambda v: _is_int(v) and 1 <= v <= MAX_THREADS)


def one_of(choices: typing.Iterable[Any]) -> Check:
    choices = tuple(choices)
    return (f"one of {choices}", lambda v: v in choices)


def between(low: float, high: float) -> Check:
    return (f"a number in [{low}, {high}]", lambda v: _is_real(v) and low <= v <= high)


def increasing(minimum: int = 0) -> Check:
    """A non-empty tuple of integers >= ``minimum`` in strictly increasing order."""
    def ok(v: Any) -> bool:
        return (isinstance(v, tuple) and len(v) > 0 and all(_is_int(x) and x >= minimum for x in v)
                and list(v) == sorted(set(v)))
    return (f"a non-empty, strictly increasing list of integers >= {minimum}", ok)


# -- the base class ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    """Base of the project's frozen configuration dataclasses (see the module docstring)."""

    error: ClassVar[type[ConfigError]] = ConfigError

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            converted = _convert(hints[f.name], value, type(self).error)
            if converted is not value:
                object.__setattr__(self, f.name, converted)
        self.validate()

    def validate(self) -> None:
        """The subclass's rules: :meth:`require` calls and any check that spans fields."""

    # -- rules ---------------------------------------------------------------------------------
    def bad(self, name: str, why: str) -> ConfigError:
        """The error for field ``name``: ``"<Class>.<name> <why>, got <value>"``."""
        return type(self).error(f"{type(self).__name__}.{name} {why}, got {getattr(self, name)!r}")

    def require(self, check: Check, *names: str) -> None:
        """Raise :meth:`bad` for the first of ``names`` whose value breaks ``check``."""
        rule, ok = check
        for name in names:
            if not ok(getattr(self, name)):
                raise self.bad(name, f"must be {rule}")

    # -- dicts and files -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (nested configs as dicts, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def _check_fields(cls, data: Any) -> None:
        """Refuse anything but a mapping of this config's own field names, naming what is wrong."""
        if not isinstance(data, Mapping):
            raise cls.error(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise cls.error(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(known)}")

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """The config from :meth:`to_dict`'s output (or a JSON file's); unknown fields are refused."""
        cls._check_fields(data)
        return cls(**dict(data))  # __post_init__ converts nested dicts and lists

    def merge(self: C, data: Mapping[str, Any]) -> C:
        """A copy with ``data``'s fields changed (a file's or a command line's overrides): unknown
        fields are refused by name, nested dicts and lists are converted, the result is validated."""
        self._check_fields(data)
        return dataclasses.replace(self, **dict(data))

    @classmethod
    def from_json(cls: type[C], path: str | Path) -> C:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise cls.error(f"{cls.__name__}: cannot read {path}: {exc}") from exc
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` (validated like a new config)."""
        return dataclasses.replace(self, **changes)


def _config_type(tp: Any) -> type[Config] | None:
    """The Config subclass a field's type names, directly or as ``X | None``."""
    if isinstance(tp, type) and issubclass(tp, Config):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return _config_type(inner[0])
    return None


def _convert(tp: Any, value: Any, error: type[ConfigError]) -> Any:
    """A mapping for a nested config field becomes that config; a list for a tuple field, a tuple
    (recursively: ``tuple[tuple[int, int], ...]`` from JSON's lists of lists)."""
    nested = _config_type(tp)
    if nested is not None and isinstance(value, Mapping):
        return nested.from_dict(value)
    if typing.get_origin(tp) is tuple and isinstance(value, list | tuple):
        args = typing.get_args(tp)
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            return tuple(value) if isinstance(value, list) else value  # the field's rule reports it
        items = tuple(_convert(a, v, error) for a, v in zip(inner, value, strict=True))
        if isinstance(value, tuple) and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


__all__ = ["BOOLEAN", "MAX_THREADS", "NON_NEGATIVE", "NON_NEGATIVE_INT", "POSITIVE", "POSITIVE_INT", "THREADS",
           "Config", "ConfigError", "between", "increasing", "one_of"]
