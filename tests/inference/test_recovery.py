"""Predictions whose worker died are re-queued once, then failed; a live worker keeps its heartbeat."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.inference.models import Prediction, PredictionStatus
from apps.inference.services import claim_prediction, recover_stale_predictions
from apps.training.models import ModelVersion


@pytest.fixture
def bare_version(project):
    return ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")


@pytest.mark.django_db
def test_a_dead_workers_prediction_is_requeued_once_then_failed(project, make_image, bare_version,
                                                                 django_capture_on_commit_callbacks):
    im, _, _ = make_image(project)
    pred = Prediction.objects.create(image=im, model_version=bare_version)
    old = timezone.now() - timedelta(seconds=600)
    assert claim_prediction(pred.pk, "w1")
    Prediction.objects.filter(pk=pred.pk).update(heartbeat_at=old)
    with django_capture_on_commit_callbacks() as sent:
        assert recover_stale_predictions(60) == {"requeued": [pred.pk], "failed": [], "cancelled": []}
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.QUEUED and len(sent) == 1  # a new message for it
    assert claim_prediction(pred.pk, "w2")  # the second worker claims it (attempt 2) ...
    assert not claim_prediction(pred.pk, "w3")  # ... exactly once
    Prediction.objects.filter(pk=pred.pk).update(heartbeat_at=old)
    assert recover_stale_predictions(60) == {"requeued": [], "failed": [pred.pk], "cancelled": []}
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.FAILED and pred.attempts == 2 and "stopped responding" in pred.error


@pytest.mark.django_db
def test_fresh_heartbeats_are_left_alone(project, make_image, bare_version):
    im, _, _ = make_image(project)
    pred = Prediction.objects.create(image=im, model_version=bare_version)
    assert claim_prediction(pred.pk, "w1")
    assert recover_stale_predictions(60) == {"requeued": [], "failed": [], "cancelled": []}
    assert Prediction.objects.get(pk=pred.pk).status == PredictionStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_keeps_a_long_step_alive(project, make_image, bare_version):
    from apps.inference.runner import heartbeats

    im, _, _ = make_image(project)
    pred = Prediction.objects.create(image=im, model_version=bare_version)
    assert claim_prediction(pred.pk, "w1")
    old = timezone.now() - timedelta(seconds=600)
    Prediction.objects.filter(pk=pred.pk).update(heartbeat_at=old)
    with heartbeats(pred.pk, "w1", every_s=0.05):
        time.sleep(0.4)  # a long post-processing step without progress reports
    assert Prediction.objects.get(pk=pred.pk).heartbeat_at > timezone.now() - timedelta(seconds=5)
    assert recover_stale_predictions(60) == {"requeued": [], "failed": [], "cancelled": []}
