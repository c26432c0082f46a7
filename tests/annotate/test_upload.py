"""Batch upload: originals kept byte for byte, metadata, per-file errors (207/400), dedupe, size limit."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.annotate.models import Image
from labseg.ml.io import display_range, read_image

from .conftest import nuclei, tiff_bytes, upload

pytestmark = pytest.mark.django_db


def post_files(client, project, files):
    return client.post(f"/api/v1/projects/{project.pk}/images/", {"files": files}, format="multipart")


def test_16bit_3channel_tiff_upload_keeps_bytes_and_reports_channels_dtype(client_for, annotator, project):
    array = nuclei(channels=3, dtype="uint16")
    data = tiff_bytes(array, metadata={"axes": "CYX"}, photometric="minisblack", compression="zlib")
    r = post_files(client_for(annotator), project, [upload("three.tif", data)])
    assert r.status_code == 201, r.json()
    (result,) = r.json()["results"]
    img = Image.objects.get(pk=result["id"])
    with img.file.open("rb") as fh:
        assert fh.read() == data
    assert (img.width, img.height, img.channels, img.dtype) == (80, 64, 3, "uint16")
    assert img.checksum == hashlib.sha256(data).hexdigest() and img.size_bytes == len(data)
    assert img.original_filename == "three.tif" and img.uploaded_by == annotator
    # Display range is the 0.5/99.5 percentile of each channel (numpy on the array we wrote).
    expect = [[np.percentile(array[c], 0.5), np.percentile(array[c], 99.5)] for c in range(3)]
    assert np.allclose(img.display_range, expect)
    # The original comes back unchanged from the file endpoint.
    got = client_for(annotator).get(f"/api/v1/images/{img.pk}/file")
    assert got.status_code == 200 and b"".join(got.streaming_content) == data
    # The thumbnail is a PNG of at most 256 px.
    t = client_for(annotator).get(f"/api/v1/images/{img.pk}/thumbnail.png")
    assert t.status_code == 200 and t["Content-Type"] == "image/png"
    thumb = PILImage.open(io.BytesIO(b"".join(t.streaming_content)))
    assert max(thumb.size) <= 256 and thumb.size[0] > thumb.size[1]


def test_batch_with_truncated_text_and_empty_files_keeps_good_ones_and_reports_each_bad(client_for, annotator,
                                                                                       project):
    good1 = tiff_bytes(nuclei(seed=1))
    good2 = tiff_bytes(nuclei(seed=2, dtype="uint8"))
    truncated = tiff_bytes(nuclei(seed=3))[:600]
    files = [upload("a.tif", good1), upload("trunc.tif", truncated), upload("notes.tif", b"just some text\n" * 20),
             upload("empty.tif", b""), upload("b.tif", good2)]
    r = post_files(client_for(annotator), project, files)
    assert r.status_code == 207
    body = r.json()
    results = {x["filename"]: x for x in body["results"]}
    assert [x["filename"] for x in body["results"]] == ["a.tif", "trunc.tif", "notes.tif", "empty.tif", "b.tif"]
    assert body["stored"] == 2 and body["failed"] == 3
    assert {"id"} <= set(results["a.tif"]) and {"id"} <= set(results["b.tif"])
    assert results["trunc.tif"]["code"] == "unreadable" and "truncated" in results["trunc.tif"]["error"]
    assert results["notes.tif"]["code"] == "unreadable" and "not a TIFF" in results["notes.tif"]["error"]
    assert results["empty.tif"]["code"] == "empty" and "empty" in results["empty.tif"]["error"]
    assert set(project.images.values_list("original_filename", flat=True)) == {"a.tif", "b.tif"}
    stored = Image.objects.get(pk=results["b.tif"]["id"])
    assert np.array_equal(read_image(stored.file.path), nuclei(seed=2, dtype="uint8"))


def test_batch_where_nothing_is_stored_answers_400_with_per_file_errors(client_for, annotator, project):
    r = post_files(client_for(annotator), project, [upload("x.png", b"\x89PNG\r\n\x1a\n garbage")])
    assert r.status_code == 400
    assert r.json()["results"][0]["code"] == "unreadable"
    assert not project.images.exists()


def test_upload_without_files_is_a_400(client_for, annotator, project):
    r = client_for(annotator).post(f"/api/v1/projects/{project.pk}/images/", {}, format="multipart")
    assert r.status_code == 400 and "files" in r.json()["detail"]


def test_duplicate_files_are_reported_not_stored_twice(client_for, annotator, project):
    data = tiff_bytes(nuclei(seed=5))
    first = post_files(client_for(annotator), project, [upload("one.tif", data)])
    first_id = first.json()["results"][0]["id"]
    r = post_files(client_for(annotator), project,
                   [upload("copy.tif", data), upload("new.tif", tiff_bytes(nuclei(seed=6)))])
    assert r.status_code == 207
    dup = r.json()["results"][0]
    assert dup["code"] == "duplicate" and dup["duplicate_of"] == first_id
    assert project.images.count() == 2
    # the same bytes in one batch: the second copy is the duplicate
    r = post_files(client_for(annotator), project, [upload("p.tif", tiff_bytes(nuclei(seed=7))),
                                                    upload("q.tif", tiff_bytes(nuclei(seed=7)))])
    assert r.status_code == 207 and r.json()["results"][1]["code"] == "duplicate"


def test_file_over_the_size_limit_gets_a_clear_error(client_for, annotator, project, settings):
    small = tiff_bytes(nuclei(shape=(16, 16), seed=1))
    big = tiff_bytes(nuclei(seed=2))
    settings.LABSEG_MAX_UPLOAD_BYTES = len(small) + 10
    r = post_files(client_for(annotator), project, [upload("small.tif", small), upload("big.tif", big)])
    assert r.status_code == 207
    err = r.json()["results"][1]
    assert err["code"] == "too_large" and str(settings.LABSEG_MAX_UPLOAD_BYTES) in err["error"]


@pytest.mark.parametrize("fmt,mode", [("PNG", "I;16"), ("PNG", "RGB"), ("JPEG", "L")])
def test_png_and_jpeg_uploads_report_their_layout(client_for, annotator, project, fmt, mode):
    rng = np.random.default_rng(0)
    if mode == "RGB":
        arr = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        pil, channels, dtype = PILImage.fromarray(arr), 3, "uint8"
    elif mode == "I;16":
        arr = rng.integers(0, 65535, (30, 40), dtype=np.uint16)
        pil, channels, dtype = PILImage.fromarray(arr), 1, "uint16"
    else:
        pil, channels, dtype = PILImage.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)), 1, "uint8"
    buf = io.BytesIO()
    pil.save(buf, format=fmt)
    r = post_files(client_for(annotator), project, [upload(f"x.{fmt.lower()}", buf.getvalue())])
    assert r.status_code == 201, r.json()
    img = Image.objects.get(pk=r.json()["results"][0]["id"])
    assert (img.width, img.height, img.channels, img.dtype) == (40, 30, channels, dtype)
    assert len(img.display_range) == channels


def test_hyperstack_with_z_stores_first_plane_metadata(client_for, annotator, project):
    stack = np.stack([nuclei(channels=2, seed=1), nuclei(channels=2, seed=2)])  # Z, C, Y, X
    data = tiff_bytes(stack, imagej=True, metadata={"axes": "ZCYX"})
    r = post_files(client_for(annotator), project, [upload("stack.tif", data)])
    assert r.status_code == 201
    assert r.json()["results"][0]["note"] == "a stack (Z=2): only the first plane is used"
    img = Image.objects.get(pk=r.json()["results"][0]["id"])
    assert (img.channels, img.width, img.height) == (2, 80, 64)
    assert np.allclose(img.display_range, display_range(stack[0]))


def test_image_patch_split_and_list_filter(client_for, annotator, stored_image, project):
    c = client_for(annotator)
    r = c.patch(f"/api/v1/images/{stored_image.pk}/", {"split": "validation"}, format="json")
    assert r.status_code == 200 and r.json()["split"] == "validation"
    assert c.get(f"/api/v1/projects/{project.pk}/images/?split=validation").json()["count"] == 1
    assert c.get(f"/api/v1/projects/{project.pk}/images/?split=train").json()["count"] == 0
    assert c.get(f"/api/v1/projects/{project.pk}/images/?split=bogus").status_code == 400
    assert c.patch(f"/api/v1/images/{stored_image.pk}/", {"split": "nope"}, format="json").status_code == 400
    bad_range = c.patch(f"/api/v1/images/{stored_image.pk}/", {"display_range": [[5, 1], [0, 9]]}, format="json")
    assert bad_range.status_code == 400


def test_a_missing_thumbnail_is_rendered_on_request(client_for, viewer, stored_image):
    from pathlib import Path

    Path(stored_image.thumbnail.path).unlink()  # file gone from storage
    r = client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/thumbnail.png")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert PILImage.open(io.BytesIO(b"".join(r.streaming_content))).size[0] > 0
    Image.objects.filter(pk=stored_image.pk).update(thumbnail="")  # never had one (stored by a script)
    r = client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/thumbnail.png")
    assert r.status_code == 200 and Image.objects.get(pk=stored_image.pk).thumbnail.name


def test_deleting_an_image_removes_row_and_files(client_for, owner, stored_image, django_capture_on_commit_callbacks):
    from pathlib import Path

    path = Path(stored_image.file.path)
    assert path.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).delete(f"/api/v1/images/{stored_image.pk}/")
    assert r.status_code == 204
    assert not Image.objects.filter(pk=stored_image.pk).exists() and not path.exists()


def test_large_batch_streams_to_disk_and_stops_writing_an_oversized_file(client_for, annotator, project, settings,
                                                                        monkeypatch):
    """Bodies above FILE_UPLOAD_MAX_MEMORY_SIZE go to temporary files; an oversized file is reported
    with its true size although only the first LABSEG_MAX_UPLOAD_BYTES of it were written."""
    from apps.annotate.uploads import SizeLimitedUploadHandler

    written: dict[str, int] = {}
    original = SizeLimitedUploadHandler.file_complete

    def spy(self, file_size):
        written[self.file_name] = self.file.tell()  # bytes actually on disk
        return original(self, file_size)

    monkeypatch.setattr(SizeLimitedUploadHandler, "file_complete", spy)
    good = tiff_bytes(nuclei(shape=(32, 32), seed=11))
    big = tiff_bytes(nuclei(shape=(64, 80), seed=12))
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.LABSEG_MAX_UPLOAD_BYTES = len(good) + 100
    r = post_files(client_for(annotator), project, [upload("good.tif", good), upload("big.tif", big)])
    assert r.status_code == 207, r.json()
    ok, err = r.json()["results"]
    assert err["code"] == "too_large" and f"{len(big)} bytes" in err["error"]
    with Image.objects.get(pk=ok["id"]).file.open("rb") as fh:
        assert fh.read() == good
    assert written["good.tif"] == len(good) and written["big.tif"] <= settings.LABSEG_MAX_UPLOAD_BYTES < len(big)


def test_patching_the_display_range_re_renders_the_thumbnail(client_for, annotator, stored_image):
    def thumb():
        r = client_for(annotator).get(f"/api/v1/images/{stored_image.pk}/thumbnail.png")
        return np.asarray(PILImage.open(io.BytesIO(b"".join(r.streaming_content))))

    before = thumb()
    hi = float(stored_image._array.max()) * 10  # a much wider range: a darker rendering
    r = client_for(annotator).patch(f"/api/v1/images/{stored_image.pk}/",
                                    {"display_range": [[0, hi], [0, hi]]}, format="json")
    assert r.status_code == 200 and r.json()["display_range"] == [[0, hi], [0, hi]]
    after = thumb()
    assert after.shape == before.shape and after.mean() < before.mean() / 3
