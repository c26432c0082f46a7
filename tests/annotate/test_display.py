"""display.png: channel selection, min/max, region and downscale level against a numpy reference."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.annotate import services
from apps.annotate.models import Image

from .conftest import nuclei, tiff_bytes, upload

pytestmark = pytest.mark.django_db


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"
    return np.asarray(PILImage.open(io.BytesIO(response.content)))


def reference(channel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Naive per-pixel linear map to 0..255 with rounding and clipping."""
    out = np.empty(channel.shape, np.uint8)
    for idx, v in np.ndenumerate(channel):
        out[idx] = min(255, max(0, int(np.floor((float(v) - lo) * 255.0 / (hi - lo) + 0.5))))
    return out


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_region_and_level_match_numpy_slicing(client_for, viewer, project, owner, compression):
    array = nuclei(shape=(64, 80), channels=2)
    _, res = services.upload_images(user=owner, project_id=project.pk, files=[
        upload("c.tif", tiff_bytes(array, metadata={"axes": "CYX"}, photometric="minisblack",
                                   compression=compression))])
    img = Image.objects.get(pk=res[0]["id"])
    got = png(client_for(viewer).get(f"/api/v1/images/{img.pk}/display.png?channel=1&min=100&max=3000"
                                     f"&region=8,4,40,30&level=1"))
    expect = reference(array[1, 4:34:2, 8:48:2], 100, 3000)
    assert got.shape == (15, 20) and np.abs(got.astype(int) - expect).max() <= 1
    # separate x/y/w/h give the same answer
    same = png(client_for(viewer).get(f"/api/v1/images/{img.pk}/display.png?channel=1&min=100&max=3000"
                                      f"&x=8&y=4&w=40&h=30&level=1"))
    assert np.array_equal(same, got)


def test_composite_puts_first_listed_channel_in_green_second_in_magenta(client_for, viewer, stored_image):
    """The viewer's channel colours (frontend/src/palette.ts): green, then magenta (red + blue)."""
    a = stored_image._array
    got = png(client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/display.png?channel=1,0&min=0&max=4000"))
    assert got.shape == (64, 80, 3)
    assert np.abs(got[..., 1].astype(int) - reference(a[1], 0, 4000)).max() <= 1
    assert np.abs(got[..., 0].astype(int) - reference(a[0], 0, 4000)).max() <= 1
    assert np.abs(got[..., 2].astype(int) - reference(a[0], 0, 4000)).max() <= 1


def test_default_rendering_uses_stored_display_range(client_for, viewer, stored_image):
    lo, hi = stored_image.display_range[0]
    got = png(client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/display.png?channel=0"))
    assert np.abs(got.astype(int) - reference(stored_image._array[0], lo, hi)).max() <= 1


def test_big_uncompressed_tiff_is_read_through_a_memory_map_and_cached_otherwise(owner, project, monkeypatch):
    from pathlib import Path

    monkeypatch.setattr(services, "CACHE_MIN_PIXELS", 64 * 80)  # these count as "big"
    arr = nuclei(shape=(64, 80))
    _, res = services.upload_images(user=owner, project_id=project.pk, files=[
        upload("raw.tif", tiff_bytes(arr)), upload("z.tif", tiff_bytes(arr[:, ::-1], compression="zlib")),
        upload("small.tif", tiff_bytes(arr[:, :32, :32], compression="zlib"))])
    raw, packed, small = (Image.objects.get(pk=r["id"]) for r in res)
    mapped = services.image_array(raw)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, arr)
    assert not Path(raw.file.path + ".cache.npy").exists()
    assert Path(packed.file.path + ".cache.npy").is_file()  # written at upload, from the decoded pixels
    cached = services.image_array(packed)
    assert isinstance(cached, np.memmap) and np.array_equal(cached, arr[:, ::-1])
    Path(packed.file.path + ".cache.npy").unlink()  # a lost cache is rebuilt on the next read
    assert np.array_equal(services.image_array(packed), arr[:, ::-1])
    assert Path(packed.file.path + ".cache.npy").is_file()
    assert np.array_equal(services.image_array(small), arr[:, :32, :32])  # small: decoded, not cached
    assert not Path(small.file.path + ".cache.npy").exists()


@pytest.mark.parametrize("query", ["channel=5", "channel=a", "channel=0,0", "region=0,0,500,10", "region=1,2,3",
                                   "x=-1", "level=99", "level=x", "min=abc", "min=10&max=5", "min=1,2,3"])
def test_bad_display_parameters_are_400(client_for, viewer, stored_image, query):
    r = client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/display.png?{query}")
    assert r.status_code == 400 and r.json()["detail"]
