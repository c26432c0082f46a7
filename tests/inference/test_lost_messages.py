"""A queued prediction whose broker message was lost is re-sent once (a real worker then runs it, once, even
when the original message arrives too), then failed with a message; a long prediction queue behind a busy
GPU worker is left alone (real PostgreSQL + Redis)."""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.inference import services
from apps.inference.models import Prediction, PredictionStatus
from apps.training.models import ModelVersion
from tests.helpers import wait_for

from ..gpu_queue import _purge

TIMEOUT = 60


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def bare_version(project):
    return ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")


@pytest.mark.django_db
def test_a_lost_prediction_is_resent_once_then_failed(project, make_image, bare_version, owner, held_gpu_queue,
                                                      django_capture_on_commit_callbacks):
    image, *_ = make_image(project)
    with django_capture_on_commit_callbacks(execute=True):
        [pred] = services.request_predictions(bare_version, [image.pk], owner)
    pred.refresh_from_db()
    assert pred.enqueued_at > ago(30) and held_gpu_queue() == [("inference.predict", (pred.pk,))]
    assert services.recover_lost_predictions(TIMEOUT)["resent"] == []  # sent a moment ago: not overdue

    # the message is lost (Redis restarted without persistence) and the GPU queue is idle
    Prediction.objects.filter(pk=pred.pk).update(enqueued_at=ago(TIMEOUT + 5))
    _purge()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recover_lost_predictions(TIMEOUT) == {
            "resent": [pred.pk], "failed": [], "restarted": [], "cancelled": []}
    assert held_gpu_queue() == [("inference.predict", (pred.pk,))]
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.QUEUED and pred.resends == 1 and pred.attempts == 0

    Prediction.objects.filter(pk=pred.pk).update(enqueued_at=ago(TIMEOUT + 5))
    assert services.recover_lost_predictions(TIMEOUT)["failed"] == [pred.pk]
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.FAILED and pred.finished_at is not None
    assert "No worker took this prediction within 2 minutes" in pred.error
    assert "Is a worker for the gpu queue running?" in pred.error
    # asking again gives a new prediction (the failed one does not block it)
    with django_capture_on_commit_callbacks(execute=True):
        [again] = services.request_predictions(bare_version, [image.pk], owner)
    assert again.pk != pred.pk and again.status == PredictionStatus.QUEUED


@pytest.mark.django_db
def test_a_long_queue_behind_a_busy_gpu_worker_is_left_alone(project, make_image, bare_version, held_gpu_queue):
    images = [make_image(project, seed=i)[0] for i in range(6)]
    running = Prediction.objects.create(image=images[0], model_version=bare_version, status="running",
                                        heartbeat_at=ago(2), enqueued_at=ago(7200), started_at=ago(5))
    waiting = [Prediction.objects.create(image=im, model_version=bare_version, enqueued_at=ago(7200), resends=r)
               for im, r in zip(images[1:], [0, 1, 0, 1, 0])]
    assert services.recover_lost_predictions(TIMEOUT) == {"resent": [], "failed": [], "restarted": [], "cancelled": []}
    assert held_gpu_queue() == []
    assert set(Prediction.objects.filter(pk__in=[w.pk for w in waiting]).values_list("status", flat=True)) == {"queued"}
    # the worker dies mid-queue: once no heartbeat came for a timeout, the waiting ones are handled
    Prediction.objects.filter(pk=running.pk).update(heartbeat_at=ago(TIMEOUT + 1))
    out = services.recover_lost_predictions(TIMEOUT)
    assert sorted(out["failed"]) == [waiting[1].pk, waiting[3].pk] and len(out["resent"]) == 3


@pytest.mark.django_db
def test_a_broker_error_during_the_resend_fails_the_prediction(project, make_image, bare_version, broker_down,
                                                               django_capture_on_commit_callbacks):
    image, *_ = make_image(project)
    pred = Prediction.objects.create(image=image, model_version=bare_version, enqueued_at=ago(TIMEOUT + 5))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recover_lost_predictions(TIMEOUT)["resent"] == [pred.pk]
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.FAILED and "prediction queue could not be reached" in pred.error


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_resent_prediction_once_and_skips_the_late_original(
        celery_worker, held_gpu_queue, project, make_image, make_version):
    """The lost message turns up after the re-send: two deliveries, one claim, one run."""
    from labseg.celery import app

    image, *_ = make_image(project)
    version = make_version(project)
    pred = Prediction.objects.create(image=image, model_version=version, enqueued_at=ago(TIMEOUT + 5))
    assert services.recover_lost_predictions(TIMEOUT)["resent"] == [pred.pk]  # autocommit: sent at once
    from apps.inference.tasks import predict

    predict.delay(pred.pk)  # the "lost" original arrives late
    assert held_gpu_queue() == [("inference.predict", (pred.pk,))] * 2
    host = celery_worker.name.replace("%h", os.uname().nodename)
    app.control.add_consumer("gpu", destination=[host], reply=True, timeout=2.0)
    try:
        wait_for(lambda: Prediction.objects.get(pk=pred.pk).status not in ("queued", "running"), 180,
                 what="the worker to run the prediction")
        wait_for(lambda: f"prediction {pred.pk} is not queued any more" in celery_worker.log_text(), 60,
                 what="the second delivery to be skipped by the claim")
    finally:
        app.control.cancel_consumer("gpu", destination=[host], reply=True, timeout=2.0)
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.SUCCEEDED, pred.error
    assert pred.attempts == 1 and pred.resends == 1 and held_gpu_queue() == []
