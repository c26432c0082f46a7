"""Metrics per version, comparison, next most uncertain image, large-image memmap path, roles."""
import numpy as np
import pytest

from apps.annotate.models import Annotation
from apps.inference.models import Prediction
from apps.training.models import ModelVersion
from apps.training.services import record_metric_scores

pytestmark = pytest.mark.django_db


def test_compare_marks_better_and_worse_per_metric(project, make_image, viewer, client_for):
    im, _, _ = make_image(project, split="validation")
    a = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    b = ModelVersion.objects.create(project=project, number=2, checkpoint="b.pt", parent=a)
    record_metric_scores(a, im, "validation", {"pixel_error": 0.20, "warping_error": 0.010,
                                               "f1_iou50": {"value": 0.50, "tp": 2, "fp": 2, "fn": 2}})
    record_metric_scores(b, im, "validation", {"pixel_error": 0.10, "warping_error": 0.010,
                                               "f1_iou50": {"value": 0.40, "tp": 2, "fp": 3, "fn": 3}})
    r = client_for(viewer).get(f"/api/v1/projects/{project.pk}/model-versions/compare/?a={a.pk}&b={b.pk}")
    assert r.status_code == 200, r.content
    agg = r.json()["aggregate"]
    assert agg["pixel_error"]["verdict"] == "better"  # lower error is better
    assert agg["f1_iou50"]["verdict"] == "worse"  # lower F1 is worse
    assert agg["warping_error"]["verdict"] == "same"
    assert agg["pixel_error"]["delta"] == pytest.approx(-0.10)
    assert r.json()["images"][0]["metrics"]["f1_iou50"]["a"] == 0.5


def test_version_metrics_pool_f1_over_images(project, make_image, viewer, client_for):
    v = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    im1, _, _ = make_image(project, seed=1, split="validation")
    im2, _, _ = make_image(project, seed=2, split="test")
    record_metric_scores(v, im1, "validation", {"f1_iou50": {"value": 1.0, "tp": 3, "fp": 0, "fn": 0}})
    record_metric_scores(v, im2, "test", {"f1_iou50": {"value": 0.0, "tp": 0, "fp": 1, "fn": 1}})
    body = client_for(viewer).get(f"/api/v1/model-versions/{v.pk}/metrics/").json()
    assert body["aggregate"]["all"]["f1_iou50"] == {"mean": 0.5, "n": 2}
    # pooled: 2 TP / (2 TP + FP + FN) over all objects = 6 / 8
    assert body["aggregate"]["all"]["f1_iou50_pooled"]["value"] == pytest.approx(6 / 8)
    assert set(body["aggregate"]) == {"all", "validation", "test"}


@pytest.mark.parametrize("query", ["a=1", "a=x&b=2", "a=999999&b=999998"])
def test_compare_with_bad_ids_is_4xx(query, project, viewer, client_for):
    r = client_for(viewer).get(f"/api/v1/projects/{project.pk}/model-versions/compare/?{query}")
    assert r.status_code in (400, 404) and "detail" in r.json()


def test_next_uncertain_image_prefers_uncertain_and_unlabelled(project, make_image, viewer, client_for):
    active = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt", is_active=True)
    old = ModelVersion.objects.create(project=project, number=2, checkpoint="b.pt")
    sure, _, _ = make_image(project, seed=1)
    unsure, _, _ = make_image(project, seed=2)
    unsure_but_labelled, _, _ = make_image(project, seed=3)
    for image, u in ((sure, 0.1), (unsure, 0.4), (unsure_but_labelled, 0.5)):
        Prediction.objects.create(image=image, model_version=active, status="succeeded", mean_uncertainty=u)
    Prediction.objects.create(image=sure, model_version=old, status="succeeded", mean_uncertainty=0.99)
    # 0.5 * (1 - 0.9) = 0.05 < 0.4 * 1: labels already there count against an image
    Annotation.objects.create(image=unsure_but_labelled, version=1, labelled_pixels=int(0.9 * 64 * 64))
    c = client_for(viewer)
    body = c.get(f"/api/v1/projects/{project.pk}/images/next-uncertain/").json()
    assert body["image"] == unsure.pk and body["mean_uncertainty"] == 0.4
    body = c.get(f"/api/v1/projects/{project.pk}/images/next-uncertain/?exclude={unsure.pk}").json()
    assert body["image"] == sure.pk


