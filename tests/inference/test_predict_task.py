"""The inference.predict task through a real Celery worker equals the ML core called directly."""
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.annotate.masks import encode_png
from apps.annotate.models import Annotation
from apps.training.models import MetricScore
from labseg.ml.synthetic import classes_from_instances, scribbles
from tests.helpers import wait_prediction_done as wait_done  # also imported from here by other tests

pytestmark = pytest.mark.django_db(transaction=True)


def get_png(client, url) -> np.ndarray:
    r = client.get(url)
    assert r.status_code == 200, r.content[:300]
    return np.asarray(PILImage.open(io.BytesIO(r.content)))


def get_tiff(client, url) -> np.ndarray:
    import tifffile

    r = client.get(url)
    assert r.status_code == 200, r.content[:300]
    return tifffile.imread(io.BytesIO(b"".join(r.streaming_content) if r.streaming else r.content))


def direct_reference(version, pixels):
    """The ML core called directly on the same image: TTA probabilities, entropy, instances."""
    import torch

    from labseg.ml.tiling import predict_tiled, predict_tiled_with_uncertainty
    from labseg.ml.train import apply_normalization, load_checkpoint
    torch.set_num_threads(1)
    model, ckpt = load_checkpoint(version.checkpoint.path)
    image = apply_normalization(pixels, ckpt["normalization"])
    tta = predict_tiled_with_uncertainty(model, image, device="cpu")
    plain_tta = predict_tiled(model, image, device="cpu", tta=True, tile_output=64)
    np.testing.assert_allclose(tta.probs, plain_tta, atol=1e-4)  # predict_tiled itself, other tiles
    from labseg.ml.postprocess import instances_from_probs

    return tta, instances_from_probs(tta.probs)


def predicted_once(version, project, make_image, client, celery_worker):
    """A new 300 x 280 image predicted by ``version`` through the worker: (client, prediction, raw pixels,
    the pixels normalised as the checkpoint was trained)."""
    from labseg.ml.train import apply_normalization, load_checkpoint

    im, pixels, _ = make_image(project, shape=(300, 280), seed=3)
    r = client.post(f"/api/v1/model-versions/{version.pk}/predict/", {"image_ids": [im.pk]}, format="json")
    pred = wait_done(r.json()[0]["id"])
    assert pred.status == "succeeded", pred.error + celery_worker.log_text()[-3000:]
    normalization = load_checkpoint(version.checkpoint.path)[1]["normalization"]
    return client, pred, pixels, apply_normalization(pixels, normalization)


@pytest.mark.parametrize("shape", [(45, 67), (300, 280)], ids=["odd-sized", "several-tiles"])
def test_task_prediction_equals_predict_tiled_called_directly(shape, celery_worker, project, make_image,
                                                              make_version, annotator, client_for):
    version = make_version(project, threshold=0.35 if shape[0] > 100 else None)
    im, pixels, _ = make_image(project, shape=shape, seed=3)
    c = client_for(annotator)
    r = c.post(f"/api/v1/model-versions/{version.pk}/predict/", {"image_ids": [im.pk]}, format="json")
    assert r.status_code == 202
    pred = wait_done(r.json()[0]["id"])
    assert pred.status == "succeeded", pred.error + celery_worker.log_text()[-3000:]
    tta, instances = direct_reference(version, pixels)

    classes = get_png(c, f"/api/v1/predictions/{pred.pk}/classes.png")
    probability = get_png(c, f"/api/v1/predictions/{pred.pk}/probability.png")
    uncertainty = get_png(c, f"/api/v1/predictions/{pred.pk}/uncertainty.png")
    stored_instances = get_tiff(c, f"/api/v1/predictions/{pred.pk}/instances.tif")
    assert classes.shape == probability.shape == uncertainty.shape == stored_instances.shape == shape
    expected_classes = tta.probs.argmax(0) + 1
    expected_classes[instances > 0] = 2  # an object's pixels (holes filled) carry its class (runner.paint_objects)
    near_tie = np.abs(tta.probs[0] - tta.probs[1]) < 1e-4
    assert np.array_equal(classes[~near_tie], expected_classes[~near_tie])
    assert np.abs(probability.astype(int) - np.round(255 * (1 - tta.probs[0])).astype(int)).max() <= 1
    assert np.abs(uncertainty.astype(int) - np.round(255 * tta.entropy).astype(int)).max() <= 1
    assert stored_instances.dtype == np.uint16 and np.array_equal(stored_instances, instances)
    if shape[0] > 100:  # the thresholding model finds the nuclei: the comparison is not between empty maps
        assert instances.max() >= 5 and 0.05 < (classes == 2).mean() < 0.6
    body = c.get(f"/api/v1/predictions/{pred.pk}/").json()
    assert body["progress"] == 1.0 and body["counts"]["instances"] == len(np.unique(instances[instances > 0]))
    assert body["mean_uncertainty"] == pytest.approx(float(tta.entropy.mean()), abs=1e-5)
    assert sum(body["counts"]["pixels_per_class"].values()) == shape[0] * shape[1]


