"""The decoded-array cache of a compressed TIFF is written tile by tile (the upload never holds the whole
decoded image), and uploads are counted against the media quota (LABSEG_MEDIA_QUOTA_BYTES)."""
from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from apps.annotate.models import Image
from apps.annotate.quota import media_usage_bytes
from apps.annotate.services import cache_name
from labseg.ml import io as mlio

from .conftest import nuclei, tiff_bytes, upload

BIG = (2, 4096, 4096)  # 64 MiB decoded as uint16


def big_cyx(shape=BIG, seed=3) -> np.ndarray:
    """Position-dependent uint16 values (a misplaced tile shows) with sparse noise; compresses well."""
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.uint32)
    out = np.empty(shape, np.uint16)
    for k in range(c):
        out[k] = ((yy * (13 + k) + xx * (7 + 2 * k)) & 0xFFFF).astype(np.uint16)
    rng = np.random.default_rng(seed)
    out[:, ::97, ::89] = rng.integers(0, 65535, out[:, ::97, ::89].shape, dtype=np.uint16)
    return out


@pytest.fixture(scope="module")
def big_tiled(tmp_path_factory) -> Path:
    """A deflate-compressed, tiled, 2-channel 4096 x 4096 uint16 TIFF (one page per channel)."""
    path = tmp_path_factory.mktemp("big") / "big.tif"
    tifffile.imwrite(path, big_cyx(), tile=(256, 256), compression="zlib", predictor=True,
                     photometric="minisblack", metadata={"axes": "CYX"})
    return path


def reference_cyx(path) -> np.ndarray:
    """tifffile's own full decode, put in (C, H, W) by hand: the independent reference."""
    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        arr = series.asarray()
        axes = series.axes
    if axes.endswith("S"):  # YXS: samples last
        arr = np.moveaxis(arr, -1, 0)
    return arr.reshape((-1,) + arr.shape[-2:])


def peak_bytes(fn, *args) -> tuple[int, object]:
    tracemalloc.start()
    try:
        result = fn(*args)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def post(client, project, *files):
    return client.post(f"/api/v1/projects/{project.pk}/images/", {"files": list(files)}, format="multipart")


def media_files(root) -> list[str]:
    """Every file under MEDIA_ROOT except the lock that deletes share with backups (``labseg.backup.FILES_LOCK``)."""
    from labseg.backup import FILES_LOCK

    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() != FILES_LOCK) if root.exists() else []


# --- the tile-by-tile cache -------------------------------------------------------------------------
RNG = np.random.default_rng(11)
CYX = RNG.integers(0, 65535, (3, 300, 270), dtype=np.uint16)
ZCYX = np.stack([CYX, CYX // 2, CYX // 3])


@pytest.mark.parametrize("name,array,kwargs,expected", [
    ("tiled deflate, one page per channel", CYX, dict(tile=(64, 64), compression="zlib", photometric="minisblack"),
     CYX),
    ("strips lzw", CYX, dict(rowsperstrip=7, compression="lzw", photometric="minisblack"), CYX),
    ("RGB contig tiles", np.moveaxis(CYX, 0, -1), dict(photometric="rgb", tile=(32, 48), compression="zlib"), CYX),
    ("RGB planar tiles", CYX, dict(photometric="rgb", planarconfig="separate", tile=(32, 48), compression="zlib"), CYX),
    ("RGB planar strips", CYX, dict(photometric="rgb", planarconfig="separate", rowsperstrip=13,
                                    compression="zstd"), CYX),
    ("YX2 without metadata", np.moveaxis(CYX[:2], 0, -1), dict(metadata=None, compression="zlib"), CYX[:2]),
    ("OME ZCYX tiles: first plane", ZCYX, dict(ome=True, metadata={"axes": "ZCYX"}, tile=(64, 64),
                                               compression="zlib"), CYX),
    ("OME C x S merged", np.stack([np.moveaxis(CYX, 0, -1)] * 2), dict(ome=True, photometric="rgb",
                                                                       metadata={"axes": "CYXS"}, tile=(64, 64),
                                                                       compression="zlib"),
     np.concatenate([CYX, CYX])),
    ("8-bit grey tiles", (CYX[0] >> 8).astype(np.uint8), dict(tile=(64, 64), compression="zlib"),
     (CYX[:1] >> 8).astype(np.uint8)),
    ("big-endian", CYX.astype(">u2"), dict(byteorder=">", compression="zlib", photometric="minisblack"), CYX),
    ("uncompressed tiles", CYX, dict(tile=(64, 64), photometric="minisblack"), CYX),
])
def test_the_cache_of_each_tiff_layout_equals_the_array_written(tmp_path, name, array, kwargs, expected):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, array, **kwargs)
    mapped = mlio.decode_to_cache(path, tmp_path / "a.npy")
    cached = np.load(tmp_path / "a.npy")
    assert cached.dtype == expected.dtype.newbyteorder("=") and cached.shape == expected.shape
    assert np.array_equal(cached, expected) and np.array_equal(mapped, expected)
    header = mlio.read_header(path)
    assert header.shape == expected.shape and header.nbytes + 128 == (tmp_path / "a.npy").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a.tif"]  # no temporary file left


def test_an_uncompressed_contiguous_tiff_gets_no_cache(tmp_path):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, CYX, photometric="minisblack")
    assert mlio.read_header(path).mappable
    assert mlio.decode_to_cache(path, tmp_path / "raw.npy") is None and not (tmp_path / "raw.npy").exists()


