"""Errors outside DRF's own handling are JSON under /api/ too (Django's 400/403/404/500 handlers, a batch
of too many files), and auth/token/ is throttled against password guessing."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

pytestmark = pytest.mark.django_db


def assert_json_error(r, status: int, code: str | None = None):
    assert r.status_code == status, (r.status_code, r.content[:300])
    assert r["Content-Type"].startswith("application/json"), r["Content-Type"]
    body = json.loads(r.content)
    assert isinstance(body["detail"], str) and body["detail"] and body["code"]
    if code is not None:
        assert body["code"] == code, body


def test_an_unknown_api_url_is_a_json_404(client_for, owner):
    assert_json_error(client_for(owner).get("/api/v1/no-such-endpoint/"), 404, "not_found")
    assert_json_error(Client().get("/api/nothing-here"), 404, "not_found")


def test_pages_outside_the_api_keep_djangos_html_errors():
    r = Client().get("/admin/no-such-page/")
    assert r.status_code in (302, 404) and not r["Content-Type"].startswith("application/json")


def test_too_many_files_in_one_upload_is_a_json_400(client_for, annotator, project, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3  # the 1001-files case with the default of 1000, made cheap
    files = [SimpleUploadedFile(f"f{i}.tif", b"II*\x00" + bytes(8)) for i in range(4)]
    r = client_for(annotator).post(f"/api/v1/projects/{project.pk}/images/", {"files": files}, format="multipart")
    assert_json_error(r, 400, "too_many_files")
    assert "at most 3" in r.json()["detail"]
    assert project.images.count() == 0


def test_too_many_files_is_json_with_session_auth_too(annotator, project, settings):
    """With a browser session the CSRF check reads the body first, before the view runs."""
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    c = Client(enforce_csrf_checks=False)
    c.force_login(annotator)
    files = [SimpleUploadedFile(f"f{i}.tif", b"II*\x00" + bytes(8)) for i in range(4)]
    assert_json_error(c.post(f"/api/v1/projects/{project.pk}/images/", {"files": files}), 400, "too_many_files")


def test_a_json_body_over_the_memory_limit_is_a_json_413(owner, stored_image, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    c = Client()
    c.force_login(owner)
    body = json.dumps({"version": 0, "strokes": [{"tool": "brush", "points": [[1, 2]] * 500}]})
    r = c.put(f"/api/v1/images/{stored_image.pk}/annotation/", body, content_type="application/json")
    assert_json_error(r, 413, "too_large")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in r.json()["detail"]
    assert not hasattr(stored_image, "annotation") or stored_image.annotation.version == 0


def test_an_uncaught_exception_in_an_api_view_is_a_json_500(owner, monkeypatch):
    from apps.annotate import api

    def boom(self, request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.MeView, "get", boom)
    c = Client(raise_request_exception=False)
    c.force_login(owner)
    r = c.get("/api/v1/me/")
    assert_json_error(r, 500, "server_error")
    assert "a bug" not in r.json()["detail"]  # no internals in the answer


def test_handlers_answer_json_under_api_and_html_elsewhere(rf):
    from django.core.exceptions import PermissionDenied, SuspiciousOperation

    from labseg import views

    api, page = rf.get("/api/v1/x"), rf.get("/projects/1")
    assert_json_error(views.bad_request(api, SuspiciousOperation("x")), 400, "bad_request")
    assert_json_error(views.permission_denied(api, PermissionDenied()), 403, "permission_denied")
    assert_json_error(views.page_not_found(api, Exception()), 404, "not_found")
    assert_json_error(views.server_error(api), 500, "server_error")
    for r in (views.bad_request(page, SuspiciousOperation("x")), views.server_error(page)):
        assert not r["Content-Type"].startswith("application/json")


def test_the_eleventh_token_request_in_a_minute_is_a_json_429(api_client, owner):
    for _ in range(10):
        r = api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "wrong"}, format="json")
        assert r.status_code == 400
    r = api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "wrong"}, format="json")
    assert_json_error(r, 429, "throttled")
    assert int(r["Retry-After"]) > 0
    # the right password does not get through either until the window has passed
    r = api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "pw-" + "x" * 8},
                        format="json")
    assert r.status_code == 429


def test_the_token_throttle_counts_per_client_address(api_client, owner):
    for _ in range(10):
        api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "wrong"}, format="json",
                        REMOTE_ADDR="10.0.0.1")
    r = api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "pw-" + "x" * 8},
                        format="json", REMOTE_ADDR="10.0.0.2")
    assert r.status_code == 200 and r.json()["token"]
