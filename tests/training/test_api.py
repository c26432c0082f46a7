"""Training API without a worker: roles, 202/409, config validation, cancel of a queued run, versions.

These tests run inside a rolled-back transaction, so ``transaction.on_commit`` never sends the task:
runs stay queued, which is exactly the state these behaviours are about.
"""
from __future__ import annotations

import pytest

from apps.training import services
from apps.training.models import ModelVersion, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


def runs_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/training-runs/"


def versions_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/model-versions/"


def make_version(project, number: int, *, active: bool = False, parent=None) -> ModelVersion:
    from django.core.files.base import ContentFile

    v = ModelVersion(project=project, number=number, parent=parent, is_active=active,
                     architecture={"in_channels": 1, "num_classes": 2})
    v.checkpoint.save(f"v{number}.pt", ContentFile(b"not really a checkpoint"), save=False)
    v.save()
    return v


def test_start_run_answers_202_with_a_queued_run(client_for, project, annotator):
    r = client_for(annotator).post(runs_url(project), {"config": {"steps": 5}}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "queued"
    run = TrainingRun.objects.get(pk=r.json()["id"])
    assert run.config == {"steps": 5} and run.created_by == annotator and run.parent_version is None


def test_second_run_while_one_is_queued_returns_409_with_the_running_one(client_for, project, owner):
    first = client_for(owner).post(runs_url(project), {}, format="json").json()
    r = client_for(owner).post(runs_url(project), {}, format="json")
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "run_active" and body["run"]["id"] == first["id"]
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_database_constraint_backs_the_409_when_the_check_is_raced(project, owner, monkeypatch):
    """Two requests that both passed the 'no active run' check: the partial unique index decides."""
    services.start_run(project, owner)
    monkeypatch.setattr(services, "active_run", lambda project_id, _calls=[]: _calls.append(1) or (
        None if len(_calls) == 1 else TrainingRun.objects.get(project_id=project_id)))
    with pytest.raises(services.ActiveRunExists):
        services.start_run(project, owner)
    assert TrainingRun.objects.filter(project=project).count() == 1


@pytest.mark.parametrize("config, fragment", [
    ({"no_such_option": 1}, "no_such_option"),
    ({"steps": 0}, "steps"),
    ({"steps": "many"}, "steps"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr": -1}, "lr"),
    ({"edge_calibration": "auto"}, "edge_calibration must be true or false"),  # auto is null
    ([1, 2], "config"),
])
def test_bad_config_answers_400_naming_the_option(client_for, project, owner, config, fragment):
    r = client_for(owner).post(runs_url(project), {"config": config}, format="json")
    assert r.status_code == 400, r.content
    assert fragment in r.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_parent_version_of_another_project_answers_400(client_for, project, owner):
    from apps.annotate.models import Project

    other = Project.objects.create(name="Other", owner=owner)
    foreign = make_version(other, 1)
    r = client_for(owner).post(runs_url(project), {"parent_version": foreign.pk}, format="json")
    assert r.status_code == 400 and "not in this project" in r.json()["detail"]


def test_parent_defaults_to_the_active_version(client_for, project, owner):
    make_version(project, 1)
    active = make_version(project, 2, active=True)
    r = client_for(owner).post(runs_url(project), {}, format="json")
    assert r.json()["parent_version"] == active.pk


def test_from_scratch_ignores_the_active_version(client_for, project, owner):
    make_version(project, 1, active=True)
    r = client_for(owner).post(runs_url(project), {"from_scratch": True}, format="json")
    assert r.status_code == 202 and r.json()["parent_version"] is None


def test_cancel_of_a_queued_run_cancels_it_at_once(client_for, project, annotator):
    run = client_for(annotator).post(runs_url(project), {}, format="json").json()
    r = client_for(annotator).post(f"/api/v1/training-runs/{run['id']}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # the broker message, when it arrives, finds nothing to claim
    assert services.claim_run(run["id"], "late-worker") is False
    # and a new run may start
    assert client_for(annotator).post(runs_url(project), {}, format="json").status_code == 202


def test_cancel_of_a_finished_run_answers_409(client_for, project, owner):
    run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED)
    r = client_for(owner).post(f"/api/v1/training-runs/{run.pk}/cancel/")
    assert r.status_code == 409 and r.json()["run"]["status"] == "succeeded"


def test_claim_is_one_conditional_update(project, owner):
    run = services.start_run(project, owner)
    assert services.claim_run(run.pk, "w1") is True
    assert services.claim_run(run.pk, "w2") is False
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempts) == ("running", "w1", 1)
    assert run.started_at is not None and run.heartbeat_at is not None


# --- roles -------------------------------------------------------------------------------------
@pytest.mark.parametrize("persona, expected", [("owner", 202), ("annotator", 202), ("viewer", 403),
                                               ("stranger", 404), (None, 401)])
def test_who_may_start_a_run(request, client_for, project, persona, expected):
    user = request.getfixturevalue(persona) if persona else None
    r = client_for(user).post(runs_url(project), {}, format="json")
    assert r.status_code == expected, r.content


@pytest.mark.parametrize("persona, expected", [("owner", 200), ("annotator", 200), ("viewer", 403),
                                               ("stranger", 404)])
def test_who_may_cancel_a_run(request, client_for, project, owner, persona, expected):
    run = services.start_run(project, owner)
    r = client_for(request.getfixturevalue(persona)).post(f"/api/v1/training-runs/{run.pk}/cancel/")
    assert r.status_code == expected


@pytest.mark.parametrize("persona, expected", [("owner", 200), ("annotator", 200), ("viewer", 200),
                                               ("stranger", 404)])
def test_who_may_read_runs_and_versions(request, client_for, project, owner, persona, expected):
    run = services.start_run(project, owner)
    version = make_version(project, 1, active=True)
    c = client_for(request.getfixturevalue(persona))
    for url in (runs_url(project), f"/api/v1/training-runs/{run.pk}/", versions_url(project),
                f"/api/v1/model-versions/{version.pk}/", f"/api/v1/model-versions/{version.pk}/checkpoint"):
        assert c.get(url).status_code == expected, url


@pytest.mark.parametrize("persona, expected", [("owner", 200), ("annotator", 403), ("viewer", 403),
                                               ("stranger", 404)])
def test_only_owners_activate(request, client_for, project, persona, expected):
    old = make_version(project, 1, active=True)
    new = make_version(project, 2)
    r = client_for(request.getfixturevalue(persona)).post(f"/api/v1/model-versions/{new.pk}/activate/")
    assert r.status_code == expected
    old.refresh_from_db(), new.refresh_from_db()
    assert (new.is_active, old.is_active) == ((True, False) if expected == 200 else (False, True))


@pytest.mark.parametrize("persona, expected", [("annotator", 403), ("viewer", 403), ("stranger", 404)])
def test_only_owners_upload_checkpoints(request, client_for, project, persona, expected):
    from django.core.files.uploadedfile import SimpleUploadedFile

    f = SimpleUploadedFile("m.pt", b"x")
    r = client_for(request.getfixturevalue(persona)).post(versions_url(project), {"checkpoint": f}, format="multipart")
    assert r.status_code == expected


def test_checkpoint_download_returns_the_file_bytes(client_for, project, viewer):
    version = make_version(project, 1)
    r = client_for(viewer).get(f"/api/v1/model-versions/{version.pk}/checkpoint")
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == b"not really a checkpoint"


def test_version_lists_lineage_nearest_first(client_for, project, owner):
    v1 = make_version(project, 1)
    v2 = make_version(project, 2, parent=v1)
    v3 = make_version(project, 3, parent=v2)
    r = client_for(owner).get(f"/api/v1/model-versions/{v3.pk}/")
    assert r.json()["lineage"] == [2, 1]


def test_record_metric_scores_updates_in_place(project):
    v = make_version(project, 1)
    services.record_metric_scores(v, None, "validation", {"pixel_error": 0.2, "f1_iou50": {"value": 0.5, "tp": 3}})
    services.record_metric_scores(v, None, "validation", {"pixel_error": 0.1, "bad": float("nan")})
    scores = {s.name: (s.value, s.details) for s in v.metric_scores.all()}
    assert scores == {"pixel_error": (0.1, {}), "f1_iou50": (0.5, {"tp": 3})}


def test_downsample_curve_keeps_the_last_point_and_the_limit():
    pts = [[i, float(i)] for i in range(1, 1001)]
    out = services.downsample_curve(pts, 100)
    assert len(out) <= 100 and out[-1] == [1000, 1000.0] and out[0] == [1, 1.0]
    assert services.downsample_curve(pts[:50], 100) == pts[:50]


def test_edge_calibration_accepts_true_false_and_null_for_auto(client_for, project, owner):
    for value in (None, True, False):
        TrainingRun.objects.all().delete()
        r = client_for(owner).post(runs_url(project), {"config": {"edge_calibration": value}}, format="json")
        assert r.status_code == 202, r.content
        assert TrainingRun.objects.get(pk=r.json()["id"]).config == {"edge_calibration": value}
