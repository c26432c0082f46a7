"""Annotation saves check a mask's declared size before decompressing it: a small body can never make the
server allocate gigabytes (a zlib bomb in the app's own LSNPYZ1 form, a PNG whose header declares a huge
image), and every refusal is a JSON 400 (wrong size, bad data) or 413 (over a limit)."""
from __future__ import annotations

import base64
import io
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.annotate.masks import NPY_ZLIB_MAGIC, MaskError, decode_mask, encode_png

pytestmark = pytest.mark.django_db


def npy_header(shape, dtype="<u4", fortran=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": fortran,
                                               "shape": tuple(shape)})
    return buf.getvalue()  # magic, version, header length, header


def zlib_bomb(shape, dtype="<u4", extra_bytes: int = 0) -> bytes:
    """LSNPYZ1 bytes of a zero array of ``shape`` (+ ``extra_bytes`` beyond it), compressed as a stream so
    the test itself never holds the decompressed data."""
    c = zlib.compressobj(9)
    out = [NPY_ZLIB_MAGIC, c.compress(npy_header(shape, dtype))]
    remaining = int(np.prod(shape)) * np.dtype(dtype).itemsize + extra_bytes
    chunk = bytes(1 << 22)
    while remaining > 0:
        out.append(c.compress(chunk[:min(remaining, len(chunk))]))
        remaining -= len(chunk)
    out.append(c.flush())
    return b"".join(out)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def put(client, image, **masks):
    return client.put(f"/api/v1/images/{image.pk}/annotation/", {"version": 0, **masks}, format="json")


# --- the decoder ----------------------------------------------------------------------------------
def test_a_zlib_bomb_of_the_wrong_shape_is_refused_before_it_is_decompressed():
    bomb = zlib_bomb((8192, 8192))  # 256 MiB of uint32 in ~260 KB
    assert len(bomb) < 400_000

    def decode():
        with pytest.raises(MaskError, match="mask is 8192x8192 but the image is 80x64") as info:
            decode_mask(bomb, expected_shape=(64, 80))
        assert not info.value.too_large

    assert peak_bytes(decode) < 2_000_000  # the header prefix only, not 256 MiB


def test_a_stream_longer_than_its_header_says_is_cut_off():
    bomb = zlib_bomb((64, 80), extra_bytes=200 << 20)  # right header, then 200 MiB more

    def decode():
        with pytest.raises(MaskError, match="more data than its header declares") as info:
            decode_mask(bomb, expected_shape=(64, 80))
        assert info.value.too_large

    assert peak_bytes(decode) < 2_000_000


def test_the_pixel_limit_is_checked_from_the_header():
    with pytest.raises(MaskError, match="LABSEG_MAX_MASK_PIXELS") as info:
        decode_mask(zlib_bomb((100, 100)), max_pixels=9_999)
    assert info.value.too_large


@pytest.mark.parametrize("dtype,fortran", [("<u4", False), (">u4", False), ("<u4", True), ("<u2", False),
                                           ("<i4", False)])
def test_valid_compressed_masks_decode_exactly(dtype, fortran):
    mask = (np.arange(64 * 80, dtype=np.int64).reshape(64, 80) * 977 % 100_003).astype(dtype)
    payload = npy_header(mask.shape, dtype, fortran) + (mask.T if fortran else mask).tobytes(order="C")
    got = decode_mask(NPY_ZLIB_MAGIC + zlib.compress(payload), expected_shape=(64, 80), max_pixels=64 * 80)
    assert got.shape == (64, 80) and got.dtype.isnative and np.array_equal(got, mask)
    got[0, 0] = 1  # a writable array, as np.load gave


def test_the_apps_own_encoding_round_trips_through_the_checked_decoder():
    mask = np.arange(64 * 80, dtype=np.uint32).reshape(64, 80) * 20  # ids above 65535: the LSNPYZ1 form
    data = encode_png(mask)
    assert data.startswith(NPY_ZLIB_MAGIC)
    assert np.array_equal(decode_mask(data, expected_shape=(64, 80), max_pixels=10**6), mask)


