"""The Export panel (issue 11.3) on the project page and the Models page: every export named with what opens it,
model exports made by a real worker followed to a download link; and object counts per class (issue 11.1)."""
from __future__ import annotations

import json

import pytest

from tests.inference.helpers import predict_inline
from tests.inference.test_every_class import disc_image, project3, three_class_version  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = ("export-annotation-masks", "export-prediction-masks", "export-row-torchscript", "export-row-onnx",
        "export-checkpoint")


def test_export_panel_is_on_both_pages_and_names_what_opens_each_file(project, viewer, logged_in_page):
    from tests.inference.conftest import create_tiny_version

    create_tiny_version(project, number=1, seed=3, is_active=True)
    page = logged_in_page(viewer, f"/projects/{project.pk}")
    panel = page.locator("[data-testid=export-panel]")
    panel.locator("[data-testid=export-row-onnx]").wait_for()
    for testid in ROWS:
        assert panel.locator(f"[data-testid={testid}]").count() == 1, testid
    text = panel.inner_text()
    assert "torch.jit.load" in text and "onnxruntime" in text and "Fiji" in text
    assert "torch.jit.load cannot open it" in panel.locator("[data-testid=export-checkpoint]").inner_text()
    href = panel.locator("[data-testid=download-annotation-masks]").get_attribute("href")
    assert href == f"/api/v1/projects/{project.pk}/export/masks.zip?include=annotations"

    page.goto(page.url.rsplit("/projects/", 1)[0] + f"/projects/{project.pk}/models")
    page.locator("[data-testid=export-panel] [data-testid=export-row-onnx]").wait_for()
    for testid in ROWS:
        assert page.locator(f"[data-testid=export-panel] [data-testid={testid}]").count() == 1, testid
    # the versions table's link to the raw checkpoint says what it is
    assert page.locator("[data-testid=model-row-1] a[download]").inner_text() == "checkpoint (raw)"


@pytest.mark.worker
def test_onnx_and_torchscript_exports_run_in_the_worker_to_a_download_link(project, viewer, celery_worker,
                                                                           logged_in_page, tmp_path):
    import onnx
    import torch

    from tests.inference.conftest import create_tiny_version

    version = create_tiny_version(project, number=1, seed=3, is_active=True)
    page = logged_in_page(viewer, f"/projects/{project.pk}/models")
    panel = page.locator("[data-testid=export-panel]")
    panel.locator("[data-testid=export-onnx]").click()
    link = panel.locator("[data-testid=download-onnx]")
    link.wait_for(timeout=180000)
    assert link.inner_text() == f"Download labseg-{project.pk}-v1.onnx"
    with page.expect_download() as dl:
        link.click()
    proto = onnx.load(dl.value.path())
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["labseg.json"])
    assert meta["model_version"]["id"] == version.pk

    panel.locator("[data-testid=export-torchscript]").click()
    link = panel.locator("[data-testid=download-torchscript]")
    link.wait_for(timeout=180000)
    with page.expect_download() as dl:
        link.click()
    target = tmp_path / dl.value.suggested_filename
    dl.value.save_as(target)
    extra = {"labseg.json": ""}
    net = torch.jit.load(str(target), _extra_files=extra)
    meta = json.loads(extra["labseg.json"])
    size = meta["tile"]["input"]
    out = net(torch.zeros(1, 1, size, size))
    assert out.shape == (1, 2, meta["tile"]["output"], meta["tile"]["output"])

    # asked again, the finished export is the file itself: the panel links to it at once
    page.reload()
    panel.locator("[data-testid=export-onnx]").click()
    link = panel.locator("[data-testid=download-onnx]")
    link.wait_for(timeout=30000)
    assert link.get_attribute("href") == f"/api/v1/model-versions/{version.pk}/export/onnx"


def test_export_errors_are_shown_in_the_panel(project, viewer, logged_in_page, broker_down):
    from tests.inference.conftest import create_tiny_version

    create_tiny_version(project, number=1, seed=3, is_active=True)
    page = logged_in_page(viewer, f"/projects/{project.pk}/models")
    panel = page.locator("[data-testid=export-panel]")
    panel.locator("[data-testid=export-onnx]").click()
    status = panel.locator("[data-testid=export-onnx-status][role=alert]")
    status.wait_for()
    assert "Export failed" in status.inner_text() and "queue" in status.inner_text()


def test_prediction_counts_per_class_on_the_image_grid(project3, three_class_version, disc_image, viewer,  # noqa: F811
                                                       logged_in_page):
    predict_inline(three_class_version, disc_image)
    page = logged_in_page(viewer, f"/projects/{project3.pk}")
    count = page.locator(f"[data-testid=prediction-count-{disc_image.pk}]")
    count.wait_for()
    assert count.inner_text() == "v1: 7 objects (nucleus 4, mitosis 3)"
