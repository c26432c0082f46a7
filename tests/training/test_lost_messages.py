"""A queued run whose broker message was lost is re-sent once, then failed with a message; a run queued
behind busy GPU workers is left alone; a duplicate delivery never runs a run twice (real PostgreSQL + Redis)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.annotate.models import Project
from apps.inference.models import Prediction
from apps.training import services, tasks
from apps.training.models import ModelVersion, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db

TIMEOUT = 60


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def lost_run(project, seconds_ago: float = 3 * TIMEOUT, **fields) -> TrainingRun:
    """A queued run whose message never reached the broker (nothing is sent)."""
    return TrainingRun.objects.create(project=project, enqueued_at=ago(seconds_ago), **fields)


def test_start_run_stamps_enqueued_at(project, owner, held_gpu_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(project, owner)
    run.refresh_from_db()
    assert run.enqueued_at is not None and abs((timezone.now() - run.enqueued_at).total_seconds()) < 30
    assert run.resends == 0 and held_gpu_queue() == [("training.run", (run.pk,))]


def test_a_lost_message_is_resent_once_then_the_run_fails_with_a_message(
        project, owner, held_gpu_queue, django_capture_on_commit_callbacks, client_for):
    run = lost_run(project)
    assert held_gpu_queue() == []
    with django_capture_on_commit_callbacks(execute=True):
        out = services.recover_lost_runs(TIMEOUT)
    assert out["resent"] == [run.pk] and out["failed"] == []
    assert held_gpu_queue() == [("training.run", (run.pk,))]  # the message is in Redis now
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.resends == 1 and run.enqueued_at > ago(30)
    assert "sent again" in run.message

    # not overdue again yet: nothing happens, no second message
    assert services.recover_lost_runs(TIMEOUT) == {"resent": [], "failed": [], "restarted": [], "cancelled": []}
    assert len(held_gpu_queue()) == 1

    # still nobody took it one timeout after the re-send: failed with a message naming the gpu queue
    TrainingRun.objects.filter(pk=run.pk).update(enqueued_at=ago(TIMEOUT + 5))
    assert services.recover_lost_runs(TIMEOUT)["failed"] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None and run.resends == 1
    assert "No worker took this training run within 2 minutes" in run.error
    assert "Is a worker for the gpu queue running?" in run.error
    assert len(held_gpu_queue()) == 1  # failing sends nothing
    # the project is not blocked: a new run starts (202), no 409
    r = client_for(owner).post(f"/api/v1/projects/{project.pk}/training-runs/", {}, format="json")
    assert r.status_code == 202, r.content


def test_rows_without_enqueued_at_count_from_created_at(project, held_gpu_queue, django_capture_on_commit_callbacks):
    run = TrainingRun.objects.create(project=project)  # a row from before the migration
    assert services.recover_lost_runs(TIMEOUT)["resent"] == []
    TrainingRun.objects.filter(pk=run.pk).update(created_at=ago(2 * TIMEOUT))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recover_lost_runs(TIMEOUT)["resent"] == [run.pk]
    assert held_gpu_queue() == [("training.run", (run.pk,))]


def _busy_prediction(project, heartbeat_s_ago: float) -> Prediction:
    from apps.annotate.models import Image

    image = Image.objects.create(project=project, original_filename="a.tif", checksum="c" * 64, size_bytes=1,
                                 width=8, height=8, channels=1, dtype="uint8", file="a.tif")
    version = ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")
    return Prediction.objects.create(image=image, model_version=version, status="running",
                                     heartbeat_at=ago(heartbeat_s_ago), started_at=ago(3600))


def test_a_run_waiting_behind_busy_gpu_workers_is_never_resent_or_failed(
        project, owner, held_gpu_queue, django_capture_on_commit_callbacks):
    other = Project.objects.create(name="Other", owner=owner)
    # a run of another project has trained for hours and is alive; a long prediction batch is running
    TrainingRun.objects.create(project=other, status=RunStatus.RUNNING, worker="gpu0", heartbeat_at=ago(1),
                               started_at=ago(5 * 3600), enqueued_at=ago(5 * 3600))
    pred = _busy_prediction(other, heartbeat_s_ago=2)
    waiting = lost_run(project, seconds_ago=4 * 3600, resends=1)  # even one already re-sent: not failed
    for _ in range(3):
        assert services.recover_lost_runs(TIMEOUT) == {"resent": [], "failed": [], "restarted": [], "cancelled": []}
    assert held_gpu_queue() == []

    # the training ended (finished 30 s ago): the clock starts at its last heartbeat, not at the enqueue
    TrainingRun.objects.filter(project=other).update(status=RunStatus.SUCCEEDED, heartbeat_at=ago(30))
    Prediction.objects.filter(pk=pred.pk).update(status="succeeded", heartbeat_at=ago(40))
    assert services.recover_lost_runs(TIMEOUT)["failed"] == []
    assert TrainingRun.objects.get(pk=waiting.pk).status == RunStatus.QUEUED

    # a whole timeout without any GPU heartbeat: now it counts (and this one was already re-sent)
    TrainingRun.objects.filter(project=other).update(heartbeat_at=ago(TIMEOUT + 1))
    Prediction.objects.filter(pk=pred.pk).update(heartbeat_at=ago(TIMEOUT + 1))
    assert services.recover_lost_runs(TIMEOUT)["failed"] == [waiting.pk]


def test_a_broker_error_during_the_resend_fails_the_run(project, broker_down, django_capture_on_commit_callbacks):
    run = lost_run(project)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recover_lost_runs(TIMEOUT)["resent"] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "training queue could not be reached" in run.error


def test_the_original_message_arriving_after_the_resend_does_not_run_the_run_again(
        project, held_gpu_queue, django_capture_on_commit_callbacks):
    run = lost_run(project)
    with django_capture_on_commit_callbacks(execute=True):
        services.recover_lost_runs(TIMEOUT)
    assert services.claim_run(run.pk, "gpu0:1")  # the re-sent message wins the claim ...
    # ... and the slow original is delivered afterwards: the task skips it (no second claim, no training)
    assert tasks.run_training(run.pk) == "skipped"
    assert not services.claim_run(run.pk, "gpu1:2")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1 and run.worker == "gpu0:1"


def test_worker_start_resends_but_never_fails(project, owner, held_gpu_queue, django_capture_on_commit_callbacks):
    first = lost_run(project)
    second = lost_run(Project.objects.create(name="Two", owner=owner), resends=1)
    with django_capture_on_commit_callbacks(execute=True):
        out = services.recover_lost_runs(TIMEOUT, at_worker_start=True)
    assert out["resent"] == [first.pk] and out["restarted"] == [second.pk] and out["failed"] == []
    second.refresh_from_db()
    assert second.status == RunStatus.QUEUED and second.enqueued_at > ago(30)  # a fresh timeout for it
    assert held_gpu_queue() == [("training.run", (first.pk,))]


def test_a_queued_run_with_a_cancel_request_is_cancelled(project):
    run = lost_run(project, seconds_ago=0, cancel_requested=True)  # a cancel that raced a re-queue
    assert services.recover_lost_runs(TIMEOUT)["cancelled"] == [run.pk]
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_stale_run_requeued_gets_a_fresh_enqueue_and_its_own_resend(project, django_capture_on_commit_callbacks):
    run = TrainingRun.objects.create(project=project, status=RunStatus.RUNNING, worker="w", attempts=1,
                                     heartbeat_at=ago(600), enqueued_at=ago(7200), resends=1)
    with django_capture_on_commit_callbacks():  # the message itself is not needed here
        assert services.recover_stale_runs(60)["requeued"] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.resends == 0 and run.enqueued_at > ago(30)


def test_the_beat_task_runs_both_recoveries(project, held_gpu_queue, django_capture_on_commit_callbacks, settings):
    from labseg.jobs.tasks import recover

    settings.LABSEG_QUEUED_TIMEOUT = TIMEOUT
    run = lost_run(project)
    with django_capture_on_commit_callbacks(execute=True):
        out = recover()["training"]  # one beat task for every job kind
    assert out["lost"]["resent"] == [run.pk] and out["stale"]["requeued"] == []
    assert held_gpu_queue() == [("training.run", (run.pk,))]
