"""Reading and normalising microscopy images (plain numpy; no Django).

One entry point for every caller (upload, training, inference, the viewer)::

    image = read_image("cells.tif")        # (C, H, W) in the file's own dtype
    x = normalize(image)                    # float32 (C, H, W), per-channel percentiles -> ~[0, 1]

Supported: TIFF 8/16/32-bit with 1..N channels (plain, ImageJ hyperstacks, OME-TIFF, CYX or YXC/RGB),
PNG (grey, 16-bit grey, RGB, RGBA -> RGB), JPEG. Channel, Y and X axes are found from tifffile's
series axes; singleton T/Z axes are squeezed; for Z > 1 or T > 1 the first plane is taken and
``image_info`` says so (``planes``). Unreadable input raises :class:`ImageReadError` with a clear message.
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

PathOrFile = str | os.PathLike | IO[bytes]

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

#: Axes tifffile uses for a plane's rows/columns, for channels (C) and RGB samples (S).
_SPATIAL = ("Y", "X")
_CHANNEL = ("C", "S")
#: Axes where only the first plane is used (stacks over time / depth / anything else).
_PLANE = ("T", "Z")

# Images larger than this are subsampled (regular stride) for display-range percentiles.
_RANGE_SAMPLE_PIXELS = 4_000_000


class ImageReadError(ValueError):
    """The file is empty, truncated, not an image, or an image layout we cannot read."""


class ImageTooLargeError(ImageReadError):
    """The image's header declares more pixels than the caller's budget (nothing was decoded)."""


def check_pixel_budget(shape: tuple[int, ...] | list[int], max_pixels: int | None, what: str = "the image") -> int:
    """The number of values an array of ``shape`` holds; :class:`ImageTooLargeError` when it is more than
    ``max_pixels`` (``None``: no limit). Pure: callers pass the shape they are about to decode (from a
    header) and their limit, so a tiny compressed file that declares a huge image is refused before a
    single pixel is allocated."""
    if any(int(n) < 0 for n in shape):
        raise ImageReadError(f"{what} declares a negative size {tuple(shape)}")
    total = 1
    for n in shape:
        total *= int(n)  # Python ints: no overflow however large the header's numbers are
    if max_pixels is not None and total > max_pixels:
        dims = " x ".join(str(int(n)) for n in shape)
        raise ImageTooLargeError(f"{what} is {dims} = {total} pixel values, more than the limit of {max_pixels}")
    return total


@dataclass(frozen=True)
class _TiffPlan:
    """How to turn a tifffile series (``axes``, ``shape``) into (C, H, W)."""

    index: tuple  # per source axis: slice(None) to keep, 0 to take the first plane
    kept_axes: str  # source axes kept, in source order
    channel_axes: str  # the kept axes that make up C (merged in this order)
    planes: dict[str, int]  # non-singleton axes of which only the first plane is used


def _relabel_yxc(axes: str, shape: tuple[int, ...]) -> str:
    """A YXC array saved without metadata shows as ``QYX`` with a tiny X (the channels): relabel it."""
    if (len(axes) >= 3 and axes.endswith("YX") and axes[-3] not in _SPATIAL + _CHANNEL + _PLANE
            and shape[-1] <= 8 and shape[-2] > 8 and shape[-3] > 8):
        return axes[:-3] + "YXC"
    return axes


def _plan_tiff(axes: str, shape: tuple[int, ...]) -> _TiffPlan:
    """Decide which series axes are Y, X and channels; everything else gives its first plane."""
    axes = _relabel_yxc(axes.upper(), tuple(shape))
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"TIFF series has no Y/X axes (axes {axes!r}, shape {shape})")
    sizes = dict(zip(axes, shape))
    channel = [a for a in axes if a in _CHANNEL and sizes[a] > 1]
    if not channel:
        # Unnamed axes (tifffile's Q, I, E, ...) stand for channels when nothing else does: a CYX
        # stack written without metadata shows as QYX, a YX2 array as YXQ.
        unknown = [a for a in axes if a not in _SPATIAL + _CHANNEL + _PLANE and sizes[a] > 1]
        channel = unknown[:1]
    index, kept, planes = [], "", {}
    for a in axes:
        if a in _SPATIAL or a in channel:
            index.append(slice(None))
            kept += a
        else:
            index.append(0)
            if sizes[a] > 1:
                planes[a] = sizes[a]
    return _TiffPlan(tuple(index), kept, "".join(channel), planes)


def _to_cyx(arr: np.ndarray, plan: _TiffPlan) -> np.ndarray:
    """Apply a plan to the full series array -> (C, H, W), C merged from the channel axes."""
    arr = arr[plan.index]
    order = [plan.kept_axes.index(a) for a in (*plan.channel_axes, "Y", "X")]
    arr = np.transpose(arr, order)
    h, w = arr.shape[-2:]
    return np.ascontiguousarray(arr.reshape((-1, h, w)))


def _fix_dtype(arr: np.ndarray) -> np.ndarray:
    """Bilevel images become uint8 {0, 1}; big-endian data becomes native; float64 stays float64."""
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.byteorder not in ("=", "|"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _open_source(src: PathOrFile) -> tuple[Any, bytes]:
    """-> (something tifffile/PIL can open, its first 16 bytes). Django uploads are accepted too."""
    if hasattr(src, "temporary_file_path"):  # Django TemporaryUploadedFile: use the file on disk
        src = src.temporary_file_path()
    if isinstance(src, (str, os.PathLike)):
        try:
            with open(src, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise ImageReadError(f"cannot open {os.fspath(src)!r}: {exc.strerror or exc}") from exc
        return os.fspath(src), head
    if hasattr(src, "open") and getattr(src, "closed", False):  # a closed Django File
        src.open("rb")
    try:
        src.seek(0)
        head = src.read(16)
        src.seek(0)
    except (AttributeError, OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read the upload: {exc}") from exc
    if isinstance(head, str):
        raise ImageReadError("the file was opened in text mode; open it in binary mode ('rb')")
    return src, head


def _kind(head: bytes) -> str:
    if not head:
        raise ImageReadError("the file is empty")
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    raise ImageReadError("not a TIFF, PNG or JPEG image (unrecognised file signature)")


def _tiff_series(tf) -> Any:
    if not tf.series:
        raise ImageReadError("the TIFF file contains no image data")
    return tf.series[0]  # OME pyramids: level 0 is the full resolution


def _decoded_shape(series, plan: _TiffPlan) -> tuple[int, ...]:
    """The shape :func:`_read_tiff` will decode: the kept axes (first plane, all channels) when the pages
    map onto the series axes, else the whole series (see :func:`_read_first_planes`)."""
    shape = tuple(int(n) for n in series.shape)
    if plan.planes:
        page_shape = tuple(series.keyframe.shape)
        nlead = len(shape) - len(page_shape)
        if nlead <= 0 or shape[nlead:] != page_shape:
            return shape
    return tuple(n for n, idx in zip(shape, plan.index) if isinstance(idx, slice))


@contextmanager
def _open_tiff(src: Any) -> Iterator[tuple[Any, Any, _TiffPlan]]:
    """``(TiffFile, its series, the plan of its axes)`` with tifffile's warnings silenced. Whatever goes wrong
    inside (tifffile and imagecodecs raise many types on corrupt data: ValueError, struct.error, ...) becomes
    an :class:`ImageReadError`; our own errors pass through."""
    import tifffile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(src) as tf:
                series = _tiff_series(tf)
                yield tf, series, _plan_tiff(series.axes, series.shape)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot read the TIFF file (truncated or corrupt?): {exc}") from exc


def _read_tiff(src: Any, max_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    with _open_tiff(src) as (tf, series, plan):
        # From the header only: refuse before tifffile allocates the output array.
        check_pixel_budget(_decoded_shape(series, plan), max_pixels, "the TIFF image")
        if plan.planes:
            # Only the first plane along T/Z/...: read the pages that hold it, not the whole stack.
            arr = _read_first_planes(tf, series, plan)
        else:
            arr = _to_cyx(series.asarray(), plan)
    return _fix_dtype(arr), {"planes": plan.planes}


def _read_first_planes(tf, series, plan: _TiffPlan) -> np.ndarray:
    """Read a hyperstack's first T/Z plane (all channels) -> (C, H, W), decoding only the pages needed."""
    page_shape = tuple(series.keyframe.shape)
    nlead = len(series.shape) - len(page_shape)
    if nlead <= 0 or tuple(series.shape[nlead:]) != page_shape:
        return _to_cyx(series.asarray(), plan)  # pages do not map onto the series axes: read it all
    lead_shape = tuple(series.shape[:nlead])
    grids = [range(n) if isinstance(idx, slice) else [0] for n, idx in zip(lead_shape, plan.index[:nlead])]
    keys = [int(np.ravel_multi_index(t, lead_shape)) for t in itertools.product(*grids)]
    arr = tf.asarray(key=keys, series=0)
    arr = arr.reshape(tuple(len(g) for g in grids) + page_shape)  # the skipped axes now have length 1
    return _to_cyx(arr, plan)


