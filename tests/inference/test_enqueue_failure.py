"""A prediction asked for while the broker is down is failed with a message and the API answers 503: it is
never left "queued" with no message that a worker could ever receive."""
from __future__ import annotations

import pytest

from apps.inference.models import Prediction, PredictionStatus
from apps.inference.services import request_predictions
from apps.training.models import ModelVersion
from labseg.api import ServiceUnavailable


@pytest.fixture
def bare_version(project):
    return ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")


@pytest.mark.django_db(transaction=True)
def test_predict_with_the_broker_down_answers_503_and_fails_the_predictions(project, make_image, bare_version,
                                                                           annotator, client_for, broker_down):
    images = [make_image(project, seed=s)[0] for s in range(2)]
    r = client_for(annotator).post(f"/api/v1/model-versions/{bare_version.pk}/predict/", {"all": True},
                                   format="json")
    assert r.status_code == 503, (r.status_code, r.content[:300])
    body = r.json()
    assert body["code"] == "queue_unavailable" and "could not be reached" in body["detail"]
    preds = Prediction.objects.filter(image__in=images)
    assert sorted(body["failed_predictions"]) == sorted(p.pk for p in preds) and len(preds) == 2
    for p in preds:
        assert p.status == PredictionStatus.FAILED and p.finished_at is not None
        assert "prediction queue could not be reached" in p.error


@pytest.mark.django_db(transaction=True)
def test_after_the_broker_is_back_the_prediction_can_be_asked_for_again(project, make_image, bare_version,
                                                                       broker_down, monkeypatch):
    im, _, _ = make_image(project)
    with pytest.raises(ServiceUnavailable):
        request_predictions(bare_version, [im.pk])
    sent = []
    from apps.inference import tasks

    monkeypatch.setattr(tasks.predict, "delay", lambda pk: sent.append(pk))
    (again,) = request_predictions(bare_version, [im.pk])  # not blocked by the failed one
    assert again.status == PredictionStatus.QUEUED and sent == [again.pk]


@pytest.mark.django_db(transaction=True)
def test_inside_a_callers_transaction_the_rows_are_failed_at_its_commit(project, make_image, bare_version,
                                                                        broker_down):
    from django.db import transaction

    im, _, _ = make_image(project)
    with transaction.atomic():
        (pred,) = request_predictions(bare_version, [im.pk])  # nothing sent yet: no error here
    pred.refresh_from_db()
    assert pred.status == PredictionStatus.FAILED and "could not be reached" in pred.error