def test_next_uncertain_without_predictions_is_404(project, viewer, client_for):
    r = client_for(viewer).get(f"/api/v1/projects/{project.pk}/images/next-uncertain/")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_large_images_go_through_a_memmap_that_is_removed(project, make_image, make_version, run_inline,
                                                          monkeypatch, settings):
    import torch

    from apps.inference import runner
    from labseg.ml.tiling import predict_tiled
    from labseg.ml.train import apply_normalization, load_checkpoint

    monkeypatch.setattr(runner, "MEMMAP_PIXELS", 1000)  # 40x50 = 2000 pixels counts as "large" here
    version = make_version(project)
    im, pixels, _ = make_image(project, shape=(40, 50))
    loaded = runner.load_model(version)
    seen = []
    real_predict_maps = runner.predict_maps

    def spy(*args, **kwargs):
        probs, uncertainty = real_predict_maps(*args, **kwargs)
        seen.append((type(probs), getattr(probs, "filename", None)))
        return probs, uncertainty

    monkeypatch.setattr(runner, "predict_maps", spy)
    pred = run_inline(version, im)
    assert len(seen) == 1 and seen[0][0] is np.memmap and str(seen[0][1]).startswith(str(settings.MEDIA_ROOT))
    assert not list((settings.MEDIA_ROOT / "tmp").glob("*.probs"))  # removed after use
    torch.set_num_threads(1)
    model, ckpt = load_checkpoint(version.checkpoint.path)
    probs = predict_tiled(model, apply_normalization(pixels, ckpt["normalization"]), device="cpu")
    p = np.clip(probs, 1e-12, 1)
    entropy = -(p * np.log(p)).sum(0) / np.log(2)
    from PIL import Image as PILImage

    stored_u = np.asarray(PILImage.open(pred.uncertainty_file.path)).astype(int)
    stored_p = np.asarray(PILImage.open(pred.probability_file.path)).astype(int)
    assert np.abs(stored_u - np.round(255 * entropy)).max() <= 1
    assert np.abs(stored_p - np.round(255 * (1 - probs[0]))).max() <= 1
    assert loaded.num_classes == 2


def test_project_predictions_list_thumbnails_and_scores_of_the_active_version(project, make_image, make_version,
                                                                               run_inline, viewer, client_for):
    version = make_version(project)
    version.is_active = True
    version.save()
    big, _, _ = make_image(project, shape=(300, 200), seed=1)
    small, _, _ = make_image(project, shape=(40, 40), seed=2)
    make_image(project, seed=3)  # never predicted
    preds = {im.pk: run_inline(version, im) for im in (big, small)}
    record_metric_scores(version, small, "validation", {"f1_iou50": 0.75})
    c = client_for(viewer)
    body = c.get(f"/api/v1/projects/{project.pk}/predictions/").json()
    rows = {r["image"]: r for r in body["images"]}
    assert body["model_version"]["id"] == version.pk and set(rows) == {big.pk, small.pk}
    assert rows[small.pk]["f1_iou50"] == 0.75 and rows[big.pk]["f1_iou50"] is None
    assert rows[big.pk]["level"] == 2 and rows[small.pk]["level"] == 0  # 300 px / 4 <= 128 px
    assert rows[big.pk]["prediction"] == preds[big.pk].pk
    import io

    from PIL import Image as PILImage

    thumb = PILImage.open(io.BytesIO(c.get(rows[big.pk]["thumbnail_url"]).content))
    assert thumb.size == (50, 75) and thumb.mode == "RGBA"


# --- every endpoint against every persona ---------------------------------------------------------
READ = {"owner": 200, "annotator": 200, "viewer": 200, "stranger": 404, None: 401}
WRITE = {"owner": 200, "annotator": 200, "viewer": 403, "stranger": 404, None: 401}


