"""A run reports its rounds: where each self-training round starts and ends, and the validation scores
after each one (issue 11.7: "150 steps shown as of 300", no round marker, no validation per round)."""
from __future__ import annotations

import pytest

from apps.training import pipeline, services
from apps.training.models import RunStatus, TrainingRun

from .conftest import TINY, add_image

pytestmark = pytest.mark.django_db


def _run(project, owner, settings, **config):
    settings.LABSEG_DEVICE = "cpu"
    settings.LABSEG_AUTO_PREDICT = False
    run = services.start_run(project, owner, config={**TINY, **config})
    assert services.claim_run(run.pk, "w1")
    pipeline.execute_run(run.pk, "w1")
    return TrainingRun.objects.get(pk=run.pk)


def test_self_training_run_reports_each_round_with_its_steps_and_validation_scores(project, owner, settings):
    add_image(project, seed=1)  # sparse strokes: self-training applies
    add_image(project, seed=2, split="validation", dense=True)
    run = _run(project, owner, settings, self_training=1)
    assert run.status == RunStatus.SUCCEEDED, run.error
    steps = TINY["steps"]
    assert run.total_steps == 2 * steps
    assert [(r["round"], r["of"], r["start_step"], r["end_step"]) for r in run.rounds] == [
        (1, 2, 0, steps), (2, 2, steps, 2 * steps)]
    for r in run.rounds:  # scored after each round, on the one validation image
        v = r["validation"]
        assert v["split"] == "validation" and v["images"] == 1
        assert set(v["scores"]) >= {"iou_fg", "pixel_error", "f1_iou50"}
        assert all(0.0 <= x <= 1.0 for x in v["scores"].values())
    # the last round's scores are the version's own validation scores
    version = run.model_version
    own = {s.name: s.value for s in version.metric_scores.filter(image__isnull=True, method="unet")}
    assert run.rounds[-1]["validation"]["scores"]["iou_fg"] == pytest.approx(own["iou_fg"])


def test_run_without_self_training_has_one_round_scored_on_the_held_out_columns(project, owner, settings):
    add_image(project, seed=1)  # no validation image: the run holds out columns of the labelled image
    run = _run(project, owner, settings, self_training=0)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert [(r["round"], r["of"], r["start_step"], r["end_step"]) for r in run.rounds] == [(1, 1, 0, TINY["steps"])]
    assert run.rounds[0]["validation"]["split"] == "holdout"
    # the strip scored is the ML core's choice on the image's labels, stored as plain JSON with the version
    from apps.annotate.masks import annotation_arrays
    from labseg.ml.metrics import holdout_strip

    image = project.images.get()
    classes, _ = annotation_arrays(image.annotation)
    run.model_version.refresh_from_db()
    assert run.model_version.provenance["held_out"] == [
        {"image": image.pk, "split": "holdout", "strip": holdout_strip(classes).describe()}]


def test_rounds_are_in_the_run_api(project, owner, client_for):
    run = services.start_run(project, owner, config=TINY)
    body = client_for(owner).get(f"/api/v1/training-runs/{run.pk}/").json()
    assert body["rounds"] == []