def _pil_to_cyx(im) -> np.ndarray:
    """PIL image -> (C, H, W) in its own dtype. RGBA/LA drop alpha; palette/CMYK become RGB."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(im, dtype=np.int64)
        arr = arr.astype(np.uint16) if arr.size and arr.min() >= 0 and arr.max() <= 65535 else arr.astype(np.int32)
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)
    elif mode == "1":
        arr = np.asarray(im.convert("L"), dtype=np.uint8)
    elif mode in ("L", "RGB"):
        arr = np.asarray(im)
    elif mode == "LA":
        arr = np.asarray(im.getchannel(0))
    elif mode == "P" and im.palette is not None and im.palette.mode == "L":
        arr = np.asarray(im.convert("L"))
    else:  # RGBA, P, CMYK, YCbCr, ...
        arr = np.asarray(im.convert("RGB"))
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(arr)


def _read_pil(src: Any, kind: str, max_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(src) as im:  # reads the header only
            w, h = im.size
            check_pixel_budget((len(im.getbands()), h, w), max_pixels, f"the {kind.upper()} image")
            im.load()  # decode now, so truncated data fails here
            arr = _pil_to_cyx(im)
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read the {kind.upper()} file (truncated or corrupt?): {exc}") from exc
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLargeError(f"the {kind.upper()} image is too large to decode: {exc}") from exc
    return arr, {"planes": {}}


def read_image_with_info(src: PathOrFile, max_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    """``(image (C, H, W), {"format", "planes"})``; see :func:`read_image`.

    ``max_pixels``: the most values (channels x height x width of what gets decoded) the caller accepts;
    a larger image raises :class:`ImageTooLargeError`, decided from the header before decoding.
    """
    src, head = _open_source(src)
    kind = _kind(head)
    arr, extra = _read_tiff(src, max_pixels) if kind == "tiff" else _read_pil(src, kind, max_pixels)
    if arr.ndim != 3 or arr.shape[1] == 0 or arr.shape[2] == 0 or arr.shape[0] == 0:
        raise ImageReadError(f"the image has an empty shape {arr.shape}")
    return arr, {"format": kind, **extra}


def read_image(src: PathOrFile) -> np.ndarray:
    """Read a TIFF/PNG/JPEG file (path or binary file object) -> ndarray (C, H, W), original dtype.

    For stacks with Z > 1 or T > 1 only the first plane is returned (``image_info`` reports the
    skipped axes under ``planes``). Raises :class:`ImageReadError` for empty, truncated or non-image data.
    """
    return read_image_with_info(src)[0]


def image_info(src: PathOrFile) -> dict:
    """``{"width", "height", "channels", "dtype", "format", "planes"}`` without decoding the pixels.

    TIFF: from the series' axes and shape; PNG/JPEG: from the header. ``planes`` maps stack axes
    (e.g. ``"Z"``) to their length when only the first plane is used. Raises :class:`ImageReadError`.
    """
    src, head = _open_source(src)
    kind = _kind(head)
    if kind == "tiff":
        with _open_tiff(src) as (_, series, plan):
            axes, shape, dtype = series.axes, tuple(series.shape), np.dtype(series.dtype)
        sizes = dict(zip(_relabel_yxc(axes.upper(), shape), shape))
        channels = int(np.prod([sizes[a] for a in plan.channel_axes])) if plan.channel_axes else 1
        if dtype == np.bool_:  # a numpy dtype compared with a scalar type, not a type identity test
            dtype = np.dtype(np.uint8)
        return {"width": int(sizes["X"]), "height": int(sizes["Y"]), "channels": channels,
                "dtype": dtype.newbyteorder("=").name, "format": "tiff", "planes": plan.planes}
    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(src) as im:
            w, h = im.size
            # The header tells the mode; decode a 1x1 crop only to learn the dtype/channel count.
            sample = _pil_to_cyx(im.crop((0, 0, 1, 1)))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read the {kind.upper()} file (truncated or corrupt?): {exc}") from exc
    return {"width": int(w), "height": int(h), "channels": int(sample.shape[0]), "dtype": sample.dtype.name,
            "format": kind, "planes": {}}


@dataclass(frozen=True)
class ImageHeader:
    """What decoding an image will give, learnt from its header without decoding a pixel."""

    format: str  # "tiff", "png" or "jpeg"
    shape: tuple[int, int, int]  # (C, H, W), as read_image returns it
    dtype: np.dtype  # native byte order; bilevel TIFFs give uint8
    planes: dict[str, int]  # stack axes of which only the first plane is used
    mappable: bool  # an uncompressed contiguous TIFF: open_array maps it in place, no cache is written

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded (C, H, W) array, which is also the size of its ``.npy`` cache (plus a header)."""
        c, h, w = self.shape
        return c * h * w * self.dtype.itemsize