@pytest.fixture
def world(project, make_image, make_version, run_inline):
    """A finished prediction on an annotated image, an active version and a second version."""
    v1 = make_version(project)
    v1.is_active = True
    v1.save()
    v2 = ModelVersion.objects.create(project=project, number=2, checkpoint=v1.checkpoint.name, parent=v1)
    im, _, inst = make_image(project, shape=(40, 40))
    from apps.annotate.masks import encode_png

    classes = np.where(inst > 0, 2, 1).astype(np.uint8)
    Annotation.objects.create(image=im, classes_png=encode_png(classes), version=1, labelled_pixels=classes.size)
    pred = run_inline(v1, im)
    return {"v1": v1, "v2": v2, "im": im, "pred": pred, "project": project}


ENDPOINTS = [
    ("get", "/api/v1/predictions/{pred}/", READ),
    ("get", "/api/v1/predictions/{pred}/classes.png", READ),
    ("get", "/api/v1/predictions/{pred}/classes.png?style=colour", READ),
    ("get", "/api/v1/predictions/{pred}/instances.tif", READ),
    ("get", "/api/v1/predictions/{pred}/probability.png", READ),
    ("get", "/api/v1/predictions/{pred}/uncertainty.png?style=colour&region=0,0,20,20&level=1", READ),
    ("get", "/api/v1/predictions/{pred}/outlines.png", READ),
    ("get", "/api/v1/images/{im}/weight-map.png", READ),
    ("get", "/api/v1/images/{im}/predictions/", READ),
    ("get", "/api/v1/model-versions/{v1}/metrics/", READ),
    ("get", "/api/v1/projects/{project}/model-versions/compare/?a={v1}&b={v2}", READ),
    ("get", "/api/v1/projects/{project}/images/next-uncertain/", READ),
    ("get", "/api/v1/projects/{project}/export/masks.zip", READ),
    ("get", "/api/v1/projects/{project}/predictions/", READ),
    # a worker makes the export: the first ask answers 202 with the job (queued; nothing runs it here)
    ("get", "/api/v1/model-versions/{v1}/export/onnx", {**READ, "owner": 202, "annotator": 202, "viewer": 202}),
    ("post", "/api/v1/predictions/{pred}/accept/", WRITE),
    ("post", "/api/v1/model-versions/{v1}/predict/", {**WRITE, "owner": 202, "annotator": 202}),
]


@pytest.mark.parametrize("who", ["owner", "annotator", "viewer", "stranger", None])
def test_each_role_against_each_endpoint(who, world, request, client_for):
    user = request.getfixturevalue(who) if who else None
    client = client_for(user)
    ids = {k: v.pk for k, v in world.items()}
    failures = []
    for method, template, expected in ENDPOINTS:
        url = template.format(**ids)
        if method == "post":
            data = {"version": 1} if "accept" in url else {"image_ids": [ids["im"]]}
            r = client.post(url, data, format="json")
        else:
            r = client.get(url)
        if r.status_code != expected[who]:
            failures.append((method, url, r.status_code, expected[who]))
        if r.status_code >= 400:
            assert r["Content-Type"].startswith("application/json"), url
    assert not failures, failures


def _scores(version, image, method, f1, iou, images=1):
    record_metric_scores(version, image, "holdout", {"f1_iou50": f1, "iou_fg": iou}, method=method)
    record_metric_scores(version, None, "holdout", {"f1_iou50": {"value": f1, "images": images},
                                                    "iou_fg": {"value": iou, "images": images}}, method=method)


