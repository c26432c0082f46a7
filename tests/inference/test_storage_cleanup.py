"""Deleting an image or a project removes the files of the rows that go with it (predictions, checkpoints)."""
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from apps.annotate.models import Project
from apps.inference.models import Prediction, PredictionStatus

pytestmark = pytest.mark.django_db


def _prediction_with_files(image, version) -> list[Path]:
    pred = Prediction.objects.create(image=image, model_version=version, status=PredictionStatus.SUCCEEDED)
    for field in ("classes_file", "probability_file"):
        getattr(pred, field).save(f"{field}.png", ContentFile(b"not really a png"), save=False)
    pred.save()
    paths = [Path(pred.classes_file.path), Path(pred.probability_file.path)]
    cache = Path(str(paths[1]) + ".cache.npy")  # a region cache written next to a big map
    cache.write_bytes(b"cache")
    return [*paths, cache]


def test_deleting_an_image_removes_its_prediction_files(client_for, owner, project, make_image, make_version,
                                                        django_capture_on_commit_callbacks):
    image, *_ = make_image(project, seed=1)
    other, *_ = make_image(project, seed=2)
    version = make_version(project)
    gone, kept = _prediction_with_files(image, version), _prediction_with_files(other, version)
    assert all(p.is_file() for p in gone + kept)
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).delete(f"/api/v1/images/{image.pk}/")
    assert r.status_code == 204
    assert not any(p.exists() for p in gone)
    assert all(p.is_file() for p in kept) and Path(version.checkpoint.path).is_file()  # other rows keep theirs


def test_deleting_a_project_removes_checkpoints_and_prediction_files(client_for, owner, project, make_image,
                                                                     make_version, django_capture_on_commit_callbacks):
    image, *_ = make_image(project, seed=1)
    version = make_version(project)
    files = _prediction_with_files(image, version) + [Path(version.checkpoint.path), Path(image.file.path)]
    assert all(p.is_file() for p in files)
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).delete(f"/api/v1/projects/{project.pk}/")
    assert r.status_code == 204 and not Project.objects.filter(pk=project.pk).exists()
    assert not any(p.exists() for p in files)