def _tiff_mappable(series, plan: _TiffPlan) -> bool:
    """Whether :func:`_tiff_memmap` maps the series in place: uncompressed, contiguous, and at most one
    channel axis (merged C x S axes would need a copy)."""
    return series.dataoffset is not None and series.dtype is not None and len(plan.channel_axes) <= 1


def read_header(src: PathOrFile, max_pixels: int | None = None) -> ImageHeader:
    """The :class:`ImageHeader` of a TIFF/PNG/JPEG, from its header only.

    ``max_pixels`` is checked as :func:`read_image_with_info` checks it (so a header that passes here
    decodes within the same budget); :class:`ImageTooLargeError` / :class:`ImageReadError` otherwise.
    """
    src, head = _open_source(src)
    kind = _kind(head)
    if kind != "tiff":
        from PIL import Image as PILImage, UnidentifiedImageError

        try:
            with PILImage.open(src) as im:  # the header; then a 1x1 crop tells the dtype and channel count
                w, h = im.size
                check_pixel_budget((len(im.getbands()), h, w), max_pixels, f"the {kind.upper()} image")
                sample = _pil_to_cyx(im.crop((0, 0, 1, 1)))
        except ImageReadError:
            raise
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise ImageReadError(f"cannot read the {kind.upper()} file (truncated or corrupt?): {exc}") from exc
        except PILImage.DecompressionBombError as exc:
            raise ImageTooLargeError(f"the {kind.upper()} image is too large to decode: {exc}") from exc
        if w == 0 or h == 0:
            raise ImageReadError(f"the image has an empty shape {(sample.shape[0], h, w)}")
        return ImageHeader(kind, (int(sample.shape[0]), int(h), int(w)), sample.dtype, {}, False)
    with _open_tiff(src) as (_, series, plan):
        check_pixel_budget(_decoded_shape(series, plan), max_pixels, "the TIFF image")
        shape = _tiff_cyx_shape(series, plan)
        if series.dtype is None:
            raise ImageReadError("the TIFF's sample format is not supported")
        dtype = np.dtype(series.dtype)
        mappable = _tiff_mappable(series, plan)
    if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
        raise ImageReadError(f"the image has an empty shape {shape}")
    dtype = np.dtype(np.uint8) if dtype == np.bool_ else dtype.newbyteorder("=")
    return ImageHeader("tiff", shape, dtype, plan.planes, mappable)


