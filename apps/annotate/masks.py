"""Mask encoding: class masks as 8-bit grey PNG, instance masks as 16-bit grey PNG.

Instance ids above 65535 (rare: more than 65k objects in one image) are stored as a zlib-compressed
``.npy`` of uint32, marked by its magic bytes; ``decode_mask`` reads either.
"""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image as PILImage

NPY_ZLIB_MAGIC = b"LSNPYZ1"


def encode_png(mask: np.ndarray) -> bytes:
    """uint8 -> 8-bit grey PNG; uint16/uint32/int with max <= 65535 -> 16-bit grey PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    buf = io.BytesIO()
    if mask.dtype == np.uint8:
        PILImage.fromarray(mask, mode="L").save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue()
    if mask.size and (mask.min() < 0):
        raise ValueError("mask values must be >= 0")
    if mask.size and mask.max() > 65535:
        payload = io.BytesIO()
        np.save(payload, mask.astype(np.uint32), allow_pickle=False)
        return NPY_ZLIB_MAGIC + zlib.compress(payload.getvalue(), 6)
    PILImage.fromarray(mask.astype(np.uint16)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_mask(data: bytes | memoryview | None) -> np.ndarray | None:
    """Bytes from ``encode_png`` (or any 8/16-bit grey PNG) -> 2-D array (uint8, uint16 or uint32)."""
    if data is None:
        return None
    data = bytes(data)
    if not data:
        return None
    if data.startswith(NPY_ZLIB_MAGIC):
        return np.load(io.BytesIO(zlib.decompress(data[len(NPY_ZLIB_MAGIC):])), allow_pickle=False)
    with PILImage.open(io.BytesIO(data)) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.int64)
            return arr.astype(np.uint16) if arr.max(initial=0) <= 65535 else arr.astype(np.uint32)
        if im.mode not in ("L", "P", "1"):
            raise ValueError(f"expected a grey PNG mask, got mode {im.mode}")
        return np.asarray(im.convert("L") if im.mode != "P" else im, dtype=np.uint8)


def annotation_arrays(annotation) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(classes uint8 (H, W) or None, instances uint16/uint32 (H, W) or None)`` of an Annotation row."""
    return decode_mask(annotation.classes_png), decode_mask(annotation.instances_png)
