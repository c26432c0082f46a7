"""Allowed ranges of the numeric ``TrainConfig`` fields (plain Python; no Django, no torch).

Every numeric option a user can send gets a finite, inclusive ``(min, max)`` range here, so no request
can ask for a run that could never finish (``steps`` 2**31), a network that cannot fit in memory
(``base_channels`` 10**6) or a number Python cannot turn into a float (10**400). Stricter rules that a
range cannot express (``lr > 0``, ``dropout < 1``, ``norm_low < norm_high``) stay in
``TrainConfig.validate``.

Use :func:`bound_error` (or the dict directly) while coercing the JSON value: it compares without
converting to float first, so a huge integer gives a clean message instead of an ``OverflowError``.
"""
from __future__ import annotations

import math
from typing import Any

#: A typical object's diameter (px) a lab may give (the project setting, ``--object-diameter``): under 4 px nothing
#: is split; over 1000 px no training crop holds one.
OBJECT_DIAMETER_BOUNDS = (4.0, 1000.0)

#: One week: longer than any run this app is meant for (the GPU queue serves one run at a time).
MAX_RUN_SECONDS = 7 * 24 * 3600

#: name -> (min, max), both inclusive. ``None`` values of optional fields are not checked here.
CONFIG_BOUNDS: dict[str, tuple[float, float]] = {
    # network
    "base_channels": (1, 128),
    "depth": (1, 6),
    "dropout": (0.0, 1.0),  # < 1 in TrainConfig.validate
    "num_classes": (2, 255),  # class masks are uint8
    # budget
    "steps": (1, 100_000),
    "max_seconds": (0.0, MAX_RUN_SECONDS),  # > 0 in TrainConfig.validate
    # data
    "batch_size": (1, 64),
    "tile_output": (1, 1024),
    "jitter": (0.0, 1.0),
    "norm_low": (0.0, 100.0),
    "norm_high": (0.0, 100.0),
    # optimisation
    "lr": (0.0, 10.0),  # > 0 in TrainConfig.validate
    "momentum": (0.0, 1.0),  # < 1 in TrainConfig.validate
    "weight_decay": (0.0, 1.0),
    "warmup_steps": (0, 100_000),
    # loss
    "w0": (0.0, 1000.0),
    "sigma": (0.0, 100.0),  # > 0 in TrainConfig.validate
    "crf_weight": (0.0, 1000.0),
    "crf_sigma": (0.0, 100.0),  # > 0 in TrainConfig.validate
    "crf_radius": (1, 64),
    # self-training
    "self_training": (0, 5),
    "pseudo_low": (0.0, 1.0),
    "pseudo_high": (0.0, 1.0),
    "pseudo_edge": (0, 50),
    "prior_weight": (0.0, 1.0),
    # augmentation
    "max_shift": (0, 1024),
    "elastic_grid": (2, 64),
    "elastic_sigma": (0.0, 1000.0),
    "intensity_contrast": (0.0, 1.0),  # < 1 in TrainConfig.validate
    "bias_field": (0.0, 2.0),  # factors exp(-2)..exp(2)
    # run
    "seed": (0, 2**32 - 1),  # numpy's legacy seeding and torch.manual_seed both take it
    "num_threads": (0, 1024),
    "log_every": (1, 100_000),
}


def bound_error(name: str, value: Any) -> str | None:
    """The message for a numeric ``value`` of option ``name`` outside its range (or not finite); None when
    it is fine or the option has no range. Never raises OverflowError: ints are compared as ints."""
    if name not in CONFIG_BOUNDS or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    lo, hi = CONFIG_BOUNDS[name]
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}"
    if not lo <= value <= hi:  # int vs int/float comparisons are exact in Python, even for 10**400
        small = isinstance(value, float) or abs(value) < 10**30
        shown = value if small else f"about 10**{int(abs(value).bit_length() * 0.30103)}"
        return f"{name} must be between {lo} and {hi}, got {shown}"
    return None


__all__ = ["CONFIG_BOUNDS", "MAX_RUN_SECONDS", "bound_error"]
