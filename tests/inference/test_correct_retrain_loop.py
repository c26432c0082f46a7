"""The lab's loop through the real worker: predict -> accept -> correct -> retrain -> compare with the parent."""
import base64

import numpy as np
import pytest

from apps.annotate.masks import annotation_arrays, encode_png
from apps.annotate.models import Annotation
from apps.inference.models import Prediction
from apps.training.models import ModelVersion
from labseg.ml.synthetic import classes_from_instances
from tests.helpers import TINY, wait_for

from .test_predict_task import wait_done

pytestmark = pytest.mark.django_db(transaction=True)

def test_accept_correct_retrain_then_compare_with_the_parent(celery_worker, project, make_image, make_version,
                                                             annotator, client_for):
    c = client_for(annotator)
    val, _, val_inst = make_image(project, shape=(64, 64), seed=11, split="validation", touching=0.0)
    val_classes = classes_from_instances(val_inst)
    Annotation.objects.create(image=val, classes_png=encode_png(val_classes),
                              instances_png=encode_png(val_inst.astype(np.uint16)), version=1,
                              labelled_pixels=val_classes.size)
    work, _, work_inst = make_image(project, shape=(64, 64), seed=12, split="train")
    parent = make_version(project, threshold=0.35)
    parent.is_active = True
    parent.save()

    # predict both images with the parent; the validation image gets scored
    r = c.post(f"/api/v1/model-versions/{parent.pk}/predict/", {"all": True}, format="json")
    assert r.status_code == 202
    preds = {p["image"]: wait_done(p["id"]) for p in r.json()}
    assert all(p.status == "succeeded" for p in preds.values())

    # accept the prediction of the work image, then correct it (paint the true nuclei) and save
    r = c.post(f"/api/v1/predictions/{preds[work.pk].pk}/accept/", {"version": 0}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 1
    accepted, _ = annotation_arrays(Annotation.objects.get(image=work))
    corrected = accepted.copy()
    corrected[work_inst > 0] = 2
    assert (corrected != accepted).any()  # the correction changes something
    r = c.put(f"/api/v1/images/{work.pk}/annotation/",
              {"version": 1, "classes_png": base64.b64encode(encode_png(corrected)).decode(), "strokes": []},
              format="json")
    assert r.status_code == 200, r.content

    # retrain from the parent; the new version predicts the project by itself (LABSEG_AUTO_PREDICT)
    r = c.post(f"/api/v1/projects/{project.pk}/training-runs/", {"config": TINY, "parent_version": parent.pk},
               format="json")
    assert r.status_code == 202, r.content
    run_id = r.json()["id"]
    child = wait_for(lambda: ModelVersion.objects.filter(run_id=run_id).first(), 240,
                     what="the new version")
    assert child.parent_id == parent.pk
    pred = wait_for(lambda: Prediction.objects.filter(model_version=child, image=val, status="succeeded").first(),
                    240, what="the auto-prediction of the validation image")
    assert pred.counts["pixels_per_class"]

    body = c.get(f"/api/v1/projects/{project.pk}/model-versions/compare/?a={parent.pk}&b={child.pk}").json()
    assert body["a"]["id"] == parent.pk and body["b"]["id"] == child.pk
    (image_row,) = [i for i in body["images"] if i["image"] == val.pk]
    pe = image_row["metrics"]["pixel_error"]
    assert pe["verdict"] in ("better", "worse", "same")
    assert pe["delta"] == pytest.approx(pe["b"] - pe["a"])
    assert (pe["verdict"] == "better") == (pe["b"] < pe["a"] - 1e-12)
    child_metrics = c.get(f"/api/v1/model-versions/{child.pk}/metrics/").json()
    (val_row,) = [e for e in child_metrics["images"] if e["image"] == val.pk]
    assert val_row["scores"]["pixel_error"] == pytest.approx(pe["b"])
