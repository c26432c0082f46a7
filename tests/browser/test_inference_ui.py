"""Predictions in the browser: overlay toggles change the canvas, accept loads the prediction into the
editor, next-uncertain navigates, and the models page compares a version with its parent."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.annotate.masks import encode_png
from labseg.ml.synthetic import make_nuclei
from tests.inference.helpers import predict_inline

from .conftest import tiff_bytes, wait_saved, wait_viewer_loaded

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def canvas_rgb(page) -> np.ndarray:
    shot = page.locator("[data-testid=annotation-canvas]").screenshot()
    return np.asarray(PILImage.open(io.BytesIO(shot)).convert("RGB")).astype(int)


def rendered(page) -> np.ndarray:
    """The canvas once the viewer has drawn its current state with every tile loaded.

    Every change the tests make (an overlay toggled, an opacity, the mask) asks the viewer for a frame
    synchronously, which marks the canvas not loaded until that frame is drawn complete.
    """
    wait_viewer_loaded(page)
    return canvas_rgb(page)


@pytest.fixture
def predicted(project, upload_image):
    """Two uploaded images, an active tiny version with predictions of both, an annotation on the first."""
    from apps.annotate.models import Annotation, Image
    from tests.inference.conftest import create_tiny_version

    ids = []
    for seed in (1, 2):
        pixels, inst = make_nuclei((96, 128), seed=seed, radius=(5.0, 9.0))
        ids.append(upload_image(project, f"nuclei{seed}.tif", tiff_bytes(pixels[0])))
        if seed == 1:
            classes = np.where(inst > 0, 2, 1).astype(np.uint8)
            Annotation.objects.create(image_id=ids[0], classes_png=encode_png(classes),
                                      instances_png=encode_png(inst.astype(np.uint16)), version=1,
                                      labelled_pixels=classes.size)
    version = create_tiny_version(project, number=1, seed=3, is_active=True, threshold=0.35)
    preds = [predict_inline(version, Image.objects.get(pk=i)) for i in ids]
    return {"ids": ids, "version": version, "preds": preds}


def test_overlay_toggles_change_the_canvas_and_back(project, owner, predicted, logged_in_page):
    image_id = predicted["ids"][0]
    page = logged_in_page(owner, f"/projects/{project.pk}/images/{image_id}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    wait_saved(page)
    wait_viewer_loaded(page)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=prediction-status]')?.dataset.status === 'succeeded'")
    page.keyboard.press("o")  # hide the label mask so only the overlays change the picture
    base = rendered(page)
    for name in ("prediction", "outlines", "uncertainty", "weight-map"):
        page.click(f"[data-testid=toggle-{name}]")
        shown = rendered(page)
        assert (np.abs(shown - base).sum(-1) > 30).sum() >= 50, f"{name} overlay did not change the canvas"
        assert page.locator("[data-testid=overlay-panel]").is_visible()
        page.click(f"[data-testid=toggle-{name}]")  # off again: the picture comes back
        back = rendered(page)
        assert (np.abs(back - base).sum(-1) > 30).sum() < 20, f"{name} overlay did not go away"
    # opacity: the weight map at opacity 1 differs more from the bare image than at 0.2
    page.click("[data-testid=toggle-weight-map]")
    rendered(page)
    page.fill("[data-testid=overlay-weight-map-opacity]", "0.2")
    faint = rendered(page)
    page.fill("[data-testid=overlay-weight-map-opacity]", "1")
    strong = rendered(page)
    assert np.abs(strong - base).sum() > 2 * np.abs(faint - base).sum()
    assert not page.console_errors


def test_accept_prediction_loads_it_into_the_editor(project, annotator, predicted, logged_in_page):
    from apps.annotate.masks import annotation_arrays
    from apps.annotate.models import Annotation

    image_id = predicted["ids"][1]  # no annotation yet
    page = logged_in_page(annotator, f"/projects/{project.pk}/images/{image_id}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    wait_saved(page)
    wait_viewer_loaded(page)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=prediction-status]')?.dataset.status === 'succeeded'")
    before = canvas_rgb(page)
    page.click("[data-testid=accept-prediction]")
    page.wait_for_function("() => document.querySelector('[data-testid=save-status]')?.textContent.includes('(v1)')")
    after = rendered(page)
    assert (np.abs(after - before).sum(-1) > 30).sum() > 100  # the mask layer now shows the prediction
    classes, _ = annotation_arrays(Annotation.objects.get(image_id=image_id))
    stored = np.asarray(PILImage.open(predicted["preds"][1].classes_file.path))
    assert np.array_equal(classes, stored)


def test_next_uncertain_opens_another_predicted_image(project, viewer, predicted, logged_in_page):
    first, second = predicted["ids"]
    page = logged_in_page(viewer, f"/projects/{project.pk}/images/{first}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    assert page.locator("[data-testid=accept-prediction]").is_disabled()  # viewers cannot accept
    page.click("[data-testid=next-uncertain]")
    page.wait_for_url(f"**/images/{second}/annotate")


def test_models_page_marks_scores_against_the_parent(project, owner, make_user, logged_in_page, predicted):
    from apps.annotate.models import Image
    from apps.training.services import record_metric_scores
    from tests.inference.conftest import create_tiny_version

    parent = predicted["version"]
    child = create_tiny_version(project, number=2, seed=4, parent=parent)
    im = Image.objects.get(pk=predicted["ids"][0])
    record_metric_scores(parent, im, "validation", {"pixel_error": 0.2, "f1_iou50": 0.5})
    record_metric_scores(child, im, "validation", {"pixel_error": 0.1, "f1_iou50": 0.4})
    page = logged_in_page(owner, f"/projects/{project.pk}/models")
    page.wait_for_selector("[data-testid=compare-note-2]")
    row = page.locator("[data-testid=model-row-2]")
    cells = row.locator("td[data-verdict]")
    verdicts = {cells.nth(i).get_attribute("data-verdict") for i in range(cells.count())}
    assert verdicts == {"better", "worse"}  # pixel error fell (better), F1 fell (worse)
    page.select_option("[data-testid=lineage-version]", str(child.pk))
    page.select_option("[data-testid=lineage-metric]", "pixel_error")
    assert page.locator("[data-testid=lineage-points]").inner_text() == "v1: 0.2000, v2: 0.1000"


def test_image_grid_shows_prediction_thumbnails_and_f1(project, viewer, predicted, logged_in_page):
    from apps.annotate.models import Image
    from apps.training.services import record_metric_scores

    first, second = predicted["ids"]
    record_metric_scores(predicted["version"], Image.objects.get(pk=first), "validation",
                         {"f1_iou50": {"value": 0.5, "tp": 1, "fp": 1, "fn": 1}})
    page = logged_in_page(viewer, f"/projects/{project.pk}")
    page.wait_for_selector(f"[data-testid=prediction-thumb-{first}]")
    page.wait_for_selector(f"[data-testid=prediction-thumb-{second}]")
    assert page.locator(f"[data-testid=image-f1-{first}]").inner_text() == "F1 0.50"
    assert page.locator(f"[data-testid=image-f1-{second}]").count() == 0  # not scored
    page.wait_for_function(f"""() => {{ const i = document.querySelector('[data-testid=prediction-thumb-{first}] img');
                                       return i && i.complete && i.naturalWidth > 0; }}""")  # the PNG loads


def test_predict_button_runs_the_task_and_the_overlay_appears(project, annotator, upload_image, celery_worker,
                                                              logged_in_page):
    from tests.inference.conftest import create_tiny_version

    pixels, _ = make_nuclei((96, 128), seed=5, radius=(5.0, 9.0))
    image_id = upload_image(project, "fresh.tif", tiff_bytes(pixels[0]))
    create_tiny_version(project, number=1, seed=3, is_active=True, threshold=0.35)
    page = logged_in_page(annotator, f"/projects/{project.pk}/images/{image_id}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    wait_saved(page)
    wait_viewer_loaded(page)
    page.wait_for_function("() => document.querySelector('[data-testid=prediction-status]')?.dataset.status === 'none'")
    assert page.locator("[data-testid=toggle-prediction]").is_disabled()
    base = canvas_rgb(page)
    page.click("[data-testid=predict]")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=prediction-status]')?.dataset.status === 'succeeded'",
                           timeout=120000)
    page.click("[data-testid=toggle-prediction]")
    shown = rendered(page)
    assert (np.abs(shown - base).sum(-1) > 30).sum() >= 50


def test_predict_all_from_the_models_page_queues_every_image(project, owner, predicted, logged_in_page):
    from apps.inference.models import Prediction

    version = predicted["version"]
    page = logged_in_page(owner, f"/projects/{project.pk}/models")
    page.click("[data-testid=predict-all-1]")
    page.wait_for_selector("text=2 prediction(s) queued")
    new = Prediction.objects.filter(model_version=version).exclude(pk__in=[p.pk for p in predicted["preds"]])
    assert sorted(new.values_list("image_id", flat=True)) == sorted(predicted["ids"])  # (a worker may run them)


def test_models_and_training_pages_show_the_baselines_and_what_to_paint_when_the_unet_loses(
        project, owner, logged_in_page, predicted):
    from apps.annotate.models import Image
    from apps.training.models import TrainingRun
    from apps.training.services import record_metric_scores

    version = predicted["version"]
    run = TrainingRun.objects.create(project=project, status="succeeded", step=10, total_steps=10, progress=1.0)
    version.run = run
    version.save(update_fields=["run"])
    im = Image.objects.get(pk=predicted["ids"][0])
    for method, f1 in (("unet", 0.55), ("threshold", 0.70), ("forest", 0.40)):
        record_metric_scores(version, im, "validation", {"f1_iou50": f1}, method=method)
        record_metric_scores(version, None, "validation", {"f1_iou50": {"value": f1, "images": 1}}, method=method)
    page = logged_in_page(owner, f"/projects/{project.pk}/models")
    block = page.wait_for_selector("[data-testid=model-baselines-1]")
    assert block.get_attribute("data-loses") == "true"
    assert "scores below the threshold" in block.inner_text() and "same 1 held-out image" in block.inner_text()
    assert page.locator("[data-testid=model-baselines-1-advice]").inner_text().startswith("What to paint next")
    assert page.locator("[data-testid=model-baselines-1-threshold-f1_iou50]").inner_text() == "0.700"
    # the U-Net's own columns are not replaced by a baseline's score
    assert page.locator("[data-testid=model-row-1]").inner_text().count("0.5500") == 1
    # a version split by shape (the watershed) gets no membrane note
    assert page.locator("[data-testid=model-split-note-1]").count() == 0
    page = logged_in_page(owner, f"/projects/{project.pk}/train")
    train_block = page.wait_for_selector("[data-testid=train-baselines]")
    assert train_block.get_attribute("data-loses") == "true"


def test_a_unet_ahead_in_f1_with_looser_outlines_gets_the_outlines_note(project, owner, logged_in_page, predicted):
    from apps.annotate.models import Image
    from apps.training.services import record_metric_scores

    version = predicted["version"]
    im = Image.objects.get(pk=predicted["ids"][0])
    for method, f1, iou in (("unet", 0.75, 0.60), ("threshold", 0.50, 0.70), ("forest", 0.40, 0.55)):
        record_metric_scores(version, im, "validation", {"f1_iou50": f1, "iou_fg": iou}, method=method)
        record_metric_scores(version, None, "validation", {"f1_iou50": {"value": f1, "images": 1},
                                                           "iou_fg": {"value": iou, "images": 1}}, method=method)
    page = logged_in_page(owner, f"/projects/{project.pk}/models")
    block = page.wait_for_selector("[data-testid=model-baselines-1]")
    assert block.get_attribute("data-loses") == "false"
    assert page.locator("[data-testid=model-baselines-1-advice]").count() == 0
    note = page.locator("[data-testid=model-baselines-1-outline]").inner_text()
    assert note.startswith("Outlines:") and "U-Net 0.600 vs threshold 0.700" in note
    assert "right up to their edges" in note and "random forest" not in note


def test_objects_to_check_zoom_to_the_merged_object_and_mark_it(project, annotator, upload_image, logged_in_page,
                                                                 live_url):
    """A prediction whose one large object looks merged: the grid and the panel say so, "Show the first"
    (key ".") centres the view on it with a cyan dashed box."""
    from apps.annotate.models import Image
    from tests.inference.conftest import create_tiny_version
    from tests.inference.test_review import blob_image

    image_id = upload_image(project, "blob.tif", tiff_bytes(blob_image()))
    version = create_tiny_version(project, number=1, seed=3, is_active=True, threshold=0.35)
    pred = predict_inline(version, Image.objects.get(pk=image_id))
    assert pred.counts["review"]["total"] == 1
    page = logged_in_page(annotator, f"/projects/{project.pk}")  # the image grid says so first
    page.wait_for_selector(f"[data-testid=image-to-check-{image_id}]")
    assert page.inner_text(f"[data-testid=image-to-check-{image_id}]") == "1 to check"
    page.goto(f"{live_url}/projects/{project.pk}/images/{image_id}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    wait_saved(page)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=prediction-status]')?.dataset.status === 'succeeded'")
    panel = page.locator("[data-testid=review-panel]")
    assert panel.is_visible()
    assert "1 object of this prediction looks like several merged" in page.inner_text("[data-testid=review-text]")
    assert page.locator("[data-testid=review-prev]").is_disabled()
    page.keyboard.press("o")  # the label mask off: only the image and the box
    base = rendered(page)
    cyan = lambda rgb: ((rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 200)).sum()  # noqa: E731
    assert cyan(base) == 0
    assert page.inner_text("[data-testid=review-next]") == "Show the first ▸"
    page.keyboard.press(".")  # the shortcut of "Show the first / next"
    shown = rendered(page)
    assert cyan(shown) >= 50, "no dashed box drawn around the object"
    assert "1 / 1" in page.inner_text("[data-testid=review-current]")
    assert page.locator("[data-testid=review-next]").is_disabled()
    # the view is centred on the object: the image point under the canvas centre is the box centre
    centre = page.evaluate("""() => {
        const c = document.querySelector('[data-testid=annotation-canvas]');
        const r = c.getBoundingClientRect();
        return [r.width / 2, r.height / 2];
    }""")
    # zoomed in: the box (50 px wide, a margin of its own size each side) spans a third of the view's width
    ys_px, xs_px = np.nonzero((shown[..., 0] < 80) & (shown[..., 1] > 180) & (shown[..., 2] > 200))
    assert abs((xs_px.min() + xs_px.max()) / 2 - centre[0]) < 0.1 * shown.shape[1]
    assert abs((ys_px.min() + ys_px.max()) / 2 - centre[1]) < 0.1 * shown.shape[0]
    assert xs_px.max() - xs_px.min() > 0.25 * shown.shape[1]
    assert not page.console_errors
