"""Batch uploads refuse images whose header declares more pixels than LABSEG_MAX_IMAGE_PIXELS (before
decoding them) and store files under short, safe names whatever the uploaded name: the bad file gets a
per-file error, the good ones in the same batch are kept."""
from __future__ import annotations

import io
import itertools
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from apps.annotate.models import Image, safe_file_name
from apps.annotate.services import cache_name
from labseg.ml import io as mlio

from .conftest import nuclei, tiff_bytes, upload

pytestmark = pytest.mark.django_db


def deflate_tiff_declaring(height: int, width: int, tile: int = 1024) -> bytes:
    """A small tiled deflate TIFF of zeros whose header says ``height`` x ``width`` uint8: every tile is the
    same pre-compressed bytes, so writing it never holds the image."""
    blob = zlib.compress(bytes(tile * tile), 9)
    ntiles = -(-height // tile) * -(-width // tile)
    buf = io.BytesIO()
    tifffile.imwrite(buf, itertools.repeat(blob, ntiles), shape=(height, width), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib", bigtiff=True)
    return buf.getvalue()


def post(client, project, *files):
    return client.post(f"/api/v1/projects/{project.pk}/images/", {"files": list(files)}, format="multipart")


# --- the pixel budget -------------------------------------------------------------------------------
def test_check_pixel_budget_counts_exactly_and_refuses_over_the_limit():
    assert mlio.check_pixel_budget((3, 40000, 40000), None) == 4_800_000_000
    assert mlio.check_pixel_budget((2, 10, 10), 200) == 200
    with pytest.raises(mlio.ImageTooLargeError, match="40000 x 40000 = 1600000000 pixel values, more than the limit"):
        mlio.check_pixel_budget((40000, 40000), 1_100_000_000)
    with pytest.raises(mlio.ImageReadError):
        mlio.check_pixel_budget((-1, 5), 10)


def test_a_small_tiff_declaring_40000_squared_is_refused_from_its_header():
    data = deflate_tiff_declaring(40000, 40000)
    assert len(data) < 3_000_000
    with pytest.raises(mlio.ImageTooLargeError, match="40000 x 40000"):
        mlio.read_image_with_info(io.BytesIO(data), max_pixels=1_100_000_000)


def test_only_the_plane_that_is_read_counts_for_a_stack():
    stack = np.zeros((5, 2, 30, 40), np.uint16)  # Z=5 planes of 2 channels: the first plane is read
    src = io.BytesIO(tiff_bytes(stack, imagej=True, metadata={"axes": "ZCYX"}))
    arr, info = mlio.read_image_with_info(src, max_pixels=2 * 30 * 40)
    assert arr.shape == (2, 30, 40) and info["planes"] == {"Z": 5}
    with pytest.raises(mlio.ImageTooLargeError):
        mlio.read_image_with_info(src, max_pixels=2 * 30 * 40 - 1)


def test_channels_count_for_png_and_jpeg():
    buf = io.BytesIO()
    PILImage.new("RGB", (40, 30)).save(buf, format="PNG")
    assert mlio.read_image_with_info(io.BytesIO(buf.getvalue()), max_pixels=3 * 30 * 40)[0].shape == (3, 30, 40)
    with pytest.raises(mlio.ImageTooLargeError, match="3 x 30 x 40"):
        mlio.read_image_with_info(io.BytesIO(buf.getvalue()), max_pixels=3 * 30 * 40 - 1)


def test_upload_of_a_tiff_declaring_40000_squared_is_a_per_file_error_and_the_batch_keeps_the_good_file(
        client_for, annotator, project):
    bomb = upload("bomb.tif", deflate_tiff_declaring(40000, 40000))
    good = upload("good.tif", tiff_bytes(nuclei()))
    r = post(client_for(annotator), project, bomb, good)
    assert r.status_code == 207, r.json()
    bad, ok = r.json()["results"]
    assert bad["code"] == "too_large" and "LABSEG_MAX_IMAGE_PIXELS" in bad["error"] and "id" not in bad
    assert ok["id"] and Image.objects.filter(project=project).count() == 1


def test_the_image_limit_is_a_setting(client_for, annotator, project, settings):
    settings.LABSEG_MAX_IMAGE_PIXELS = 64 * 80 - 1
    png = io.BytesIO()
    PILImage.fromarray(np.zeros((64, 80), np.uint8)).save(png, format="PNG")
    r = post(client_for(annotator), project, upload("a.tif", tiff_bytes(nuclei())), upload("b.png", png.getvalue()))
    # nothing stored and every file over a size limit: the batch answers 413, as each file's result does
    assert r.status_code == 413 and [x["code"] for x in r.json()["results"]] == ["too_large", "too_large"]
    assert [x["status"] for x in r.json()["results"]] == [413, 413]
    settings.LABSEG_MAX_IMAGE_PIXELS = 64 * 80
    r = post(client_for(annotator), project, upload("a.tif", tiff_bytes(nuclei())), upload("b.png", png.getvalue()))
    assert r.status_code == 201, r.json()


# --- stored names -----------------------------------------------------------------------------------
def test_safe_file_name_is_short_ascii_and_keeps_the_extension():
    assert safe_file_name("cells.tif") == "cells.tif"
    assert safe_file_name("Zellkern Ü 1.TIF") == "zellkern-u-1.tif"
    assert safe_file_name("日本語.png") == "file.png"
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("C:\\scans\\a b.jpg") == "a-b.jpg"
    long = safe_file_name("é" * 300 + ".ome.tiff")
    assert long.endswith(".tiff") and len(long.encode()) <= 80


@pytest.mark.parametrize("name", ["ü" * 200 + ".tif",  # 400+ UTF-8 bytes: not a valid file name
                                  "a" * 250 + ".tif",  # fits, but its ".cache.npy" did not
                                  "x" * 400])
def test_a_long_name_is_stored_under_a_safe_name_and_kept_in_the_database(client_for, annotator, project, name):
    # 2048 x 2048: big enough for the decoded-array cache beside the original
    big = tiff_bytes(np.zeros((2048, 2048), np.uint8), compression="zlib")
    r = post(client_for(annotator), project, upload(name, big), upload("good.tif", tiff_bytes(nuclei())))
    assert r.status_code == 201, r.json()
    img = Image.objects.get(pk=r.json()["results"][0]["id"])
    assert img.original_filename == name[:255] and r.json()["results"][0]["filename"] == name[:255]
    stored = Path(img.file.path)
    assert stored.is_file() and len(stored.name.encode()) <= 80 and stored.name.isascii()
    assert Path(cache_name(img.file.path)).is_file() and len(Path(cache_name(img.file.path)).name) <= 100
    got = client_for(annotator).get(f"/api/v1/images/{img.pk}/display.png?level=3")
    assert got.status_code == 200
    original = client_for(annotator).get(f"/api/v1/images/{img.pk}/file")
    assert b"".join(original.streaming_content) == big


def test_control_characters_are_dropped_from_the_shown_name(client_for, annotator, project):
    r = post(client_for(annotator), project, upload("bad\x00na\x1bme.tif", tiff_bytes(nuclei())))
    assert r.status_code == 201, r.json()
    assert Image.objects.get(pk=r.json()["results"][0]["id"]).original_filename == "badname.tif"
