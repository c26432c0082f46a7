"""Binary endpoints (PNG, TIFF, zip, checkpoint, model export, original file) answer any Accept header, and
their errors are JSON with ``Content-Type: application/json`` whatever the client accepts (the renderer
that lets them take ``Accept: image/png`` once labelled error bodies ``*/*``; the annotate ones answered 406)."""
import json

import pytest

URLS = ("/api/v1/predictions/999999/classes.png", "/api/v1/predictions/999999/instances.tif",
        "/api/v1/model-versions/999999/export/onnx", "/api/v1/model-versions/999999/checkpoint",
        "/api/v1/images/999999/display.png", "/api/v1/images/999999/thumbnail.png", "/api/v1/images/999999/file",
        "/api/v1/images/999999/weight-map.png")


@pytest.mark.django_db
@pytest.mark.parametrize("accept", [None, "image/png", "image/tiff", "application/octet-stream", "*/*"])
def test_errors_of_binary_endpoints_are_json_whatever_the_accept_header(client_for, owner, project, accept):
    c = client_for(owner)
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    urls = (*URLS, f"/api/v1/projects/{project.pk}/export/masks.zip?version=abc")
    for url in urls:
        r = c.get(url, **extra)
        assert r.status_code in (400, 404), (url, r.status_code, r.content[:200])
        assert r["Content-Type"] == "application/json", (url, r["Content-Type"])
        body = json.loads(r.content)
        assert set(body) >= {"detail", "code"}, (url, body)