def test_a_truncated_tiff_raises_a_read_error_and_leaves_no_cache(tmp_path):
    path = tmp_path / "cut.tif"
    data = tiff_bytes(CYX, tile=(64, 64), compression="zlib", photometric="minisblack")
    path.write_bytes(data[: len(data) // 6])  # the first page reads, its later tiles are gone
    with pytest.raises(mlio.ImageReadError):
        mlio.decode_to_cache(path, tmp_path / "cut.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tif"]


@pytest.mark.parametrize("layout", [dict(tile=(256, 256)), dict(rowsperstrip=32)], ids=["tiles", "strips"])
def test_decoding_a_large_compressed_tiff_peaks_far_below_its_decoded_size(tmp_path, big_tiled, layout):
    path = big_tiled
    if "rowsperstrip" in layout:
        path = tmp_path / "strips.tif"
        tifffile.imwrite(path, big_cyx(), compression="zlib", predictor=True, photometric="minisblack",
                         metadata={"axes": "CYX"}, **layout)
    decoded = int(np.prod(BIG)) * 2
    peak, mapped = peak_bytes(mlio.decode_to_cache, path, tmp_path / "c.npy")
    assert peak < 0.25 * decoded, f"peak {peak} bytes for a {decoded}-byte image"
    assert np.array_equal(np.load(tmp_path / "c.npy", mmap_mode="r"), reference_cyx(path))
    # what it replaces: decoding the whole image holds it (and more)
    full_peak, _ = peak_bytes(mlio.read_image, path)
    assert full_peak >= decoded


# --- the upload path --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_deflate_tiled_4096_squared_two_channel_upload_caches_the_full_decode(client_for, annotator, project,
                                                                                big_tiled):
    data = big_tiled.read_bytes()
    r = post(client_for(annotator), project, upload("big.tif", data))
    assert r.status_code == 201, r.json()
    assert r.json()["results"][0]["status"] == 201
    img = Image.objects.get(pk=r.json()["results"][0]["id"])
    reference = reference_cyx(big_tiled)
    assert (img.channels, img.height, img.width, img.dtype) == (2, 4096, 4096, "uint16")
    cache = Path(cache_name(img.file.path))
    assert cache.stat().st_size == reference.nbytes + 128
    assert np.array_equal(np.load(cache, mmap_mode="r"), reference)
    assert img.display_range == mlio.display_range(reference)  # the same strided sample as a full decode
    thumb = PILImage.open(img.thumbnail.path)
    assert max(thumb.size) == 256
    assert not list(Path(img.file.path).parent.glob("*.tmp"))
    got = client_for(annotator).get(f"/api/v1/images/{img.pk}/display.png?level=4")
    assert got.status_code == 200


@pytest.mark.django_db
def test_the_upload_service_peaks_well_below_the_decoded_size(annotator, project, big_tiled):
    from apps.annotate import services

    f = upload("big.tif", big_tiled.read_bytes())
    decoded = int(np.prod(BIG)) * 2
    peak, (status, results) = peak_bytes(
        lambda: services.upload_images(user=annotator, project_id=project.pk, files=[f]))
    assert status == 201, results
    # the display range's strided sample (<= 4M values per channel) is the largest allocation left
    assert peak < 0.35 * decoded, f"peak {peak} bytes for a {decoded}-byte image"


# --- the media quota --------------------------------------------------------------------------------
def compressed_big(seed: int) -> bytes:
    """A 2048 x 2048 uint8 deflate TIFF (big enough for a 4 MiB cache), small on the wire."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((2048, 2048), np.uint8)
    arr[::64, ::64] = rng.integers(1, 255, arr[::64, ::64].shape, dtype=np.uint8)
    return tiff_bytes(arr, compression="zlib", tile=(256, 256))


CACHE_BYTES = 2048 * 2048 + 128


@pytest.mark.django_db
def test_an_upload_over_the_quota_is_a_413_and_leaves_nothing(client_for, annotator, project, settings):
    data = compressed_big(1)
    settings.LABSEG_MEDIA_QUOTA_BYTES = len(data) + CACHE_BYTES - 1  # the original fits, its cache does not
    r = post(client_for(annotator), project, upload("a.tif", data))
    assert r.status_code == 413, r.json()
    (res,) = r.json()["results"]
    assert res["status"] == 413 and res["code"] == "quota_exceeded" and "id" not in res
    assert "LABSEG_MEDIA_QUOTA_BYTES" in res["error"] and "decoded cache" in res["error"]
    assert r.json()["stored"] == 0 and not Image.objects.filter(project=project).exists()
    assert media_files(settings.MEDIA_ROOT) == []
    settings.LABSEG_MEDIA_QUOTA_BYTES = len(data) + CACHE_BYTES + 64 * 1024  # room for the thumbnail too
    r = post(client_for(annotator), project, upload("a.tif", data))
    assert r.status_code == 201, r.json()


@pytest.mark.django_db
def test_a_batch_keeps_the_file_that_fits_and_refuses_the_next(client_for, annotator, project, settings):
    first, second = compressed_big(1), compressed_big(2)
    settings.LABSEG_MEDIA_QUOTA_BYTES = len(first) + CACHE_BYTES + 64 * 1024  # one image, not two
    r = post(client_for(annotator), project, upload("first.tif", first), upload("second.tif", second))
    assert r.status_code == 207, r.json()
    ok, refused = r.json()["results"]
    assert ok["status"] == 201 and refused["status"] == 413 and refused["code"] == "quota_exceeded"
    img = Image.objects.get(project=project)
    assert img.pk == ok["id"]
    expected = sorted(str(Path(n)) for n in (img.file.name, img.thumbnail.name, cache_name(img.file.name)))
    assert media_files(settings.MEDIA_ROOT) == expected  # nothing of the refused file
    assert media_usage_bytes(settings.MEDIA_ROOT) <= settings.LABSEG_MEDIA_QUOTA_BYTES


@pytest.mark.django_db
def test_files_already_in_media_count_and_zero_turns_the_quota_off(client_for, annotator, project, settings):
    data = tiff_bytes(nuclei())  # small: no cache
    media = Path(settings.MEDIA_ROOT)
    (media / "checkpoints").mkdir(parents=True)
    (media / "checkpoints" / "model.pt").write_bytes(b"\0" * 100_000)
    settings.LABSEG_MEDIA_QUOTA_BYTES = 100_000 + len(data) - 1
    r = post(client_for(annotator), project, upload("a.tif", data))
    assert r.status_code == 413 and r.json()["results"][0]["code"] == "quota_exceeded"
    settings.LABSEG_MEDIA_QUOTA_BYTES = 0
    r = post(client_for(annotator), project, upload("a.tif", data))
    assert r.status_code == 201, r.json()


@pytest.mark.django_db
def test_an_uncompressed_big_tiff_counts_only_its_original(client_for, annotator, project, settings):
    data = tiff_bytes(np.zeros((2048, 2048), np.uint8))  # memory-mapped in place: no cache is written
    settings.LABSEG_MEDIA_QUOTA_BYTES = len(data) + 64 * 1024
    r = post(client_for(annotator), project, upload("raw.tif", data))
    assert r.status_code == 201, r.json()
    img = Image.objects.get(pk=r.json()["results"][0]["id"])
    assert not os.path.exists(cache_name(img.file.path))


@pytest.mark.django_db
def test_a_corrupt_tile_is_a_per_file_400_and_leaves_nothing(client_for, annotator, project, settings):
    data = bytearray(compressed_big(3))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tf:
        page = tf.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    data[offset: offset + count] = b"\xff" * count  # not a deflate stream any more
    r = post(client_for(annotator), project, upload("bad.tif", bytes(data)), upload("good.tif", tiff_bytes(nuclei())))
    assert r.status_code == 207, r.json()
    bad, good = r.json()["results"]
    assert bad["status"] == 400 and bad["code"] == "unreadable"
    img = Image.objects.get(project=project)
    assert img.pk == good["id"]
    assert media_files(settings.MEDIA_ROOT) == sorted([img.file.name, img.thumbnail.name])
