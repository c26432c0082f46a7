"""labseg.ml.io against arrays written with tifffile / PIL."""
from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from labseg.ml.io import (
    ImageReadError,
    composite_rgb,
    display_range,
    image_info,
    normalize,
    open_array,
    read_image,
    read_image_with_info,
)

RNG = np.random.default_rng(42)
CYX16 = RNG.integers(0, 65535, (3, 24, 32), dtype=np.uint16)


def tif(array, **kw) -> io.BytesIO:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kw)
    buf.seek(0)
    return buf


def pil(array, fmt="PNG", **kw) -> io.BytesIO:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format=fmt, **kw)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name,make,expected", [
    ("imagej-cyx", lambda: tif(CYX16, imagej=True, metadata={"axes": "CYX"}), CYX16),
    ("plain-cyx", lambda: tif(CYX16, photometric="minisblack"), CYX16),
    ("yxc-rgb", lambda: tif(np.moveaxis(CYX16, 0, -1), photometric="rgb"), CYX16),
    ("yxc-2ch-no-metadata", lambda: tif(np.moveaxis(CYX16[:2], 0, -1), metadata=None), CYX16[:2]),
    ("ome-cyx", lambda: tif(CYX16, ome=True, metadata={"axes": "CYX"}), CYX16),
    ("compressed-8bit-grey", lambda: tif(CYX16[0].astype(np.uint8), compression="zlib"),
     CYX16[:1].astype(np.uint8)),
])
def test_read_tiff_layouts_give_cyx_in_original_dtype(name, make, expected):
    got = read_image(make())
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
    info = image_info(make())
    assert (info["channels"], info["height"], info["width"], info["dtype"]) == (*expected.shape, expected.dtype.name)


def test_hyperstack_with_z_and_t_takes_first_plane_and_says_so():
    stack = np.stack([np.stack([CYX16, CYX16 + 1, CYX16 + 2])] * 2)  # T=2, Z=3, C, Y, X
    for kw in ({"imagej": True, "metadata": {"axes": "TZCYX"}}, {"ome": True, "metadata": {"axes": "TZCYX"}}):
        arr, info = read_image_with_info(tif(stack, **kw))
        assert np.array_equal(arr, CYX16)
        assert info["planes"] == {"T": 2, "Z": 3}
        assert image_info(tif(stack, **kw))["planes"] == {"T": 2, "Z": 3}
    czyx = np.stack([CYX16, CYX16 + 5], axis=1)  # channel-major OME stack: C, Z, Y, X
    arr, info = read_image_with_info(tif(czyx, ome=True, metadata={"axes": "CZYX"}))
    assert np.array_equal(arr, CYX16) and info["planes"] == {"Z": 2}
    singleton = read_image(tif(CYX16[None, None], imagej=True, metadata={"axes": "TZCYX"}))
    assert np.array_equal(singleton, CYX16)


@pytest.mark.parametrize("array,fmt,expected", [
    (CYX16[0], "PNG", CYX16[:1]),
    (CYX16[0].astype(np.uint8), "PNG", CYX16[:1].astype(np.uint8)),
    (np.moveaxis((CYX16 >> 8).astype(np.uint8), 0, -1), "PNG", (CYX16 >> 8).astype(np.uint8)),
])
def test_read_png_grey16_grey8_rgb(array, fmt, expected):
    got = read_image(pil(array, fmt))
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert image_info(pil(array, fmt))["channels"] == expected.shape[0]


def test_read_jpeg_rgb_close_to_the_written_pixels():
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 48)[None, :]
    smooth[..., 1] = 128
    got = read_image(pil(smooth, "JPEG", quality=95))
    assert got.shape == (3, 32, 48) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.moveaxis(smooth, -1, 0)).mean() < 3


def test_read_from_a_path(tmp_path):
    p = tmp_path / "x.tif"
    tifffile.imwrite(p, CYX16, photometric="minisblack")
    assert np.array_equal(read_image(p), CYX16) and np.array_equal(read_image(str(p)), CYX16)


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"hello, this is text" * 10, "not a TIFF, PNG or JPEG"),
    (tif(CYX16, photometric="minisblack").getvalue()[:700], "truncated"),
    (pil(CYX16[0]).getvalue()[:200], "truncated"),
    (pil(np.moveaxis((CYX16 >> 8).astype(np.uint8), 0, -1), "JPEG").getvalue()[:300], "truncated"),
    (b"II*\x00" + b"\xff" * 40, "TIFF"),
])
def test_bad_files_raise_image_read_error_with_a_clear_message(data, message):
    with pytest.raises(ImageReadError, match=message):
        read_image(io.BytesIO(data))
    assert issubclass(ImageReadError, ValueError)


def test_normalize_matches_a_naive_percentile_reference():
    img = RNG.normal(1000, 200, (2, 20, 30)).astype(np.uint16)
    img[1] = 7  # a flat channel must not divide by zero
    got = normalize(img, 1, 99.8)
    assert got.dtype == np.float32 and got.shape == img.shape
    values = np.sort(img[0].ravel().astype(np.float64))
    def rank(q):  # linear interpolation between order statistics, by hand
        return np.interp(q / 100 * (values.size - 1), np.arange(values.size), values)

    lo, hi = rank(1), rank(99.8)
    assert np.allclose(got[0], (img[0] - lo) / (hi - lo), atol=1e-5)
    assert np.all(got[1] == 0)


def test_display_range_is_the_half_percent_tails_per_channel():
    img = np.stack([np.arange(1000, dtype=np.uint16).reshape(20, 50), np.full((20, 50), 5, np.uint16)])
    (lo0, hi0), (lo1, hi1) = display_range(img)
    assert (lo0, hi0) == pytest.approx((0.005 * 999, 0.995 * 999))
    assert lo1 == 5 and hi1 == 6  # flat channel: hi raised so a viewer never divides by zero


def test_composite_of_two_channels_is_green_and_magenta(tmp_path):
    img = np.stack([np.full((4, 4), 10, np.uint16), np.full((4, 4), 20, np.uint16)])
    rgb = composite_rgb(img, [[0, 20], [0, 20]])
    assert rgb.shape == (4, 4, 3) and tuple(rgb[0, 0]) == (255, 128, 255)


def test_composite_of_an_8bit_rgb_photo_stays_rgb(tmp_path):
    img = np.stack([np.full((2, 2), v, np.uint8) for v in (255, 0, 51)])
    assert tuple(composite_rgb(img, [[0, 255]] * 3)[0, 0]) == (255, 0, 51)


def test_open_array_maps_uncompressed_tiff_and_caches_compressed(tmp_path):
    raw, packed = tmp_path / "raw.tif", tmp_path / "packed.tif"
    tifffile.imwrite(raw, CYX16, photometric="minisblack")
    tifffile.imwrite(packed, CYX16, photometric="minisblack", compression="zlib")
    mm = open_array(raw, tmp_path / "raw.npy")
    assert isinstance(mm, np.memmap) and np.array_equal(mm, CYX16) and not (tmp_path / "raw.npy").exists()
    first = open_array(packed, tmp_path / "packed.npy")
    assert (tmp_path / "packed.npy").is_file() and np.array_equal(first, CYX16)
    assert np.array_equal(open_array(packed, tmp_path / "packed.npy")[:, 3:9, 4:20], CYX16[:, 3:9, 4:20])
