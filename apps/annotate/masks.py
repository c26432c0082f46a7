"""Mask encoding: class masks as 8-bit grey PNG, instance masks as 16-bit grey PNG.

Instance ids above 65535 (rare: more than 65k objects in one image) are stored as a zlib-compressed
``.npy`` of uint32, marked by its magic bytes; ``decode_mask`` reads either.
"""
from __future__ import annotations

import io
import zlib

import numpy as np
from numpy.lib import format as npformat
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


class MaskError(ValueError):
    """The mask bytes cannot be accepted; ``too_large`` tells a size limit (413) from bad data (400)."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


#: Decompressed prefix read to find the .npy header (numpy writes headers of a few hundred bytes).
_NPY_HEADER_MAX = 16 * 1024


def _shape_problem(
        shape: tuple[int, ...], expected_shape: tuple[int, int] | None, max_pixels: int | None) -> MaskError | None:
    if len(shape) != 2:
        return MaskError(f"a mask must be 2-D, got shape {shape}")
    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
        return MaskError(f"mask is {shape[1]}x{shape[0]} but the image is {expected_shape[1]}x{expected_shape[0]}")
    pixels = int(shape[0]) * int(shape[1])
    if max_pixels is not None and pixels > max_pixels:
        return MaskError(f"the mask is {shape[1]}x{shape[0]} ({pixels} pixels), more than the limit of "
                         f"{max_pixels} pixels (LABSEG_MAX_MASK_PIXELS)", too_large=True)
    return None


def _inflate(d, data: bytes, limit: int) -> bytes:
    """Up to ``limit`` bytes more from the decompressor ``d`` (fed ``data``); MaskError when the stream would
    give more (a zlib bomb) or ends early (truncated)."""
    out = d.decompress(data, limit + 1)  # max_length: never more than limit + 1 bytes, the rest stays unconsumed
    if len(out) > limit or d.unconsumed_tail:
        raise MaskError("the compressed mask holds more data than its header declares", too_large=True)
    return out


def _decode_npy_zlib(payload: bytes, expected_shape, max_pixels) -> np.ndarray:
    """``LSNPYZ1`` payload -> array, read as a stream: the .npy header's shape is checked before any pixel
    buffer is allocated, and at most header + shape x itemsize bytes are ever decompressed."""
    d = zlib.decompressobj()
    try:
        head = d.decompress(payload, _NPY_HEADER_MAX)
        fh = io.BytesIO(head)
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
        else:
            raise MaskError(f"unsupported .npy version {version}")
    except MaskError:
        raise
    except (zlib.error, ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise MaskError(f"not a readable compressed mask: {exc}") from exc
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui" or dtype.itemsize > 4 or dtype.hasobject:
        raise MaskError(f"a compressed mask must hold integers of at most 32 bits, got {dtype}")
    problem = _shape_problem(tuple(shape), expected_shape, max_pixels)
    if problem is not None:
        raise problem
    offset = fh.tell()
    nbytes = int(shape[0]) * int(shape[1]) * dtype.itemsize  # 2-D: checked above
    got = head[offset:]
    if len(got) > nbytes:
        raise MaskError("the compressed mask holds more data than its header declares", too_large=True)
    body = bytearray(got)  # writable, so the array below is too
    try:
        body += _inflate(d, d.unconsumed_tail, nbytes - len(got))
    except zlib.error as exc:
        raise MaskError(f"not a readable compressed mask: {exc}") from exc
    if len(body) != nbytes or not d.eof:
        raise MaskError(f"the compressed mask is truncated ({len(body)} of {nbytes} bytes)")
    arr = np.frombuffer(body, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    if dtype.kind == "i" and arr.size and arr.min() < 0:
        raise MaskError("mask values must be >= 0")
    return np.ascontiguousarray(arr.astype(dtype.newbyteorder("="), copy=False))


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk (the first 24 bytes), or None if it is not a PNG."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_mask(data: bytes | memoryview | None, expected_shape: tuple[int, int] | None = None,
                max_pixels: int | None = None) -> np.ndarray | None:
    """Bytes from ``encode_png`` (or any 8/16-bit grey PNG) -> 2-D array (uint8, uint16 or uint32).

    With ``expected_shape`` ``(H, W)`` and/or ``max_pixels`` the declared size (the .npy header, the PNG
    header) is checked *before* anything is decompressed, so a small body cannot make the server allocate
    gigabytes; a refusal is a :class:`MaskError`.
    """
    if data is None:
        return None
    data = bytes(data)
    if not data:
        return None
    if data.startswith(NPY_ZLIB_MAGIC):
        return _decode_npy_zlib(data[len(NPY_ZLIB_MAGIC):], expected_shape, max_pixels)
    size = png_size(data)
    if size is not None:
        problem = _shape_problem((size[1], size[0]), expected_shape, max_pixels)
        if problem is not None:
            raise problem
    with PILImage.open(io.BytesIO(data)) as im:
        if size is None and (expected_shape is not None or max_pixels is not None):
            problem = _shape_problem((im.size[1], im.size[0]), expected_shape, max_pixels)
            if problem is not None:
                raise problem
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.int64)
            return arr.astype(np.uint16) if arr.max(initial=0) <= 65535 else arr.astype(np.uint32)
        if im.mode not in ("L", "P", "1"):
            raise ValueError(f"expected a grey PNG mask, got mode {im.mode}")
        return np.asarray(im.convert("L") if im.mode != "P" else im, dtype=np.uint8)


def annotation_arrays(annotation) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(classes uint8 (H, W) or None, instances uint16/uint32 (H, W) or None)`` of an Annotation row."""
    return decode_mask(annotation.classes_png), decode_mask(annotation.instances_png)