def test_the_versions_intensity_gate_drops_object_pixels_the_threshold_calls_background(
        celery_worker, project, make_image, make_version, annotator, client_for):
    """A version that thresholds at 0.35 with a training-run gate at 0.6: the stored prediction keeps only
    object pixels whose smoothed grey value is above 0.6 (computed here by hand from the stored numbers)."""
    from scipy import ndimage as ndi

    from labseg.ml.postprocess import instances_from_probs

    gate = {"weights": [1.0], "threshold": 0.6, "smooth": 1.0, "kept": {"2": 0.97}}
    version = make_version(project, threshold=0.35, provenance={"intensity_gate": gate, "split": "shape"})
    c, pred, pixels, x = predicted_once(version, project, make_image, client_for(annotator), celery_worker)
    tta, ungated = direct_reference(version, pixels)
    x = x[0].astype(np.float64)
    keep = ndi.gaussian_filter(x, 1.0) > 0.6
    probs = tta.probs.copy()
    probs[0][~keep], probs[1][~keep] = 1.0, 0.0
    dropped = (tta.probs[1] > 0.5) & ~keep
    assert dropped.sum() > 200, "the gate must drop something here, or the test shows nothing"
    instances = instances_from_probs(probs)
    stored = get_tiff(c, f"/api/v1/predictions/{pred.pk}/instances.tif")
    assert np.array_equal(stored, instances) and not np.array_equal(stored, ungated)
    classes = get_png(c, f"/api/v1/predictions/{pred.pk}/classes.png")
    assert (classes[dropped & (instances == 0)] == 1).all()
    probability = get_png(c, f"/api/v1/predictions/{pred.pk}/probability.png")
    assert np.abs(probability.astype(int) - np.round(255 * (1 - probs[0])).astype(int)).max() <= 1


def test_the_versions_edge_calibration_redraws_edges_at_this_images_grey_level_and_says_so(
        celery_worker, project, make_image, make_version, annotator, client_for):
    """A version whose training run turned edge calibration on: the stored instances are those of the TTA
    probabilities with their edges calibrated on this image (within the stored object radius), and the
    prediction's counts say what it did; a version without the entry (trained before it) predicts as before."""
    from labseg.ml.baselines import calibrate_edges_at
    from labseg.ml.postprocess import instances_from_probs

    version = make_version(project, threshold=0.35, provenance={"edge_calibration": {"on": True}, "split": "shape",
                                                                "object_radius": 6.0})
    c, pred, pixels, x = predicted_once(version, project, make_image, client_for(annotator), celery_worker)
    tta, _ = direct_reference(version, pixels)
    probs = tta.probs.copy()
    info = calibrate_edges_at(probs, x, 6.0)
    assert info["added"] + info["removed"] > 0, "the calibration must move edges here, or the test shows nothing"
    stored = get_tiff(c, f"/api/v1/predictions/{pred.pk}/instances.tif")
    assert np.array_equal(stored, instances_from_probs(probs, radius=6.0))
    assert not np.array_equal(stored, instances_from_probs(tta.probs, radius=6.0))
    counts = c.get(f"/api/v1/predictions/{pred.pk}/").json()["counts"]
    assert counts["edges"] == info and 0.75 <= info["agreement"] <= 1.0


def test_the_versions_intensity_split_adds_the_projected_image_to_the_watershed(
        celery_worker, project, make_image, make_version, annotator, client_for):
    """A version whose training run stored an intensity-aware split: the stored instances are those of the
    watershed on distance plus the image projected on the stored weights (by hand here), not the plain ones."""
    from labseg.ml.postprocess import instances_from_probs

    version = make_version(project, threshold=0.35, provenance={"intensity_split": {"weights": [1.0]},
                                                                "split": "shape", "object_radius": 6.0})
    c, pred, pixels, x = predicted_once(version, project, make_image, client_for(annotator), celery_worker)
    tta, _ = direct_reference(version, pixels)
    # weight 1 on one channel: the image itself; with a stored radius the grey values always take part
    expected = instances_from_probs(tta.probs, radius=6.0, image=x[0])
    plain = instances_from_probs(tta.probs, radius=6.0)
    stored = get_tiff(c, f"/api/v1/predictions/{pred.pk}/instances.tif")
    assert np.array_equal(stored, expected)
    assert not np.array_equal(stored, plain), "the intensity must change the split here, or the test shows nothing"