@pytest.mark.parametrize("payload,message", [
    (lambda: npy_header((64, 80)) + bytes(100), "truncated"),
    (lambda: npy_header((64, 80), "<f8") + bytes(64 * 80 * 8), "integers"),
    (lambda: npy_header((64, 80), "|O"), "integers"),
    (lambda: npy_header((2, 64, 80)) + bytes(2 * 64 * 80 * 4), "2-D"),
    (lambda: npy_header((64, 80), "<i4") + np.full((64, 80), -1, "<i4").tobytes(), ">= 0"),
    (lambda: b"\x93NUMPY\x01", "readable"),
])
def test_bad_compressed_masks_are_a_mask_error(payload, message):
    with pytest.raises(MaskError, match=message):
        decode_mask(NPY_ZLIB_MAGIC + zlib.compress(payload()), expected_shape=(64, 80))


def test_truncated_zlib_data_is_a_mask_error():
    data = NPY_ZLIB_MAGIC + zlib.compress(npy_header((64, 80)) + bytes(64 * 80 * 4))
    with pytest.raises(MaskError):
        decode_mask(data[:-40], expected_shape=(64, 80))


# --- the API --------------------------------------------------------------------------------------
def test_put_of_a_zlib_bomb_answers_400_json_without_decompressing_it(client_for, owner, stored_image):
    body = b64(zlib_bomb((8192, 8192)))
    client = client_for(owner)
    r = None

    def call():
        nonlocal r
        r = put(client, stored_image, instances_png=body)

    assert peak_bytes(call) < 64_000_000  # 256 MiB before the fix
    assert r.status_code == 400 and r.json()["code"] == "invalid"
    assert "8192x8192 but the image is 80x64" in r.json()["detail"]
    assert r.json()["detail"].startswith("instances_png:")


def test_put_of_a_stream_longer_than_its_header_answers_413(client_for, owner, stored_image):
    r = put(client_for(owner), stored_image, instances_png=b64(zlib_bomb((64, 80), extra_bytes=50 << 20)))
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert "more data than its header declares" in r.json()["detail"]


def test_put_over_the_mask_pixel_limit_answers_413_for_png_and_compressed(client_for, owner, stored_image, settings):
    settings.LABSEG_MAX_MASK_PIXELS = 64 * 80 - 1
    png = io.BytesIO()
    PILImage.fromarray(np.zeros((64, 80), np.uint8)).save(png, format="PNG")
    for field, data in (("classes_png", png.getvalue()), ("instances_png", zlib_bomb((64, 80)))):
        r = put(client_for(owner), stored_image, **{field: b64(data)})
        assert r.status_code == 413 and "LABSEG_MAX_MASK_PIXELS" in r.json()["detail"], (field, r.json())


def test_put_of_a_png_declaring_a_huge_size_answers_400_from_its_header(client_for, owner, stored_image):
    png = io.BytesIO()
    PILImage.fromarray(np.zeros((1, 1), np.uint8)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    data[16:24] = (40000).to_bytes(4, "big") * 2  # IHDR width, height (the CRC no longer matches)
    r = put(client_for(owner), stored_image, classes_png=b64(bytes(data)))
    assert r.status_code == 400 and "40000x40000 but the image is 80x64" in r.json()["detail"]


def test_valid_masks_in_both_forms_are_still_saved(client_for, owner, stored_image):
    classes = np.zeros((64, 80), np.uint8)
    classes[10:20, 10:30] = 2
    instances = np.zeros((64, 80), np.uint32)
    instances[10:20, 10:30] = 70_000
    r = put(client_for(owner), stored_image, classes_png=b64(encode_png(classes)),
            instances_png=b64(encode_png(instances)))
    assert r.status_code == 200, r.json()
    stored_image.annotation.refresh_from_db()
    assert np.array_equal(decode_mask(stored_image.annotation.instances_png), instances)