def test_metrics_show_the_baselines_beside_the_unet_and_say_when_it_loses(project, make_image, viewer, client_for):
    im, _, _ = make_image(project, split="validation")
    v = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    _scores(v, im, "unet", 0.60, 0.70)
    _scores(v, im, "threshold", 0.72, 0.65)  # better F1 than the U-Net: the headline metric
    _scores(v, im, "forest", 0.40, 0.50)
    body = client_for(viewer).get(f"/api/v1/model-versions/{v.pk}/metrics/").json()
    assert body["baselines"]["threshold"]["scores"] == {"f1_iou50": 0.72, "iou_fg": 0.65}
    assert body["baselines"]["forest"]["split"] == "holdout"
    cmp = body["comparison"]
    assert cmp["headline"] == "f1_iou50" and cmp["images"] == 1
    assert cmp["metrics"]["f1_iou50"]["best"] == "threshold" and cmp["metrics"]["iou_fg"]["best"] == "unet"
    assert cmp["unet_loses_to"] == ["threshold"] and "Objects to check" in cmp["advice"]
    assert "background line in the gap between them" in cmp["advice"] and "right up to their edges" in cmp["advice"]
    assert cmp["outline_loses_to"] == [] and cmp["outline_advice"] == ""  # the headline's advice comes first
    # the U-Net's own table holds its scores only (a baseline row never replaces a U-Net row)
    assert [e["scores"] for e in body["images"]] == [{"f1_iou50": 0.60, "iou_fg": 0.70}]
    version = client_for(viewer).get(f"/api/v1/model-versions/{v.pk}/").json()
    assert version["metrics"] == {"f1_iou50": 0.60, "iou_fg": 0.70}
    assert version["baselines"]["forest"] == {"f1_iou50": 0.40, "iou_fg": 0.50}


def test_a_unet_ahead_of_both_baselines_gets_no_advice_and_a_tie_is_not_a_loss(project, make_image, viewer, client_for):
    im, _, _ = make_image(project, split="validation")
    v = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    _scores(v, im, "unet", 0.800, 0.8)
    _scores(v, im, "threshold", 0.803, 0.7)  # within the tie margin
    _scores(v, im, "forest", 0.5, 0.6)
    cmp = client_for(viewer).get(f"/api/v1/model-versions/{v.pk}/metrics/").json()["comparison"]
    assert cmp["unet_loses_to"] == [] and cmp["advice"] == ""
    assert cmp["outline_loses_to"] == [] and cmp["outline_advice"] == ""


def test_a_unet_ahead_in_f1_with_looser_outlines_gets_the_outline_advice(project, make_image, viewer, client_for):
    im, _, _ = make_image(project, split="validation")
    v = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    _scores(v, im, "unet", 0.66, 0.657)  # Huh7 on the real benchmark: F1 ahead, foreground IoU behind
    _scores(v, im, "threshold", 0.46, 0.683)
    _scores(v, im, "forest", 0.55, 0.660)  # behind by less than a tie: not named
    cmp = client_for(viewer).get(f"/api/v1/model-versions/{v.pk}/metrics/").json()["comparison"]
    assert cmp["unet_loses_to"] == [] and cmp["advice"] == ""
    assert cmp["outline_loses_to"] == ["threshold"]
    assert "than the threshold's" in cmp["outline_advice"] and "right up to their edges" in cmp["outline_advice"]


def test_a_version_without_baselines_has_no_comparison(project, make_image, viewer, client_for):
    im, _, _ = make_image(project, split="validation")
    v = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    _scores(v, im, "unet", 0.8, 0.8)
    body = client_for(viewer).get(f"/api/v1/model-versions/{v.pk}/metrics/").json()
    assert body["baselines"] == {} and body["comparison"] is None


def test_images_above_the_edge_calibration_budget_keep_the_networks_edges_and_say_why(
        project, make_image, make_version, run_inline, settings):
    """A version with edge calibration on: an image over ``LABSEG_EDGE_MAX_PIXELS`` is predicted with the
    network's own edges (the calibration holds ~40 bytes a pixel) and its counts say why; with no limit the same
    image is calibrated."""
    version = make_version(project, threshold=0.35, provenance={"edge_calibration": {"on": True}, "split": "shape",
                                                                "object_radius": 6.0})
    im, _, _ = make_image(project, shape=(40, 50))
    settings.LABSEG_EDGE_MAX_PIXELS = 1999
    over = run_inline(version, im).counts["edges"]
    assert set(over) == {"off"} and "2000 pixels, more than the 1999" in over["off"]
    settings.LABSEG_EDGE_MAX_PIXELS = 2000
    within = run_inline(version, im).counts["edges"]
    assert "off" not in within and {"threshold", "agreement", "added", "removed"} <= set(within)
