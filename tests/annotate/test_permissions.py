"""Every role (owner, annotator, viewer, stranger, anonymous) against every annotate endpoint.

Non-members get 404 (a project's existence is not revealed), members below the needed role 403,
anonymous requests 401 before anything is looked up.
"""
from __future__ import annotations

import base64

import numpy as np
import pytest

from apps.annotate import services
from apps.annotate.masks import encode_png

from .conftest import nuclei, tiff_bytes, upload

ROLES = ["owner", "annotator", "viewer", "stranger", "anonymous"]
ANON = (401,)  # Token auth is listed first, so DRF answers 401 with WWW-Authenticate: Token


def expect(read=None, annotate=None, own=None, *, ok: int = 200) -> dict:
    """Expected status per role for a project-scoped endpoint needing ``read``, ``annotate`` or ``own``."""
    need = "read" if read else "annotate" if annotate else "own"
    allowed = {"read": {"owner", "annotator", "viewer"}, "annotate": {"owner", "annotator"}, "own": {"owner"}}[need]
    out = {r: (ok if r in allowed else 403) for r in ("owner", "annotator", "viewer")}
    out.update(stranger=404, anonymous=ANON)
    return out


def everyone(ok: int) -> dict:
    return {"owner": ok, "annotator": ok, "viewer": ok, "stranger": ok, "anonymous": ANON}


def mask_b64(img) -> str:
    m = np.zeros((img.height, img.width), np.uint8)
    m[2:6, 2:6] = 2
    return base64.b64encode(encode_png(m)).decode()


# (name, method, path template, body factory or None, format, expected per role)
ENDPOINTS = [
    ("projects-list", "get", "/api/v1/projects/", None, None, everyone(200)),
    ("projects-create", "post", "/api/v1/projects/", lambda ctx: {"name": "mine", "classes": [{"name": "cell"}]},
     "json", everyone(201)),
    ("me", "get", "/api/v1/me/", None, None, everyone(200)),
    ("project-get", "get", "/api/v1/projects/{p}/", None, None, expect(read=1)),
    ("project-patch", "patch", "/api/v1/projects/{p}/", lambda ctx: {"description": "new"}, "json", expect(own=1)),
    ("project-delete", "delete", "/api/v1/projects/{p}/", None, None, expect(own=1, ok=204)),
    ("members-list", "get", "/api/v1/projects/{p}/members/", None, None, expect(read=1)),
    ("members-add", "post", "/api/v1/projects/{p}/members/", lambda ctx: {"username": "newbie", "role": "viewer"},
     "json", expect(own=1, ok=201)),
    ("member-patch", "patch", "/api/v1/projects/{p}/members/victor_viewer/", lambda ctx: {"role": "annotator"},
     "json", expect(own=1)),
    ("member-delete", "delete", "/api/v1/projects/{p}/members/victor_viewer/", None, None, expect(own=1, ok=204)),
    ("classes-list", "get", "/api/v1/projects/{p}/classes/", None, None, expect(read=1)),
    ("classes-add", "post", "/api/v1/projects/{p}/classes/", lambda ctx: {"name": "mitosis", "color": "#123456"},
     "json", expect(own=1, ok=201)),
    ("class-patch", "patch", "/api/v1/projects/{p}/classes/2/", lambda ctx: {"color": "#abcdef"}, "json",
     expect(own=1)),
    ("images-list", "get", "/api/v1/projects/{p}/images/", None, None, expect(read=1)),
    ("images-upload", "post", "/api/v1/projects/{p}/images/",
     lambda ctx: {"files": [upload("new.tif", tiff_bytes(nuclei(shape=(16, 16), seed=9)))]}, "multipart",
     expect(annotate=1, ok=201)),
    ("image-get", "get", "/api/v1/images/{i}/", None, None, expect(read=1)),
    ("image-patch", "patch", "/api/v1/images/{i}/", lambda ctx: {"split": "test"}, "json", expect(annotate=1)),
    ("image-delete", "delete", "/api/v1/images/{i}/", None, None, expect(own=1, ok=204)),
    ("image-file", "get", "/api/v1/images/{i}/file", None, None, expect(read=1)),
    ("image-display", "get", "/api/v1/images/{i}/display.png?level=1", None, None, expect(read=1)),
    ("image-thumbnail", "get", "/api/v1/images/{i}/thumbnail.png", None, None, expect(read=1)),
    ("annotation-get", "get", "/api/v1/images/{i}/annotation/", None, None, expect(read=1)),
    ("annotation-put", "put", "/api/v1/images/{i}/annotation/",
     lambda ctx: {"version": 2, "classes_png": mask_b64(ctx["image"])}, "json", expect(annotate=1)),
    ("history-list", "get", "/api/v1/images/{i}/annotation/history/", None, None, expect(read=1)),
    ("history-get", "get", "/api/v1/images/{i}/annotation/history/1/", None, None, expect(read=1)),
    ("history-restore", "post", "/api/v1/images/{i}/annotation/history/1/restore/", None, None, expect(annotate=1)),
]


@pytest.fixture
def ctx(project, owner, make_user):
    make_user("newbie")
    _, res = services.upload_images(user=owner, project_id=project.pk,
                                    files=[upload("a.tif", tiff_bytes(nuclei(shape=(24, 32))))])
    image = project.images.get(pk=res[0]["id"])
    for version in (0, 1):  # version 2 current, version 1 in the history
        services.save_annotation(user=owner, image_id=image.pk, version=version, classes_png=mask_b64(image))
    return {"project": project, "image": image}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name,method,path,body,fmt,expected", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_role_against_endpoint(request, client_for, ctx, role, name, method, path, body, fmt, expected):
    user = None if role == "anonymous" else request.getfixturevalue(role)
    url = path.format(p=ctx["project"].pk, i=ctx["image"].pk)
    kwargs = {"format": fmt} if fmt else {}
    response = getattr(client_for(user), method)(url, body(ctx) if body else None, **kwargs)
    want = expected[role]
    assert response.status_code in (want if isinstance(want, tuple) else (want,)), (
        response.status_code, getattr(response, "data", None))
    if response.status_code >= 400:
        assert response.json()["detail"] and response.json()["code"]


@pytest.mark.django_db
def test_stranger_sees_no_projects_in_the_list(client_for, stranger, project):
    assert client_for(stranger).get("/api/v1/projects/").json() == []


@pytest.mark.django_db
def test_token_auth_flow(api_client, owner, project):
    anonymous = api_client.get("/api/v1/projects/")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    assert anonymous.json()["code"] == "not_authenticated" and anonymous.json()["detail"]
    bad = api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "wrong"}, format="json")
    assert bad.status_code == 400 and bad.json()["detail"]
    r = api_client.post("/api/v1/auth/token/", {"username": owner.username, "password": "pw-" + "x" * 8},
                        format="json")
    assert r.status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {r.json()['token']}")
    me = api_client.get("/api/v1/me/").json()
    assert me["username"] == owner.username and me["is_staff"] is False
    assert [p["id"] for p in api_client.get("/api/v1/projects/").json()] == [project.pk]
