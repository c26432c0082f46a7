"""request_predictions: one job per image and version, enqueued on commit, validated ids."""
import pytest
from rest_framework.exceptions import ValidationError

from apps.inference.models import Prediction, PredictionStatus
from apps.inference.services import request_predictions
from apps.training.models import ModelVersion


@pytest.fixture
def bare_version(project):
    return ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")


def test_asking_again_while_queued_returns_the_same_prediction(project, make_image, bare_version,
                                                               django_capture_on_commit_callbacks):
    im, _, _ = make_image(project)
    with django_capture_on_commit_callbacks() as first_callbacks:
        first = request_predictions(bare_version, [im.pk])
    with django_capture_on_commit_callbacks() as second_callbacks:
        second = request_predictions(bare_version, [im.pk])
    assert [p.pk for p in first] == [p.pk for p in second]
    assert Prediction.objects.count() == 1
    assert len(first_callbacks) == 1 and len(second_callbacks) == 0


def test_none_means_every_image_of_the_project(project, make_image, bare_version,
                                               django_capture_on_commit_callbacks):
    images = [make_image(project, seed=s)[0] for s in range(3)]
    with django_capture_on_commit_callbacks():
        preds = request_predictions(bare_version)
    assert sorted(p.image_id for p in preds) == sorted(i.pk for i in images)
    assert all(p.status == PredictionStatus.QUEUED for p in preds)


def test_a_finished_prediction_is_not_returned_again(project, make_image, bare_version,
                                                    django_capture_on_commit_callbacks):
    im, _, _ = make_image(project)
    with django_capture_on_commit_callbacks():
        (first,) = request_predictions(bare_version, [im.pk])
        Prediction.objects.filter(pk=first.pk).update(status=PredictionStatus.SUCCEEDED)
        (second,) = request_predictions(bare_version, [im.pk])
    assert second.pk != first.pk


def test_a_running_prediction_with_a_dead_worker_is_replaced(project, make_image, bare_version, settings,
                                                             django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    im, _, _ = make_image(project)
    settings.LABSEG_HEARTBEAT_TIMEOUT = 60
    with django_capture_on_commit_callbacks():
        (first,) = request_predictions(bare_version, [im.pk])
        old = timezone.now() - timedelta(seconds=120)
        Prediction.objects.filter(pk=first.pk).update(status=PredictionStatus.RUNNING, heartbeat_at=old)
        (second,) = request_predictions(bare_version, [im.pk])
    first.refresh_from_db()
    assert second.pk != first.pk and first.status == PredictionStatus.FAILED and "stopped" in first.error


def test_images_of_another_project_are_refused(project, owner, make_image, bare_version):
    from apps.annotate.models import Project

    other = Project.objects.create(name="Other", owner=owner)
    im, _, _ = make_image(other)
    with pytest.raises(ValidationError):
        request_predictions(bare_version, [im.pk])
    assert Prediction.objects.count() == 0