def _tiff_cyx_shape(series, plan: _TiffPlan) -> tuple[int, int, int]:
    sizes = dict(zip(_relabel_yxc(series.axes.upper(), tuple(series.shape)), series.shape))
    channels = 1
    for a in plan.channel_axes:
        channels *= int(sizes[a])
    return channels, int(sizes["Y"]), int(sizes["X"])


# --- decoding a TIFF segment by segment into a (C, H, W) array (a memory-mapped .npy) ----------------
#: Raw (compressed) bytes tifffile reads from the file in one pass while streaming segments.
_STREAM_READ_BYTES = 1024**2
#: Storage dimension of each page axis in tifffile's normalised page shape
#: (separate sample, depth, length, width, contig sample); "S" depends on the planar configuration.
_PAGE_DIM = {"Z": 1, "Y": 2, "X": 3}


@dataclass(frozen=True)
class _SegmentLayout:
    """Where the decoded segments of a series go in the (C, H, W) output."""

    pages: list  # (page, {"Y"|"X"|"C": fixed output coordinate / channel offset}) for every page read
    roles: tuple  # per storage dimension (0..4): "Y", "X", "C", "P" (first plane only) or None (length 1)
    channel_stride: int  # output channels between neighbours along the storage dimension whose role is "C"


def _segment_layout(series, plan: _TiffPlan) -> _SegmentLayout | None:
    """Map the pages and segments of ``series`` onto the (C, H, W) output of :func:`_read_tiff`, or None
    when the pages do not map onto the series axes (then the caller decodes the plane as a whole)."""
    shape = tuple(int(n) for n in series.shape)
    axes = _relabel_yxc(series.axes.upper(), shape)
    keyframe = series.keyframe
    page_shape, page_axes = tuple(int(n) for n in keyframe.shape), str(keyframe.axes)
    nlead = len(shape) - len(page_shape)
    if nlead < 0 or shape[nlead:] != page_shape or len(page_axes) != len(page_shape):
        return None
    role_of = {}
    for pos, a in enumerate(axes):
        role_of[pos] = "Y" if a == "Y" else "X" if a == "X" else "C" if a in plan.channel_axes else "P"
    # channel strides: the channel axes merge in series order, the last one fastest (as _to_cyx reshapes)
    stride, strides = 1, {}
    for pos in reversed(range(len(axes))):
        if role_of[pos] == "C":
            strides[pos] = stride
            stride *= shape[pos]
    roles: list = [None] * 5
    channel_stride = 1
    for j, a in enumerate(page_axes):
        if a == "S":
            dim = 0 if int(keyframe.planarconfig) == 2 else 4
        elif a in _PAGE_DIM:
            dim = _PAGE_DIM[a]
        else:
            return None
        if roles[dim] is not None:
            return None
        roles[dim] = role_of[nlead + j]
        if roles[dim] == "C":
            channel_stride = strides[nlead + j]
    if roles.count("C") > 1 or roles.count("Y") > 1 or roles.count("X") > 1:
        return None
    lead_shape = shape[:nlead]
    if len(series) != int(np.prod(lead_shape, dtype=np.int64)):
        return None  # e.g. an ImageJ file whose planes follow its first page without IFDs of their own
    grids = [range(n) if role_of[pos] != "P" else [0] for pos, n in enumerate(lead_shape)]
    pages = []
    for coords in itertools.product(*grids):
        key = int(np.ravel_multi_index(coords, lead_shape)) if lead_shape else 0
        page = series[key] if lead_shape else series[0]
        if page is None:
            return None
        fixed = {"Y": 0, "X": 0, "C": 0}
        for pos, c in enumerate(coords):
            role = role_of[pos]
            if role == "C":
                fixed["C"] += c * strides[pos]
            elif role in ("Y", "X"):
                fixed[role] = c
        pages.append((page, fixed))
    return _SegmentLayout(pages, tuple(roles), channel_stride)


