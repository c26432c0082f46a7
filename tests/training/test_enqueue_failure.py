"""Starting a training run while the broker is down answers 503 (not 202 "queued"), fails the run with a
message and does not block the project's next run."""
from __future__ import annotations

import pytest

from apps.training.models import RunStatus, TrainingRun


@pytest.mark.django_db(transaction=True)
def test_start_run_with_the_broker_down_answers_503_and_the_run_is_failed(project, annotator, client_for,
                                                                         broker_down, monkeypatch):
    r = client_for(annotator).post(f"/api/v1/projects/{project.pk}/training-runs/", {}, format="json")
    assert r.status_code == 503, (r.status_code, r.content[:300])
    body = r.json()
    assert body["code"] == "queue_unavailable" and "could not be reached" in body["detail"]
    run = TrainingRun.objects.get(pk=body["run_id"])
    assert run.status == RunStatus.FAILED and "training queue could not be reached" in run.error

    sent = []
    from apps.training import tasks

    monkeypatch.setattr(tasks.run_training, "delay", lambda pk: sent.append(pk))  # the broker is back
    r = client_for(annotator).post(f"/api/v1/projects/{project.pk}/training-runs/", {}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "queued" and sent == [r.json()["id"]]
