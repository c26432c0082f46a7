"""Annotation GET/PUT with optimistic concurrency, mask validation and history."""
from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
from django.db import connection

from apps.annotate.masks import decode_mask, encode_png
from apps.annotate.models import Annotation, AnnotationRevision


def b64(mask: np.ndarray) -> str:
    return base64.b64encode(encode_png(mask)).decode()


def classes_mask(image, value=2, box=(5, 15, 10, 30)) -> np.ndarray:
    m = np.zeros((image.height, image.width), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = value
    m[0, :] = 1
    return m


def url(image) -> str:
    return f"/api/v1/images/{image.pk}/annotation/"


@pytest.mark.django_db
def test_unannotated_image_reads_as_version_0(client_for, viewer, stored_image):
    r = client_for(viewer).get(url(stored_image))
    assert r.status_code == 200
    assert r.json() == {"version": 0, "classes_png": None, "instances_png": None, "strokes": [],
                             "labelled_pixels": 0, "updated_by": None, "updated_at": None}


@pytest.mark.django_db
def test_save_roundtrips_masks_and_increments_version(client_for, annotator, stored_image):
    c = client_for(annotator)
    cm = classes_mask(stored_image)
    inst = np.zeros_like(cm, dtype=np.uint16)
    inst[5:15, 10:30] = 300
    strokes = [{"tool": "brush", "class": 2, "radius": 3, "points": [[1, 2], [3, 4]]}]
    r = c.put(url(stored_image), {"version": 0, "classes_png": b64(cm), "instances_png": b64(inst),
                                  "strokes": strokes}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["version"] == 1 and r.json()["updated_by"] == "anna_annotator"
    got = c.get(url(stored_image)).json()
    assert np.array_equal(decode_mask(base64.b64decode(got["classes_png"])), cm)
    assert np.array_equal(decode_mask(base64.b64decode(got["instances_png"])), inst)
    assert got["strokes"] == strokes and got["labelled_pixels"] == int((cm > 0).sum())
    listing = c.get(f"/api/v1/projects/{stored_image.project_id}/images/").json()["results"][0]
    assert listing["has_annotation"] is True and listing["annotation_version"] == 1
    assert listing["labelled_pixels"] == int((cm > 0).sum())


@pytest.mark.django_db
def test_stale_annotation_save_returns_409_and_overwrites_nothing(client_for, owner, annotator, stored_image):
    first = classes_mask(stored_image, box=(1, 5, 1, 5))
    assert client_for(owner).put(url(stored_image), {"version": 0, "classes_png": b64(first)},
                                 format="json").status_code == 200
    # Two clients both loaded version 1 and both save.
    a_mask = classes_mask(stored_image, box=(10, 20, 10, 20))
    b_mask = classes_mask(stored_image, box=(30, 40, 30, 40))
    ra = client_for(owner).put(url(stored_image), {"version": 1, "classes_png": b64(a_mask)}, format="json")
    rb = client_for(annotator).put(url(stored_image), {"version": 1, "classes_png": b64(b_mask)}, format="json")
    assert ra.status_code == 200 and rb.status_code == 409
    body = rb.json()
    assert body["code"] == "stale_version" and body["current_version"] == 2 and body["updated_by"] == "olivia_owner"
    ann = Annotation.objects.get(image=stored_image)
    assert ann.version == 2 and np.array_equal(decode_mask(ann.classes_png), a_mask)
    # nothing lost: version 1 is in the history
    rev = AnnotationRevision.objects.get(image=stored_image, version=1)
    assert np.array_equal(decode_mask(rev.classes_png), first)


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_the_same_version_exactly_one_wins(client_for, owner, annotator, stored_image):
    """Two threads (two DB connections) race to save on top of version 0."""
    masks = {"owner": classes_mask(stored_image, box=(2, 8, 2, 8)),
             "annotator": classes_mask(stored_image, box=(20, 30, 20, 30))}
    users = {"owner": owner, "annotator": annotator}
    barrier = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def save(who):
        try:
            barrier.wait(10)
            r = client_for(users[who]).put(url(stored_image), {"version": 0, "classes_png": b64(masks[who])},
                                           format="json")
            statuses[who] = r.status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(w,)) for w in masks]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert sorted(statuses.values()) == [200, 409], statuses
    winner = next(w for w, s in statuses.items() if s == 200)
    ann = Annotation.objects.get(image=stored_image)
    assert ann.version == 1 and np.array_equal(decode_mask(ann.classes_png), masks[winner])