def _write_segment(out: np.ndarray, layout: _SegmentLayout, fixed: dict, keyframe, result) -> None:
    """Copy one decoded tile/strip (tifffile's ``segments()`` item) into ``out`` (C, H, W)."""
    segment, (s, d, h, w, _), seg_shape = result
    depth, length, width = keyframe.imagedepth, keyframe.imagelength, keyframe.imagewidth
    if segment is None:  # an empty tile: tifffile fills it with the no-data value
        dims = (min(seg_shape[0], depth - d), min(seg_shape[1], length - h), min(seg_shape[2], width - w),
                keyframe.shaped[4])
        segment = np.full(dims, keyframe.nodata, dtype=out.dtype)
    else:
        segment = segment[: depth - d, : length - h, : width - w]
    block = np.asarray(segment)[None]  # (separate sample, depth, length, width, contig sample)
    start = (s, d, h, w, 0)
    index = []
    for dim, role in enumerate(layout.roles):
        if role == "P":
            if start[dim] > 0:
                return  # a later plane of a stack axis: not read
            index.append(slice(0, 1))
        else:
            index.append(slice(None))
    block = block[tuple(index)]
    order = [layout.roles.index(r) for r in ("C", "Y", "X") if r in layout.roles]
    block = np.transpose(block, order + [k for k in range(5) if k not in order])

    def span(role: str) -> tuple[int, int]:
        if role in layout.roles:
            dim = layout.roles.index(role)
            return start[dim], block.shape[order.index(dim)]
        return 0, 1

    (c0, nc), (y0, ny), (x0, nx) = span("C"), span("Y"), span("X")
    block = block.reshape(nc, ny, nx)
    cs = layout.channel_stride
    first = fixed["C"] + c0 * cs
    y0, x0 = y0 + fixed["Y"], x0 + fixed["X"]
    out[first: first + (nc - 1) * cs + 1: cs, y0: y0 + ny, x0: x0 + nx] = block


