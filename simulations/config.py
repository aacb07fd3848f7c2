"""Building an experiment's frozen config from its preset, a JSON file and ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any


def _coerce(tp: Any, text: str, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(inner, part.strip(), name) for part in text.split(",") if part.strip())
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null", ""):
            return None
        return _coerce(args[0], text, name)
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {text!r}")
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    return text


def parse_sets(cls: type, sets: list[str] | None) -> dict[str, Any]:
    """``["d_k=64", "kinds=isotropic,powerlaw"]`` -> typed overrides for dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in hints:
            raise ValueError(f"{cls.__name__} has no option {key!r}; options: {sorted(hints)}")
        out[key] = _coerce(hints[key], text.strip(), key)
    return out


def build_config(cls: type, *, quick: bool, file: str | Path | None = None, sets: list[str] | None = None) -> Any:
    """The preset (``cls.quick()`` or ``cls()``), then the JSON file's fields, then ``--set`` overrides.

    Each step is :meth:`rlsedit.config.Config.merge`: unknown fields are refused by name, lists
    become tuples, and the result is validated.
    """
    config = cls.quick() if quick else cls()
    if file is not None:
        data = json.loads(Path(file).read_text())
        data.pop("experiment", None)
        config = config.merge(data)
    return config.merge(parse_sets(cls, sets))


def config_dict(name: str, config: Any) -> dict[str, Any]:
    """What ``config.json`` holds: the experiment's name and every field of its config."""
    return {"experiment": name, **dataclasses.asdict(config)}