def test_stored_metrics_equal_the_ml_core_on_the_same_masks(celery_worker, project, make_image, make_version,
                                                            viewer, client_for):
    from labseg.ml.metrics import score_all

    version = make_version(project, seed=1, threshold=0.35)
    dense_im, _, dense_inst = make_image(project, shape=(64, 64), seed=5, split="validation", touching=0.0)
    sparse_im, _, sparse_inst = make_image(project, shape=(64, 64), seed=6, split="test")
    train_im, _, train_inst = make_image(project, shape=(64, 64), seed=7, split="train")
    dense_classes = classes_from_instances(dense_inst)
    Annotation.objects.create(image=dense_im, classes_png=encode_png(dense_classes),
                              instances_png=encode_png(dense_inst.astype(np.uint16)), version=1,
                              labelled_pixels=dense_classes.size)
    sparse_classes = scribbles(sparse_inst, n_strokes=6, seed=2)
    Annotation.objects.create(image=sparse_im, classes_png=encode_png(sparse_classes), version=1,
                              labelled_pixels=int((sparse_classes > 0).sum()))
    Annotation.objects.create(image=train_im, classes_png=encode_png(classes_from_instances(train_inst)), version=1,
                              labelled_pixels=train_inst.size)
    from apps.inference.services import request_predictions

    preds = request_predictions(version)
    done = {p.image_id: wait_done(p.pk) for p in preds}
    assert all(p.status == "succeeded" for p in done.values()), [p.error for p in done.values()]
    c = client_for(viewer)
    metrics = c.get(f"/api/v1/model-versions/{version.pk}/metrics/").json()
    by_image = {e["image"]: e for e in metrics["images"]}
    assert set(by_image) == {dense_im.pk, sparse_im.pk}  # the train-split image is not scored

    pred = done[dense_im.pk]
    classes = get_png(c, f"/api/v1/predictions/{pred.pk}/classes.png")
    instances = get_tiff(c, f"/api/v1/predictions/{pred.pk}/instances.tif")
    ref = score_all(classes, instances, dense_classes, dense_inst)
    scores = by_image[dense_im.pk]["scores"]
    assert by_image[dense_im.pk]["dense"] is True and by_image[dense_im.pk]["split"] == "validation"
    for name in ("pixel_error", "iou_fg", "rand_error", "adapted_rand_error", "warping_error", "f1_iou50"):
        assert scores[name] == pytest.approx(ref[name], abs=1e-9), name
    assert ref["instances"]["tp"] >= 1 and scores["f1_iou50"] > 0  # a real segmentation, not all-background
    f1_row = MetricScore.objects.get(model_version=version, image=dense_im, name="f1_iou50")
    assert (f1_row.details["tp"], f1_row.details["fp"], f1_row.details["fn"]) == (
        ref["instances"]["tp"], ref["instances"]["fp"], ref["instances"]["fn"])

    # Sparse labels: pixel-wise metrics on labelled pixels only, dense-only metrics skipped and said so.
    pred = done[sparse_im.pk]
    classes = get_png(c, f"/api/v1/predictions/{pred.pk}/classes.png")
    labelled = sparse_classes > 0
    expected_pixel_error = np.mean((classes[labelled] >= 2) != (sparse_classes[labelled] >= 2))
    sparse = by_image[sparse_im.pk]
    assert sparse["dense"] is False
    assert sparse["scores"]["pixel_error"] == pytest.approx(expected_pixel_error, abs=1e-12)
    assert set(sparse["skipped"]) >= {"rand_error", "adapted_rand_error", "warping_error", "f1_iou50"}
    assert not set(sparse["scores"]) & {"rand_error", "adapted_rand_error", "warping_error", "f1_iou50"}
    assert metrics["aggregate"]["all"]["pixel_error"]["n"] == 2
    assert metrics["aggregate"]["all"]["pixel_error"]["mean"] == pytest.approx(
        (scores["pixel_error"] + expected_pixel_error) / 2)


def test_a_prediction_with_a_wrong_channel_count_fails_with_a_clear_message(celery_worker, project, make_image,
                                                                            make_version):
    from apps.inference.services import request_predictions

    version = make_version(project, in_channels=2)
    im, _, _ = make_image(project)
    (pred,) = request_predictions(version, [im.pk])
    pred = wait_done(pred.pk)
    assert pred.status == "failed" and "expects 2 channel(s)" in pred.error and "has 1" in pred.error
