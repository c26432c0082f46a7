"""Malformed requests answer a JSON 4xx with a message, never a 500."""
from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest

from apps.annotate.masks import NPY_ZLIB_MAGIC

pytestmark = pytest.mark.django_db


def npy_zlib(array) -> str:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return base64.b64encode(NPY_ZLIB_MAGIC + zlib.compress(buf.getvalue())).decode()


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/v1/projects/", [1, 2, 3]),
    ("post", "/api/v1/projects/", {"name": "x" * 500}),
    ("post", "/api/v1/projects/", {"name": "ok", "channels": "DAPI"}),
    ("patch", "/api/v1/projects/{p}/", {"name": None}),
    ("post", "/api/v1/projects/{p}/members/", {"role": "viewer"}),
    ("patch", "/api/v1/projects/{p}/members/victor_viewer/", {}),
    ("post", "/api/v1/projects/{p}/classes/", {"name": "x", "color": 12}),
    ("patch", "/api/v1/images/{i}/", {"display_range": "bright"}),
    ("patch", "/api/v1/images/{i}/", {"display_range": [[0, 1]]}),
    ("put", "/api/v1/images/{i}/annotation/", "just a string"),
    ("put", "/api/v1/images/{i}/annotation/", {"version": "one"}),
    ("put", "/api/v1/images/{i}/annotation/", {"version": 0, "classes_png": 5}),
    ("put", "/api/v1/images/{i}/annotation/", {"version": 0, "classes_png": "NPY_GARBAGE"}),
    ("put", "/api/v1/images/{i}/annotation/", {"version": 0, "classes_png": "NPY_3D"}),
    ("put", "/api/v1/images/{i}/annotation/", {"version": 0, "instances_png": "RGB_PNG"}),
    ("put", "/api/v1/images/{i}/annotation/", {"version": 0, "strokes": [1, 2]}),
])
def test_malformed_request_is_a_json_4xx(client_for, owner, stored_image, method, path, body):
    from PIL import Image as PILImage

    rgb = io.BytesIO()
    PILImage.new("RGB", (stored_image.width, stored_image.height)).save(rgb, format="PNG")
    special = {"NPY_GARBAGE": base64.b64encode(NPY_ZLIB_MAGIC + b"not zlib").decode(),
               "NPY_3D": npy_zlib(np.zeros((2, stored_image.height, stored_image.width), np.uint32)),
               "RGB_PNG": base64.b64encode(rgb.getvalue()).decode()}
    if isinstance(body, dict):
        body = {k: special.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    url = path.format(p=stored_image.project_id, i=stored_image.pk)
    r = getattr(client_for(owner), method)(url, body, format="json")
    assert 400 <= r.status_code < 500, (r.status_code, r.content[:300])
    assert r.json()["detail"]


def test_unknown_ids_are_404(client_for, owner):
    c = client_for(owner)
    for url in ["/api/v1/projects/999999/", "/api/v1/images/999999/", "/api/v1/images/999999/display.png",
                "/api/v1/images/999999/annotation/", "/api/v1/projects/999999/images/"]:
        r = c.get(url)
        assert r.status_code == 404 and r.json()["code"] == "not_found", url
