"""rlsedit.config: the one base of the project's configuration dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from rlsedit.config import (
    NON_NEGATIVE,
    POSITIVE_INT,
    THREADS,
    Config,
    ConfigError,
    between,
    increasing,
    one_of,
)


class ToyError(ConfigError):
    pass


@dataclass(frozen=True)
class Inner(Config):
    error = ToyError

    steps: int = 3
    rate: float = 0.5

    def validate(self) -> None:
        self.require(POSITIVE_INT, "steps")
        self.require(between(0.0, 1.0), "rate")


@dataclass(frozen=True)
class Outer(Config):
    error = ToyError

    name: str = "x"
    layers: tuple[int, ...] = (0,)
    sizes: tuple[tuple[int, int], ...] = ((2, 3),)
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    threads: int = 1

    def validate(self) -> None:
        self.require(one_of(("x", "y")), "name")
        self.require(increasing(0), "layers")
        self.require(THREADS, "threads")


def test_a_broken_rule_names_class_field_rule_and_value():
    with pytest.raises(ToyError, match=r"^Inner\.steps must be a positive integer, got 0$"):
        Inner(steps=0)
    with pytest.raises(ToyError, match=r"Inner\.rate must be a number in \[0\.0, 1\.0\], got 1\.5"):
        Inner(rate=1.5)
    with pytest.raises(ToyError, match=r"Outer\.layers must be a non-empty, strictly increasing"):
        Outer(layers=(2, 1))
    with pytest.raises(ToyError, match="threads"):
        Outer(threads=100_000)
    assert issubclass(ToyError, ValueError)


def test_bool_is_not_an_integer_and_nan_is_not_a_number():
    with pytest.raises(ToyError, match="steps"):
        Inner(steps=True)

    @dataclass(frozen=True)
    class Weight(Config):
        x: float = 0.0

        def validate(self) -> None:
            self.require(NON_NEGATIVE, "x")

    for bad in (float("nan"), float("inf"), -1e-9, "1"):
        with pytest.raises(ConfigError, match=r"Weight\.x must be a finite number >= 0"):
            Weight(x=bad)
    assert Weight(x=0).x == 0


def test_from_dict_builds_nested_configs_and_tuples_and_round_trips_through_json():
    data = {"name": "y", "layers": [1, 2], "sizes": [[4, 5], [6, 7]], "inner": {"steps": 9}, "maybe": {"rate": 0.1}}
    cfg = Outer.from_dict(data)
    assert cfg.layers == (1, 2) and cfg.sizes == ((4, 5), (6, 7)) and cfg.inner == Inner(steps=9)
    assert cfg.maybe == Inner(rate=0.1)
    assert Outer.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.to_dict()["sizes"] == [[4, 5], [6, 7]] and cfg.to_dict()["inner"] == {"steps": 9, "rate": 0.5}


def test_unknown_fields_and_nested_errors_are_refused_by_name():
    with pytest.raises(ToyError, match=r"Outer: unknown option\(s\) \['nope'\]"):
        Outer.from_dict({"nope": 1})
    with pytest.raises(ToyError, match=r"Inner: unknown option\(s\) \['stepz'\]"):
        Outer.from_dict({"inner": {"stepz": 1}})
    with pytest.raises(ToyError, match=r"Inner\.steps must be a positive integer"):
        Outer.from_dict({"inner": {"steps": -1}})
    with pytest.raises(ToyError, match="expected a JSON object"):
        Outer.from_dict([1, 2])


def test_replace_validates_again(tmp_path):
    cfg = Outer()
    with pytest.raises(ToyError, match="name"):
        cfg.replace(name="z")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.replace(name="y").to_dict()))
    assert Outer.from_json(path) == cfg.replace(name="y")
    path.write_text("{")
    with pytest.raises(ToyError, match="cannot read"):
        Outer.from_json(path)


def test_a_config_whose_rules_are_skipped_would_be_caught():
    """The mutant: a subclass that forgets to call the base's __post_init__ accepts a bad value; the
    base class is what refuses it."""

    @dataclass(frozen=True)
    class Skips(Inner):
        def __post_init__(self) -> None:  # the broken implementation
            pass

    assert Skips(steps=0).steps == 0
    with pytest.raises(ToyError):
        Inner(steps=0)


def test_merge_applies_overrides_like_from_dict():
    cfg = Outer().merge({"layers": [3, 4], "inner": {"steps": 2}})
    assert cfg == Outer(layers=(3, 4), inner=Inner(steps=2))
    with pytest.raises(ToyError, match=r"Outer: unknown option\(s\) \['zzz'\]"):
        Outer().merge({"zzz": 1})
    with pytest.raises(ToyError, match="name"):
        Outer().merge({"name": "q"})
