"""Admin for the PI: version list with key metrics, lineage on the change page, activate / compare /
download actions, and the run admin's cancel action."""
from __future__ import annotations

import pytest
from django.test import Client

from apps.training import services
from apps.training.models import ModelVersion, RunStatus, TrainingRun

from .test_api import make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(make_user) -> Client:
    c = Client()
    c.force_login(make_user("pi_admin", is_staff=True, is_superuser=True))
    return c


@pytest.fixture
def versions(project):
    v1 = make_version(project, 1, active=True)
    v2 = make_version(project, 2, parent=v1)
    v3 = make_version(project, 3, parent=v2)
    services.record_metric_scores(v1, None, "validation", {"f1_iou50": 0.5, "pixel_error": 0.2})
    services.record_metric_scores(v3, None, "validation", {"f1_iou50": 0.75, "pixel_error": 0.125})
    return v1, v2, v3


def test_version_list_shows_key_metrics_and_active_flag(admin_client, versions):
    html = admin_client.get("/admin/training/modelversion/").content.decode()
    assert "f1_iou50=0.750" in html and "pixel_error=0.125" in html and "f1_iou50=0.500" in html


def test_change_page_shows_the_parent_chain(admin_client, versions):
    v1, v2, v3 = versions
    html = admin_client.get(f"/admin/training/modelversion/{v3.pk}/change/").content.decode()
    assert ">v3</a> ← <a" in html and ">v2</a> ← <a" in html and f"/admin/training/modelversion/{v1.pk}/change/" in html


def test_activate_action_switches_the_active_version(admin_client, versions):
    v1, v2, v3 = versions
    r = admin_client.post("/admin/training/modelversion/", {"action": "activate", "_selected_action": [v3.pk]})
    assert r.status_code == 302
    assert list(ModelVersion.objects.filter(is_active=True)) == [v3]


def test_compare_shows_metrics_side_by_side(admin_client, versions):
    v1, v2, v3 = versions
    r = admin_client.post("/admin/training/modelversion/", {"action": "compare", "_selected_action": [v1.pk, v3.pk]})
    assert r.status_code == 302 and "compare/?ids=" in r["Location"]
    html = admin_client.get(r["Location"]).content.decode()
    row = html[html.index("<td>f1_iou50</td>"):]
    row = row[: row.index("</tr>")]
    assert row.index("0.5000") < row.index("0.7500")  # v1 then v3, in version order


def test_download_action_returns_the_checkpoint(admin_client, versions):
    r = admin_client.post("/admin/training/modelversion/", {"action": "download", "_selected_action": [versions[0].pk]})
    assert r.status_code == 200 and b"".join(r.streaming_content) == b"not really a checkpoint"


def test_run_admin_cancel_action(admin_client, project, owner):
    run = services.start_run(project, owner)
    r = admin_client.post("/admin/training/trainingrun/", {"action": "cancel", "_selected_action": [run.pk]})
    assert r.status_code == 302
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert admin_client.get(f"/admin/training/trainingrun/{run.pk}/change/").status_code == 200
    assert admin_client.get("/admin/training/metricscore/").status_code == 200
