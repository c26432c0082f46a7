"""The one job lifecycle (labseg.jobs), for every kind: training runs, predictions and model exports.

The lost-worker rule: a worker whose job was recovered as stale (re-queued, claimed by another worker)
is stopped at its next write and changes nothing, its heartbeat, progress, failure or final write alike.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.inference import services as inference
from apps.inference.models import ModelExport, Prediction
from apps.training import services as training
from apps.training.models import ModelVersion, TrainingRun
from labseg.jobs import service as jobs
from labseg.jobs.models import JobStatus

pytestmark = pytest.mark.django_db

KINDS = ["training", "prediction", "export"]


@pytest.fixture
def new_job(project, make_image):
    """``new_job(kind) -> (JobKind, row)``: a queued row of that kind (nothing is sent)."""
    version = ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")

    def make(name: str):
        if name == "training":
            return training.RUNS, TrainingRun.objects.create(project=project)
        if name == "prediction":
            image, *_ = make_image(project)
            return inference.PREDICTIONS, Prediction.objects.create(image=image, model_version=version)
        return inference.EXPORTS, ModelExport.objects.create(project=project, model_version=version, format="onnx")

    return make


def stale(kind, row, seconds: float = 600) -> None:
    kind.objects.filter(pk=row.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def row_of(kind, row):
    return kind.objects.get(pk=row.pk)


def test_every_kind_is_recovered_by_the_one_beat_task():
    assert set(KINDS) <= set(jobs.KINDS)
    from labseg.celery import app

    assert [e["task"] for e in app.conf.beat_schedule.values()] == ["jobs.recover"]


@pytest.mark.parametrize("name", KINDS)
def test_a_claim_wins_once(name, new_job):
    kind, row = new_job(name)
    assert jobs.claim(kind, row.pk, "w:1")
    assert not jobs.claim(kind, row.pk, "w:2")  # a redelivered message finds it running
    got = row_of(kind, row)
    assert got.status == JobStatus.RUNNING and got.worker == "w:1" and got.attempts == 1


@pytest.mark.parametrize("name", KINDS)
def test_a_worker_that_lost_its_job_is_stopped_and_changes_nothing(name, new_job, django_capture_on_commit_callbacks):
    kind, row = new_job(name)
    assert jobs.claim(kind, row.pk, "w:1")
    jobs.report(kind, row.pk, "w:1", 0.4)  # its own: fine
    stale(kind, row)
    with django_capture_on_commit_callbacks() as sent:
        assert jobs.recover_stale(kind, 60)["requeued"] == [row.pk]
    assert len(sent) == 1  # a new message for the re-queued job
    assert jobs.claim(kind, row.pk, "w:2")  # another worker takes it (attempt 2)
    before = row_of(kind, row)

    with pytest.raises(jobs.JobLost):
        jobs.beat(kind, row.pk, "w:1")
    with pytest.raises(jobs.JobLost):
        jobs.report(kind, row.pk, "w:1", 0.9)
    assert not jobs.touch(kind, row.pk, "w:1")
    assert not jobs.fail(kind, row.pk, "the zombie's error", worker="w:1")
    assert not jobs.finish_if_ours(kind, row.pk, "w:1")
    after = row_of(kind, row)
    assert (after.status, after.worker, after.progress, after.error, after.heartbeat_at, after.attempts) == (
        JobStatus.RUNNING, "w:2", before.progress, "", before.heartbeat_at, 2)

    assert jobs.finish_if_ours(kind, row.pk, "w:2")  # the owner's final write
    done = row_of(kind, row)
    assert done.status == JobStatus.SUCCEEDED and done.progress == 1.0 and done.finished_at is not None


@pytest.mark.parametrize("name", KINDS)
def test_a_job_that_kills_its_worker_twice_fails_with_a_message(name, new_job, django_capture_on_commit_callbacks):
    kind, row = new_job(name)
    for attempt, outcome in ((1, "requeued"), (2, "failed")):
        assert jobs.claim(kind, row.pk, f"w:{attempt}")
        stale(kind, row)
        with django_capture_on_commit_callbacks():
            assert jobs.recover_stale(kind, 60)[outcome] == [row.pk]
    failed = row_of(kind, row)
    assert failed.status == JobStatus.FAILED and "stopped responding" in failed.error and "twice" in failed.error
    assert kind.noun in failed.error


@pytest.mark.parametrize("name", KINDS)
def test_a_fresh_heartbeat_is_left_alone(name, new_job):
    kind, row = new_job(name)
    assert jobs.claim(kind, row.pk, "w:1")
    assert jobs.recover_stale(kind, 60) == {"requeued": [], "failed": [], "cancelled": []}
    assert row_of(kind, row).status == JobStatus.RUNNING


@pytest.mark.parametrize("name", KINDS)
def test_a_cancelled_job_stops_at_its_next_beat(name, new_job):
    kind, row = new_job(name)
    assert jobs.claim(kind, row.pk, "w:1")
    jobs.cancel(kind, row.pk)
    with pytest.raises(jobs.JobStopped) as stop:
        jobs.beat(kind, row.pk, "w:1")
    assert stop.value.reason == "cancelled"
    assert jobs.finish_if_ours(kind, row.pk, "w:1", JobStatus.CANCELLED)
    assert row_of(kind, row).status == JobStatus.CANCELLED


@pytest.mark.parametrize("name", KINDS)
def test_a_lost_message_is_resent_once_then_failed(name, new_job, django_capture_on_commit_callbacks):
    kind, row = new_job(name)
    old = timezone.now() - timedelta(seconds=600)
    kind.objects.filter(pk=row.pk).update(enqueued_at=old)
    with django_capture_on_commit_callbacks() as sent:
        assert jobs.recover_lost(kind, 60)["resent"] == [row.pk]
    assert len(sent) == 1 and row_of(kind, row).resends == 1
    kind.objects.filter(pk=row.pk).update(enqueued_at=old)
    assert jobs.recover_lost(kind, 60)["failed"] == [row.pk]
    failed = row_of(kind, row)
    assert failed.status == JobStatus.FAILED and f"No worker took this {kind.noun}" in failed.error
