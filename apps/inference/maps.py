"""Array <-> file helpers of the stored prediction maps (no torch, safe to import from views)."""
from __future__ import annotations

import io

import numpy as np


def to_uint8(values: np.ndarray, rows: int = 1024) -> np.ndarray:
    """round(255 * clip(values, 0, 1)) as uint8, computed in row blocks (bounded temporaries)."""
    out = np.empty(values.shape, np.uint8)
    for y in range(0, values.shape[0], rows):
        out[y:y + rows] = np.round(np.clip(values[y:y + rows], 0.0, 1.0) * 255.0)
    return out


def foreground_uint8(probs: np.ndarray, rows: int = 1024) -> np.ndarray:
    """round(255 * (1 - p(background))) as uint8; channel 0 is the background class, in row blocks."""
    h = probs.shape[1]
    out = np.empty(probs.shape[1:], np.uint8)
    for y in range(0, h, rows):
        out[y:y + rows] = to_uint8(1.0 - np.asarray(probs[0, y:y + rows], np.float32))
    return out


def classes_from_probs(probs: np.ndarray, rows: int = 1024) -> np.ndarray:
    """Label class index of the argmax (channel k is class k + 1; 0 stays 'unlabelled'), uint8."""
    h = probs.shape[1]
    out = np.empty(probs.shape[1:], np.uint8)
    for y in range(0, h, rows):
        out[y:y + rows] = np.argmax(probs[:, y:y + rows], axis=0) + 1
    return out


def encode_tiff(mask: np.ndarray) -> bytes:
    """A label image as zlib-compressed TIFF (uint16, or uint32 when ids exceed 65535)."""
    import tifffile

    mask = np.asarray(mask)
    dtype = np.uint16 if mask.size == 0 or int(mask.max()) <= 65535 else np.uint32
    buf = io.BytesIO()
    tifffile.imwrite(buf, mask.astype(dtype, copy=False), compression="zlib")
    return buf.getvalue()