@pytest.mark.django_db
@pytest.mark.parametrize("payload,field", [
    ({"classes_png": "!!!not base64"}, "classes_png"),
    ({"classes_png": base64.b64encode(b"not a png").decode()}, "classes_png"),
    ({"classes_png": "WRONG_SIZE"}, "classes_png"),
    ({"classes_png": "UNKNOWN_CLASS"}, "classes_png"),
    ({"instances_png": "WRONG_SIZE16"}, "instances_png"),
    ({"strokes": "not a list"}, "strokes"),
    ({"version": None}, "version"),
    ({"version": -1}, "version"),
])
def test_invalid_annotation_is_rejected_with_400_and_nothing_saved(client_for, annotator, stored_image, payload,
                                                                   field):
    special = {
        "WRONG_SIZE": b64(np.zeros((stored_image.height + 1, stored_image.width), np.uint8)),
        "UNKNOWN_CLASS": b64(classes_mask(stored_image, value=7)),
        "WRONG_SIZE16": b64(np.ones((3, 3), np.uint16)),
    }
    body = {"version": 0, **{k: special.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}}
    body = {k: v for k, v in body.items() if v is not None}
    r = client_for(annotator).put(url(stored_image), body, format="json")
    assert r.status_code == 400, r.json()
    assert r.json()["code"] == "invalid" and field in r.json()["errors"]
    assert not Annotation.objects.filter(image=stored_image, version__gt=0).exists()


@pytest.mark.django_db
def test_history_lists_overwritten_versions_and_restore_brings_one_back(client_for, annotator, viewer, stored_image):
    c = client_for(annotator)
    m1, m2 = classes_mask(stored_image, box=(1, 9, 1, 9)), classes_mask(stored_image, box=(20, 40, 20, 40))
    c.put(url(stored_image), {"version": 0, "classes_png": b64(m1)}, format="json")
    c.put(url(stored_image), {"version": 1, "classes_png": b64(m2)}, format="json")
    hist = client_for(viewer).get(url(stored_image) + "history/")
    assert hist.status_code == 200 and [h["version"] for h in hist.json()] == [1]
    assert hist.json()[0]["labelled_pixels"] == int((m1 > 0).sum())
    one = client_for(viewer).get(url(stored_image) + "history/1/").json()
    assert np.array_equal(decode_mask(base64.b64decode(one["classes_png"])), m1)
    assert client_for(viewer).post(url(stored_image) + "history/1/restore/").status_code == 403
    r = c.post(url(stored_image) + "history/1/restore/")
    assert r.status_code == 200 and r.json()["version"] == 3
    assert np.array_equal(decode_mask(base64.b64decode(r.json()["classes_png"])), m1)
    assert [h["version"] for h in c.get(url(stored_image) + "history/").json()] == [2, 1]
    assert c.get(url(stored_image) + "history/9/").status_code == 404


@pytest.mark.django_db
def test_oversized_png_mask_is_refused_from_its_header(client_for, annotator, stored_image):
    """A mask far larger than the image is refused by its header size, before any decoding."""
    import struct
    import zlib

    w, h = 9000, 9000  # 81 megapixels if decoded; the PNG header alone says so (no IDAT data needed)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    r = client_for(annotator).put(url(stored_image), {"version": 0, "classes_png": base64.b64encode(png).decode()},
                                  format="json")
    assert r.status_code == 400 and "9000x9000" in r.json()["detail"]