def _stream_tiff(tf, series, plan: _TiffPlan, out: np.ndarray) -> bool:
    """Decode the plane :func:`_read_tiff` returns into ``out`` (C, H, W) one tile or strip at a time, so
    no more than a few segments (and ``_STREAM_READ_BYTES`` of raw data) are in memory. False (nothing
    written) for a layout whose pages do not map onto the series axes."""
    layout = _segment_layout(series, plan)
    if layout is None:
        return False
    for page, fixed in layout.pages:
        keyframe = page.keyframe
        if keyframe.dtype is None:
            raise ImageReadError(
                f"unsupported TIFF sample format ({keyframe.sampleformat}, {keyframe.bitspersample} bits)")
        if not page.dataoffsets:
            raise ImageReadError("the TIFF page has no data offsets")
        with tf.filehandle.lock:
            keyframe.init_decode()
        for result in page.segments(maxworkers=1, sort=True, buffersize=_STREAM_READ_BYTES, _fullsize=False):
            _write_segment(out, layout, fixed, keyframe, result)
    return True


def _new_npy(cache_path: Path, shape: tuple[int, ...], dtype: np.dtype):
    """(temporary path, writable memmap) of a new ``.npy`` beside ``cache_path``.

    A unique name: see :func:`_save_npy`.
    """
    import tempfile

    from numpy.lib.format import open_memmap

    fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=cache_path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        return tmp, open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decode_to_cache(path: str | os.PathLike, cache_path: str | os.PathLike,
                    max_pixels: int | None = None) -> np.ndarray | None:
    """Write the (C, H, W) pixels of the image at ``path`` to the ``.npy`` cache :func:`open_array` maps,
    never holding the whole decoded image in memory when it is a TIFF: tiles/strips are decoded one at a
    time into a memory-mapped ``.npy`` under a unique temporary name, renamed into place when complete.
    PNG/JPEG are decoded whole (Pillow caps their size).

    Returns the pixels (for a TIFF, a read-only map of the cache, opened before the rename, so it stays
    valid whatever happens to the file later); None, writing nothing, for a TIFF that :func:`open_array`
    maps in place. The pixels equal :func:`read_image`'s; a corrupt file raises :class:`ImageReadError`
    and leaves no file behind.
    """
    path, cache_path = os.fspath(path), Path(cache_path)
    header = read_header(path, max_pixels)
    if header.format != "tiff":
        arr = np.ascontiguousarray(read_image(path))
        _save_npy(arr, cache_path)
        return arr
    if header.mappable and _tiff_memmap(path) is not None:
        return None
    tmp, out = _new_npy(cache_path, header.shape, header.dtype)
    try:
        with _open_tiff(path) as (tf, series, plan):
            streamed = _stream_tiff(tf, series, plan, out)
        if not streamed:  # rare layouts (pages that do not map onto the series axes): decode the plane whole
            arr = read_image(path)
            if arr.shape != out.shape:
                raise ImageReadError(f"the TIFF decodes to {arr.shape}, its header says {out.shape}")
            out[...] = arr
            del arr
        out.flush()
        del out
        mapped = np.load(tmp, mmap_mode="r", allow_pickle=False)
        os.replace(tmp, cache_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return mapped


def _channel_percentiles(image: np.ndarray, low: float, high: float, max_pixels: int | None) -> np.ndarray:
    """(C, 2) array of the low/high percentiles of each channel (optionally on a strided sample)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"expected an image (C, H, W) or (H, W), got shape {image.shape}")
    if max_pixels is not None and image.shape[1] * image.shape[2] > max_pixels:
        step = int(np.ceil(np.sqrt(image.shape[1] * image.shape[2] / max_pixels)))
        image = image[:, ::step, ::step]
    flat = image.reshape(image.shape[0], -1)
    return np.percentile(flat, [low, high], axis=1).T


def normalize(image: np.ndarray, low: float = 1, high: float = 99.8) -> np.ndarray:
    """Per-channel percentile normalisation -> float32 (C, H, W): ``(x - p_low) / (p_high - p_low)``.

    Values are not clipped (outliers stay > 1 or < 0). A flat channel (p_high == p_low) becomes
    ``x - p_low`` (zeros for a constant channel) instead of dividing by zero. 2-D input is treated as
    one channel.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    p = _channel_percentiles(image, low, high, None).astype(np.float64)
    lo, hi = p[:, 0][:, None, None], p[:, 1][:, None, None]
    scale = np.where(hi - lo > 0, hi - lo, 1.0)
    return ((image.astype(np.float32) - lo.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)


def display_range(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> list[list[float]]:
    """``[[lo, hi], ...]`` per channel: the 0.5 / 99.5 percentiles (a strided sample for big images).

    When lo == hi (a flat channel) hi is raised by 1 so a viewer never divides by zero.
    """
    p = _channel_percentiles(image, low, high, _RANGE_SAMPLE_PIXELS)
    out = []
    for lo, hi in p:
        lo, hi = float(lo), float(hi)
        out.append([lo, hi if hi > lo else lo + 1.0])
    return out


def to_uint8(image: np.ndarray, ranges: list[list[float]] | np.ndarray) -> np.ndarray:
    """Map each channel linearly from its ``[lo, hi]`` to 0..255 (clipped) -> uint8, same shape."""
    image = np.asarray(image)
    r = np.asarray(ranges, dtype=np.float64).reshape(-1, 2)
    if r.shape[0] != image.shape[0]:
        raise ValueError(f"{r.shape[0]} ranges for {image.shape[0]} channels")
    lo, hi = r[:, 0][:, None, None], r[:, 1][:, None, None]
    scaled = (image.astype(np.float32) - lo) * (255.0 / np.maximum(hi - lo, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def image_bytes(src: PathOrFile) -> bytes:
    """All bytes of a path or file object (helper for callers that need the raw original)."""
    src, _ = _open_source(src)
    if isinstance(src, str):
        return Path(src).read_bytes()
    data = src.read()
    src.seek(0)
    return data


def _tiff_memmap(path: str) -> np.ndarray | None:
    """A (C, H, W) view of an uncompressed, contiguous TIFF series mapped from disk; None otherwise."""
    import tifffile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(path) as tf:
                series = _tiff_series(tf)
                axes, shape = series.axes, tuple(series.shape)
            mm = tifffile.memmap(path, series=0, mode="r")
    except Exception:  # compressed, tiled, or not contiguous: not mappable
        return None
    plan = _plan_tiff(axes, shape)
    if mm.shape != shape or len(plan.channel_axes) > 1:  # see _tiff_mappable
        return None  # merged C x S axes would need a copy; take the cached path instead
    view = mm[plan.index]
    order = [plan.kept_axes.index(a) for a in (*plan.channel_axes, "Y", "X")]
    view = np.transpose(view, order)
    return view if view.ndim == 3 else view[None]


def open_array(path: str | os.PathLike, cache_path: str | os.PathLike | None = None) -> np.ndarray:
    """The image at ``path`` as (C, H, W), read lazily where possible, for region reads of big images.

    Uncompressed contiguous TIFFs are memory-mapped in place. Otherwise, with a ``cache_path``, the image
    is decoded once into a ``.npy`` there (tile by tile for TIFFs, see :func:`decode_to_cache`) and mapped,
    so later calls map that file instead of decoding again; without one it is decoded with
    :func:`read_image`. Pixel values are identical to :func:`read_image`.
    """
    path = os.fspath(path)
    _, head = _open_source(path)
    if _kind(head) == "tiff":
        mm = _tiff_memmap(path)
        if mm is not None:
            return mm
    if cache_path is not None:
        cache_path = Path(cache_path)
        if cache_path.is_file():
            try:
                return np.load(cache_path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                cache_path.unlink(missing_ok=True)  # a half-written cache: rebuild it
    if cache_path is None:
        return read_image(path)
    arr = decode_to_cache(path, cache_path)  # tile by tile for TIFFs
    return arr if arr is not None else read_image(path)  # (None: mappable, but the map failed above)


def _save_npy(arr: np.ndarray, cache_path: str | os.PathLike) -> None:
    import tempfile

    cache_path = Path(cache_path)
    # a unique temporary name per call (two threads of one process once shared a pid-named file and one
    # renamed the other's half-written file), then an atomic rename: readers never see a partial file
    fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=cache_path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, cache_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_cache(path: str | os.PathLike, image: np.ndarray, cache_path: str | os.PathLike) -> bool:
    """Save the already decoded ``image`` of ``path`` as the ``.npy`` cache :func:`open_array` uses,
    unless the file can be memory-mapped directly. Returns whether a cache was written."""
    path = os.fspath(path)
    _, head = _open_source(path)
    if _kind(head) == "tiff" and _tiff_memmap(path) is not None:
        return False
    _save_npy(np.ascontiguousarray(image), cache_path)
    return True


#: Colours of the 1st, 2nd, 3rd, ... selected channel in a composite: green, magenta, cyan, yellow, red,
#: white. The browser's viewer tints channels with the same map (frontend/src/palette.ts), so a grid
#: thumbnail looks like the image on the annotate page.
CHANNEL_COLORS = ((0, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0), (1, 1, 1))
#: An 8-bit three-channel image is a photo: red, green, blue.
RGB_COLORS = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def composite_rgb(image: np.ndarray, ranges, channels: list[int] | None = None,
                  rgb_photo: bool | None = None) -> np.ndarray:
    """8-bit rendering: one channel -> grey (H, W); several -> additive colour composite (H, W, 3).

    ``ranges`` holds ``[lo, hi]`` for every channel of ``image``; ``channels`` selects which to show
    (default: all when there are at most three, else the first three). The k-th selected channel
    gets colour k of :data:`CHANNEL_COLORS` (green, magenta, cyan, yellow, red, white), except in an RGB
    photo (``rgb_photo``; by default: 8-bit with exactly three channels, all shown), which stays RGB.
    """
    image = np.asarray(image)
    if channels is None:
        channels = list(range(min(image.shape[0], 3)))
    if rgb_photo is None:
        rgb_photo = image.dtype == np.uint8 and image.shape[0] == 3 and list(channels) == [0, 1, 2]
    colors = RGB_COLORS if rgb_photo else CHANNEL_COLORS
    r = np.asarray(ranges, dtype=np.float64).reshape(-1, 2)
    sel = to_uint8(image[channels], r[channels])
    if len(channels) == 1:
        return sel[0]
    out = np.zeros(sel.shape[1:] + (3,), dtype=np.uint16)
    for k in range(len(channels)):
        color = colors[k % len(colors)]
        for j in range(3):
            if color[j]:
                out[..., j] += sel[k]
    return np.minimum(out, 255).astype(np.uint8)


__all__ = ["ImageReadError", "ImageTooLargeError", "ImageHeader", "check_pixel_budget", "read_image",
           "read_image_with_info", "read_header", "image_info", "normalize", "display_range", "to_uint8",
           "image_bytes", "open_array", "decode_to_cache", "write_cache", "composite_rgb"]
