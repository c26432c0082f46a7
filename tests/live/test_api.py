"""Live session API without a worker: roles, input validation, rate limit, stop."""
from __future__ import annotations

import numpy as np
import pytest

from apps.live.models import LiveSession

from .conftest import add_image, b64


@pytest.fixture
def image(project):
    return add_image(project, size=64)


def url(image, sid=None, tail=""):
    return f"/api/v1/images/{image.pk}/live/" + (f"{sid}/{tail}" if sid else "")


@pytest.mark.django_db
def test_owner_and_annotator_start_viewer_403_stranger_404(client_for, image, owner, annotator, viewer, stranger):
    assert client_for(viewer).post(url(image), {}, format="json").status_code == 403
    assert client_for(stranger).post(url(image), {}, format="json").status_code == 404
    assert client_for(None).post(url(image), {}, format="json").status_code in (401, 403)
    r = client_for(annotator).post(url(image), {"region": {"x": 0, "y": 0, "width": 32, "height": 32}}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["state"] == "queued" and body["region"] == {"x": 0, "y": 0, "width": 32, "height": 32}
    assert body["parent"] is None and body["overlay_url"] is None
    assert client_for(owner).post(url(image), {}, format="json").status_code == 201
    sid = body["id"]
    # a session is its owner's: other members and strangers get 404, like a missing one
    for other in (owner, viewer, stranger):
        assert client_for(other).get(url(image, sid)).status_code == 404
        assert client_for(other).delete(url(image, sid)).status_code == 404
    assert client_for(annotator).get(url(image, sid, "overlay.png")).status_code == 404  # no overlay yet
    assert client_for(annotator).post(url(image, sid, "keep/"), {}, format="json").status_code == 409


@pytest.mark.django_db
def test_bad_start_input_is_400(client_for, image, annotator):
    c = client_for(annotator)
    for body in ({"region": {"x": 0, "y": 0, "width": 65, "height": 10}}, {"region": {"x": -1}},
                 {"region": "all"}, {"parent": 999999}, {"parent": "x"}):
        r = c.post(url(image), body, format="json")
        assert r.status_code == 400, (body, r.content)
        assert r.json()["detail"]


@pytest.mark.django_db
def test_draft_validated_like_an_annotation_save(client_for, image, annotator, settings):
    settings.LABSEG_LIVE_DRAFT_INTERVAL_MS = 0
    c = client_for(annotator)
    sid = c.post(url(image), {}, format="json").json()["id"]
    good = np.zeros((64, 64), np.uint8)
    good[5:10, 5:10] = 1
    good[20:25, 20:25] = 2
    cases = {
        "wrong size": {"classes_png": b64(np.zeros((32, 64), np.uint8))},
        "unknown class": {"classes_png": b64(np.full((64, 64), 9, np.uint8))},
        "not base64": {"classes_png": "***"},
        "not a png": {"classes_png": "aGVsbG8="},
        "instances wrong size": {"classes_png": b64(good), "instances_png": b64(np.zeros((8, 8), np.uint16))},
        "region outside": {"region": {"x": 60, "y": 0, "width": 10, "height": 10}},
    }
    for what, body in cases.items():
        r = c.put(url(image, sid, "draft/"), body, format="json")
        assert r.status_code == 400, (what, r.content)
        assert r.headers["Content-Type"].startswith("application/json")
    assert LiveSession.objects.get(pk=sid).draft_version == 0  # nothing stored
    r = c.put(url(image, sid, "draft/"), {"classes_png": b64(good)}, format="json")
    assert r.status_code == 200 and r.json()["draft_version"] == 1
    r = c.put(url(image, sid, "draft/"), {}, format="json")  # a heartbeat only
    assert r.status_code == 200 and r.json()["draft_version"] == 1
    r = c.patch(url(image, sid), {"region": {"x": 8, "y": 8, "width": 16, "height": 16}}, format="json")
    assert r.status_code == 200 and r.json()["region"] == {"x": 8, "y": 8, "width": 16, "height": 16}


@pytest.mark.django_db
def test_drafts_faster_than_the_setting_get_429(client_for, image, annotator, settings):
    settings.LABSEG_LIVE_DRAFT_INTERVAL_MS = 60_000
    c = client_for(annotator)
    sid = c.post(url(image), {}, format="json").json()["id"]
    mask = b64(np.ones((64, 64), np.uint8))
    assert c.put(url(image, sid, "draft/"), {"classes_png": mask}, format="json").status_code == 200
    r = c.put(url(image, sid, "draft/"), {"classes_png": mask}, format="json")
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert c.put(url(image, sid, "draft/"), {}, format="json").status_code == 200  # heartbeats still pass


@pytest.mark.django_db
def test_second_start_takes_over_and_delete_stops(client_for, image, annotator):
    c = client_for(annotator)
    assert c.get(url(image)).status_code == 404  # no active session yet
    first = c.post(url(image), {}, format="json").json()["id"]
    second = c.post(url(image), {}, format="json").json()["id"]
    assert c.get(url(image)).json()["id"] == second  # what a reloaded page finds
    old = LiveSession.objects.get(pk=first)
    assert (old.status, old.stop_reason) == ("cancelled", "taken_over")
    r = c.put(url(image, first, "draft/"), {}, format="json")
    assert r.status_code == 409 and r.json()["stop_reason"] == "taken_over"
    r = c.delete(url(image, second))
    assert r.status_code == 200 and (r.json()["state"], r.json()["stop_reason"]) == ("cancelled", "stopped")
    assert c.delete(url(image, second)).status_code == 200  # idempotent
