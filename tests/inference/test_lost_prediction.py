"""A worker that lost its prediction (stalled past the heartbeat timeout, recovered, re-queued and claimed
again) stops at its next progress write, like a training run: it neither computes on unseen (no heartbeat,
so the jobs queued behind it looked unattended and were failed with "No worker took this prediction") nor
touches the next attempt's row. Found by the chaos test (tests/chaos, prediction / child-stall)."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.inference import runner
from apps.inference.models import Prediction, PredictionStatus
from apps.inference.services import PredictionLost, claim_prediction, fail_prediction, heartbeat, report_progress


@pytest.mark.django_db
def test_a_prediction_taken_from_its_worker_stops_and_leaves_the_next_attempt_alone(project, make_image,
                                                                                      make_version):
    image, *_ = make_image(project)
    pred = Prediction.objects.create(image=image, model_version=make_version(project))
    assert claim_prediction(pred.pk, "gpu0@host:11")
    report_progress(pred.pk, 0.3, "gpu0@host:11")  # its own: fine
    # the worker stalls; recovery re-queues the prediction and another child of the same worker claims it
    Prediction.objects.filter(pk=pred.pk).update(status=PredictionStatus.QUEUED, worker="")
    with pytest.raises(PredictionLost):  # queued: not the stalled worker's any more
        report_progress(pred.pk, 0.4, "gpu0@host:11")
    assert claim_prediction(pred.pk, "gpu0@host:12")

    with pytest.raises(PredictionLost):
        runner.run_prediction(pred.pk, "gpu0@host:11")  # the stalled child resumes: stops at its first write
    assert not heartbeat(pred.pk, "gpu0@host:11")
    fail_prediction(pred.pk, "an error of the stalled child", worker="gpu0@host:11")
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.RUNNING and pred.worker == "gpu0@host:12" and pred.error == ""
    assert not pred.classes_file

    runner.run_prediction(pred.pk, "gpu0@host:12")  # the new attempt runs to the end
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.SUCCEEDED and pred.classes_file and pred.attempts == 2


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_stops_beating_for_a_lost_prediction(project, make_image, make_version):
    image, *_ = make_image(project)
    pred = Prediction.objects.create(image=image, model_version=make_version(project))
    assert claim_prediction(pred.pk, "w:1")
    Prediction.objects.filter(pk=pred.pk).update(worker="w:2")  # re-claimed by another worker
    old = timezone.now() - timedelta(seconds=600)
    Prediction.objects.filter(pk=pred.pk).update(heartbeat_at=old)
    with runner.heartbeats(pred.pk, "w:1", every_s=0.05):
        time.sleep(0.3)
    assert Prediction.objects.get(pk=pred.pk).heartbeat_at == old  # the other worker's row is not touched
