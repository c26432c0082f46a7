"""Read stored prediction maps and render them for the browser: regions, downscale levels, colours.

Region parameters are the image display endpoint's: ``region=x,y,w,h`` (or ``x``, ``y``, ``w``, ``h``;
pixels of the full image, default the whole image) and ``level`` (downscale by ``2**level``, nearest
neighbour so labels stay labels). Bad values answer 400.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from apps.annotate.display import parse_display_params


@dataclass(frozen=True)
class Region:
    x: int
    y: int
    w: int
    h: int
    level: int = 0

    @property
    def step(self) -> int:
        return 2**self.level

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Crop ``array`` (H, W[, ...]) to the region and take every ``2**level``-th pixel."""
        return array[self.y:self.y + self.h:self.step, self.x:self.x + self.w:self.step]


def parse_region(params, width: int, height: int) -> Region:
    """The region asked for in the query ``params`` (``region=x,y,w,h`` or ``x``, ``y``, ``w``, ``h``, and
    ``level``), validated exactly as the image display endpoint does (400 on bad values)."""
    p = parse_display_params(params, 1, width, height)
    return Region(p["x"], p["y"], p["w"], p["h"], p["level"])


def read_map(path: str) -> np.ndarray:
    """A stored map (8-bit PNG or label TIFF) as a 2-D array; decoded once, then memory-mapped from a
    ``.cache.npy`` beside it, so region requests on a big image do not decode the whole file each time."""
    from labseg.ml.io import open_array

    return open_array(path, cache_path=f"{path}.cache.npy")[0]


def png_response_bytes(array: np.ndarray) -> bytes:
    """uint8 (H, W) grey or (H, W, 3|4) colour -> PNG bytes."""
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def grey_to_colour(values: np.ndarray) -> np.ndarray:
    """uint8 grey -> RGB with a perceptually ordered 'magma'-like ramp (dark purple -> bright yellow)."""
    stops = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], np.float32)
    pos = values.astype(np.float32) / 255.0 * (len(stops) - 1)
    i = np.clip(pos.astype(np.int32), 0, len(stops) - 2)
    t = (pos - i)[..., None]
    return np.round(stops[i] * (1 - t) + stops[i + 1] * t).astype(np.uint8)


def normalise_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a non-negative float map to 0..255 by its maximum (all zero stays zero)."""
    values = np.asarray(values, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    if top <= 0:
        return np.zeros(values.shape, np.uint8)
    return np.round(np.clip(values / top, 0, 1) * 255).astype(np.uint8)


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    c = (colour or "#00ff00").lstrip("#")
    try:
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    except (ValueError, IndexError):
        return 0, 255, 0


def classes_rgba(classes: np.ndarray, project) -> np.ndarray:
    """Class mask -> RGBA in the project's label colours; background (1) and unlabelled (0) transparent."""
    lut = np.zeros((256, 4), np.uint8)
    for index, colour in project.label_classes.values_list("index", "color"):
        if index > 1:
            lut[index] = (*_hex_rgb(colour), 255)
    return lut[classes]


def outline_mask(instances: np.ndarray) -> np.ndarray:
    """True on object pixels with a 4-neighbour of another id (touching borders and object edges)."""
    inst = np.asarray(instances)
    edge = np.zeros(inst.shape, bool)
    diff_v = inst[1:, :] != inst[:-1, :]
    diff_h = inst[:, 1:] != inst[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge & (inst > 0)


def outlines_rgba(instances: np.ndarray, colour: tuple[int, int, int] = (255, 230, 0)) -> np.ndarray:
    """Instance outlines as opaque yellow on a transparent RGBA image."""
    out = np.zeros((*instances.shape, 4), np.uint8)
    out[outline_mask(instances)] = (*colour, 255)
    return out


def ramp_rgba(values: np.ndarray) -> np.ndarray:
    """uint8 map -> RGBA: colour ramp, alpha = value (zero stays transparent)."""
    return np.concatenate([grey_to_colour(values), values[..., None]], axis=-1)
