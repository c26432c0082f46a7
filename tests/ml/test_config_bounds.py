"""Training options sent by users are bounded: a run that could never finish, a network that cannot fit in
memory or a number Python cannot make a float of is a ValueError (the API's 400), never an OverflowError
(a 500) and never a queued run.

These call ``labseg.ml.train.validate_config_overrides``, which applies ``labseg.ml.config_bounds``.
"""
from __future__ import annotations

import dataclasses
import json

import pytest

from labseg.ml.config_bounds import CONFIG_BOUNDS, MAX_RUN_SECONDS, bound_error
from labseg.ml.train import TrainConfig, validate_config_overrides


@pytest.mark.parametrize("overrides", [
    {"steps": 2**31},
    {"steps": 100_001},
    {"base_channels": 10**6},
    {"base_channels": 129},
    {"depth": 7},
    {"batch_size": 65},
    {"tile_output": 1025},
    {"max_seconds": MAX_RUN_SECONDS + 1},
    {"lr": 10.5},
    {"seed": -1},
    {"intensity_contrast": 1.0},
    {"bias_field": 2.5},
])
def test_values_above_the_bounds_are_a_value_error(overrides):
    (name, value), = overrides.items()
    with pytest.raises(ValueError, match=name):
        validate_config_overrides(overrides)


@pytest.mark.parametrize("name", ["steps", "base_channels", "lr", "max_seconds", "w0", "seed", "tile_output"])
@pytest.mark.parametrize("value", [10**400, -(10**400), json.loads("1e400"), json.loads("-1e400"), float("nan")],
                         ids=["10**400", "-10**400", "1e400", "-1e400", "nan"])
def test_huge_and_non_finite_numbers_are_a_value_error_not_an_overflow(name, value):
    with pytest.raises(ValueError, match=name) as info:
        validate_config_overrides({name: value})
    assert not isinstance(info.value, OverflowError)


@pytest.mark.parametrize("overrides", [
    {"steps": 100_000}, {"base_channels": 128}, {"depth": 6}, {"batch_size": 64}, {"tile_output": 1024},
    {"max_seconds": MAX_RUN_SECONDS}, {"lr": 10}, {"seed": 2**32 - 1}, {"steps": 1, "base_channels": 1},
])
def test_values_at_the_bounds_are_accepted(overrides):
    config = validate_config_overrides(overrides)
    for name, value in overrides.items():
        assert getattr(config, name) == value


def test_every_numeric_option_has_a_finite_range_that_holds_the_default():
    numeric = {f.name for f in dataclasses.fields(TrainConfig)
               if any(t in str(f.type) for t in ("int", "float")) and "bool" not in str(f.type)}
    assert numeric == set(CONFIG_BOUNDS)
    default = TrainConfig()
    for name, (lo, hi) in CONFIG_BOUNDS.items():
        assert lo <= hi and all(map(lambda v: v == v and abs(v) < float("inf"), (lo, hi)))
        value = getattr(default, name)
        assert value is None or lo <= value <= hi, name


def test_bound_error_compares_huge_ints_exactly():
    assert bound_error("steps", 100_000) is None
    assert "steps must be between 1 and 100000" in bound_error("steps", 10**400)
    assert "finite" in bound_error("lr", float("inf"))
    assert bound_error("optimizer", "adam") is None and bound_error("num_threads", None) is None
