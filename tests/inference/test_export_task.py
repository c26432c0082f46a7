"""A model export made by a real Celery worker through the API: 202 with the job, the same job while it
runs, then the file (the web process never loads torch for it)."""
import json
import time

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_an_onnx_export_is_made_by_the_worker_and_downloaded(celery_worker, project, make_version, viewer,
                                                             client_for):
    import onnx

    version = make_version(project, seed=3)
    client = client_for(viewer)
    url = f"/api/v1/model-versions/{version.pk}/export/onnx"
    first = client.get(url)
    assert first.status_code == 202, first.content
    job = first.json()["id"]
    deadline = time.time() + 180
    while (detail := client.get(f"/api/v1/exports/{job}/").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, detail
        again = client.get(url)  # asking again while it runs: the same job (or, once made, the file)
        assert again.status_code == 200 or again.json()["id"] == job
        time.sleep(0.3)
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["progress"] == 1.0 and detail["filename"] == f"labseg-{project.pk}-v{version.number}.onnx"
    r = client.get(detail["download"])
    assert r.status_code == 200 and "attachment" in r["Content-Disposition"]
    proto = onnx.load_from_string(b"".join(r.streaming_content))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["labseg.json"])["model_version"]["id"] == version.pk
