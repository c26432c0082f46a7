"""Parsing of the display query (channels, display range, region, level) shared by every endpoint that
renders a region of an image or of a map: the image display and the prediction / overlay maps."""
from __future__ import annotations

import re

import numpy as np
from rest_framework.exceptions import ValidationError

#: The most pixels one rendering may have (ask for a higher level or a smaller region beyond it).
MAX_DISPLAY_PIXELS = 4096 * 4096


def _floats(raw: str | None, name: str, n: int) -> list[float] | None:
    """``"5"`` or ``"5,6,7"`` -> n floats (a single value applies to every selected channel)."""
    if raw in (None, ""):
        return None
    try:
        values = [float(v) for v in raw.split(",")]
    except ValueError as exc:
        raise ValidationError({name: f"expected a number or a comma list of numbers, got {raw!r}"}) from exc
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(np.isfinite(values)):
        raise ValidationError({name: f"expected 1 or {n} finite numbers"})
    return values


def _ints(raw: str, name: str) -> list[int]:
    """Comma list of ASCII integers (``int()`` alone would take "٣" and "1_0"; ``isdigit()`` passes "²")."""
    if not all(re.fullmatch(r"-?[0-9]{1,18}", v) for v in raw.split(",")):
        raise ValidationError({name: f"expected integers separated by commas, got {raw[:40]!r}"})
    return [int(v) for v in raw.split(",")]


def parse_display_params(query, channels: int, width: int, height: int) -> dict:
    """Validate display.png's query -> {channels, lo, hi, x, y, w, h, level}."""
    chans = _ints(query["channel"], "channel") if query.get("channel") not in (None, "") else None
    if chans is not None and (not chans or any(c < 0 or c >= channels for c in chans) or len(set(chans)) != len(chans)):
        raise ValidationError({"channel": f"channel indices must be distinct, in 0..{channels - 1}"})
    if chans is None:
        chans = list(range(min(channels, 3)))
    if query.get("region"):
        region = _ints(query["region"], "region")
        if len(region) != 4:
            raise ValidationError({"region": "expected x,y,w,h"})
    else:
        raw = [str(query.get(k) or d) for k, d in (("x", 0), ("y", 0), ("w", width), ("h", height))]
        if not all(re.fullmatch(r"-?[0-9]{1,18}", v) for v in raw):
            raise ValidationError({"region": "x, y, w and h must be integers"})
        region = [int(v) for v in raw]
    x, y, w, h = region
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValidationError({"region": f"region {x},{y},{w},{h} is not inside the {width}x{height} image"})
    level_raw = query.get("level") or "0"
    if not re.fullmatch(r"[0-9]{1,2}", level_raw) or int(level_raw) > 16:
        raise ValidationError({"level": "level must be an integer 0..16 (downscale by 2**level)"})
    level = int(level_raw)
    step = 2 ** level
    out_pixels = -(-w // step) * -(-h // step)
    if out_pixels > MAX_DISPLAY_PIXELS:
        raise ValidationError({"level": f"the rendering would have {out_pixels} pixels; ask for a smaller region "
                                        f"or a higher level (at most {MAX_DISPLAY_PIXELS} pixels)"})
    lo = _floats(query.get("min"), "min", len(chans))
    hi = _floats(query.get("max"), "max", len(chans))
    return {"channels": chans, "lo": lo, "hi": hi, "x": x, "y": y, "w": w, "h": h, "level": level}
