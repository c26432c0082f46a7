"""Every object class counts (issue 11.1): a 3-class project (background, nucleus, mitosis) whose model predicts
both object classes gets objects of both in the counts, instances.tif, outlines, scores, exports and accept."""
from __future__ import annotations

import csv
import hashlib
import io
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from apps.annotate.masks import annotation_arrays, encode_png
from apps.annotate.models import Annotation

from .conftest import make_threshold_unet, tiff_bytes

pytestmark = pytest.mark.django_db

SHAPE = (96, 96)
DIM, BRIGHT = 2000, 4000  # nuclei are dim, mitoses bright (normalised: ~0.5 and 1.0)
#: (centre y, centre x, class value): 4 nuclei and 3 mitoses; the nucleus at (70, 30) touches the mitosis
#: at (70, 43)
DISCS = [(16, 16, 2), (16, 48, 2), (45, 80, 2), (70, 30, 2), (16, 80, 3), (45, 20, 3), (70, 43, 3)]
RADIUS = 6


def truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pixels uint16 (1, H, W), classes uint8 (dense: 1 background), instances uint16)``."""
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    classes = np.ones(SHAPE, np.uint8)
    instances = np.zeros(SHAPE, np.uint16)
    for i, (cy, cx, c) in enumerate(DISCS, start=1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS**2
        disc &= instances == 0  # touching discs: the first keeps the shared pixels
        classes[disc], instances[disc] = c, i
    pixels = np.where(classes == 3, BRIGHT, np.where(classes == 2, DIM, 0)).astype(np.uint16)
    return pixels[None], classes, instances


@pytest.fixture
def project3(project):
    """The shared project (background, nucleus) with a third class, mitosis."""
    from apps.annotate.models import LabelClass

    LabelClass.objects.create(project=project, index=3, name="mitosis", color="#ff00ff")
    return project


@pytest.fixture
def three_class_version(project3):
    """A tiny UNet that thresholds its input twice: above 0.25 nucleus, above 0.75 mitosis (logits 0,
    25 (x - 0.25), 50 (x - 0.5)), so the dim discs are nuclei and the bright ones mitoses."""
    import tempfile
    from pathlib import Path

    import torch
    from django.core.files import File

    from apps.training.models import ModelVersion
    from labseg.ml.train import save_checkpoint
    from labseg.ml.unet import UNet

    torch.manual_seed(0)
    model = make_threshold_unet(UNet(in_channels=1, num_classes=3, base_channels=4, depth=2), 0.25)
    with torch.no_grad():
        model.head.weight[2, 0, 0, 0] = 50.0
        model.head.bias[2] = -25.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(path, model, class_names=["background", "nucleus", "mitosis"])
        mv = ModelVersion(project=project3, number=1, architecture=model.config, is_active=True)
        with path.open("rb") as fh:
            mv.checkpoint.save("model.pt", File(fh), save=False)
        mv.save()
    return mv


@pytest.fixture
def disc_image(project3):
    """The image of ``truth()`` in the validation split, densely annotated with the true classes and objects."""
    from django.core.files.base import ContentFile

    from apps.annotate.models import Image

    pixels, classes, instances = truth()
    data = tiff_bytes(pixels)
    im = Image(project=project3, original_filename="discs.tif", checksum=hashlib.sha256(data).hexdigest(),
               size_bytes=len(data), width=SHAPE[1], height=SHAPE[0], channels=1, dtype="uint16",
               display_range=[[0, BRIGHT]], split="validation")
    im.file.save("discs.tif", ContentFile(data), save=False)
    im.save()
    Annotation.objects.create(image=im, classes_png=encode_png(classes), instances_png=encode_png(instances),
                              version=1, labelled_pixels=classes.size)
    return im


@pytest.fixture
def predicted(three_class_version, disc_image, run_inline):
    return run_inline(three_class_version, disc_image)


def class_of_objects(instances: np.ndarray, classes: np.ndarray) -> dict[int, set[int]]:
    return {int(i): set(np.unique(classes[instances == i]).tolist()) for i in np.unique(instances[instances > 0])}


def test_counts_say_how_many_objects_of_each_class(predicted):
    assert predicted.counts["instances"] == 7
    assert predicted.counts["instances_per_class"] == {"2": 4, "3": 3}
    assert predicted.counts["instances_per_class_name"] == {"nucleus": 4, "mitosis": 3}


def test_instances_tif_holds_the_objects_of_both_classes_each_with_one_class(predicted):
    _, _, true_instances = truth()
    instances = tifffile.imread(predicted.instances_file.path)
    classes = np.asarray(PILImage.open(predicted.classes_file.path))
    per_object = class_of_objects(instances, classes)
    assert all(len(c) == 1 for c in per_object.values())  # the class map says each object's class
    assert sorted(next(iter(c)) for c in per_object.values()) == [2, 2, 2, 2, 3, 3, 3]
    for i, (_, _, c) in enumerate(DISCS, start=1):  # every disc is one object of its class, ids unique
        ids, counts = np.unique(instances[true_instances == i], return_counts=True)
        best = ids[np.argmax(counts)]
        assert best > 0 and per_object[int(best)] == {c}
        assert counts.max() >= 0.9 * (true_instances == i).sum()
    # the nucleus touching the mitosis stays two objects
    assert instances[70, 30] != instances[70, 43] and min(instances[70, 30], instances[70, 43]) > 0


def test_outlines_are_drawn_around_both_classes(predicted, viewer, client_for):
    _, _, true_instances = truth()
    r = client_for(viewer).get(f"/api/v1/predictions/{predicted.pk}/outlines.png")
    assert r.status_code == 200
    alpha = np.asarray(PILImage.open(io.BytesIO(b"".join(r.streaming_content) if r.streaming else r.content)))[..., 3]
    for i, (_, _, c) in enumerate(DISCS, start=1):
        ring = (true_instances == i) & (alpha > 0)
        assert ring.sum() >= 10, f"no outline around object {i} of class {c}"


def test_scores_have_f1_per_object_class_and_the_pooled_one(predicted):
    from apps.training.models import MetricScore

    rows = {s.name: s for s in MetricScore.objects.filter(model_version=predicted.model_version,
                                                          image=predicted.image)}
    assert {"f1_iou50", "f1_iou50_class_2", "f1_iou50_class_3"} <= set(rows)
    assert rows["f1_iou50"].value == pytest.approx(1.0)
    assert rows["f1_iou50_class_2"].value == pytest.approx(1.0) and rows["f1_iou50_class_2"].details["tp"] == 4
    assert rows["f1_iou50_class_3"].value == pytest.approx(1.0) and rows["f1_iou50_class_3"].details["tp"] == 3


def test_masks_zip_holds_both_classes_and_the_object_table(predicted, viewer, client_for):
    r = client_for(viewer).get(f"/api/v1/projects/{predicted.image.project_id}/export/masks.zip")
    assert r.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    stem = f"{predicted.image.pk:06d}_discs"
    for folder in ("predictions", "annotations"):
        instances = tifffile.imread(io.BytesIO(zf.read(f"{folder}/{stem}_instances.tif")))
        classes = tifffile.imread(io.BytesIO(zf.read(f"{folder}/{stem}_classes.tif")))
        assert {2, 3} <= set(np.unique(classes[instances > 0]).tolist())  # objects of both classes
        rows = list(csv.DictReader(io.StringIO(zf.read(f"{folder}/{stem}_objects.csv").decode())))
        assert sorted(r["class_name"] for r in rows) == ["mitosis"] * 3 + ["nucleus"] * 4
        for row in rows:
            obj = instances == int(row["id"])
            assert int(row["area"]) == obj.sum() and set(np.unique(classes[obj])) == {int(row["class_index"])}
    only = client_for(viewer).get(f"/api/v1/projects/{predicted.image.project_id}/export/masks.zip?include=annotations")
    names = zipfile.ZipFile(io.BytesIO(b"".join(only.streaming_content))).namelist()
    assert f"annotations/{stem}_objects.csv" in names and not any(n.startswith("predictions/") for n in names)
    bad = client_for(viewer).get(f"/api/v1/projects/{predicted.image.project_id}/export/masks.zip?include=x")
    assert bad.status_code == 400


def test_accept_puts_the_objects_of_both_classes_into_the_annotation(predicted, annotator, client_for):
    r = client_for(annotator).post(f"/api/v1/predictions/{predicted.pk}/accept/", {"version": 1}, format="json")
    assert r.status_code == 200, r.content
    classes, instances = annotation_arrays(Annotation.objects.get(image=predicted.image))
    per_object = class_of_objects(instances, classes)
    assert sorted(next(iter(c)) for c in per_object.values()) == [2, 2, 2, 2, 3, 3, 3]


def test_large_image_path_finds_the_same_objects(three_class_version, disc_image, run_inline, monkeypatch):
    from apps.inference import runner

    monkeypatch.setattr(runner, "MEMMAP_PIXELS", 100)  # memmap probabilities, per-component splitting
    pred = run_inline(three_class_version, disc_image)
    assert pred.counts["instances_per_class"] == {"2": 4, "3": 3}


def test_large_image_path_adds_a_memory_mapped_intensity_landscape(three_class_version, disc_image, run_inline,
                                                                   monkeypatch):
    """A version with an intensity-aware split on the large-image path: the landscape goes to a scratch
    memmap (not an in-memory copy of the image's size) and the objects are found as without it."""
    from apps.inference import runner
    from labseg.ml.baselines import SplitIntensity

    monkeypatch.setattr(runner, "MEMMAP_PIXELS", 100)
    outs = []

    class Recording(SplitIntensity):
        def landscape(self, image, rows=1024, out=None):
            outs.append(out)
            return super().landscape(image, rows, out)

    monkeypatch.setattr(runner, "_splitter", lambda checkpoint: Recording(np.ones(1, np.float32)))
    runner._cache.clear()  # load the version again, with the split
    pred = run_inline(three_class_version, disc_image)
    runner._cache.clear()
    assert len(outs) == 1 and isinstance(outs[0], np.memmap)
    assert pred.counts["instances_per_class"] == {"2": 4, "3": 3}


def test_pooled_f1_matches_objects_whatever_their_class_per_class_f1_does_not():
    from labseg.ml.metrics import metric_rows, score_all

    _, classes, instances = truth()
    wrong = classes.copy()
    wrong[instances == 1] = 3  # one nucleus predicted as a mitosis
    rows = metric_rows(score_all(wrong, instances, classes, instances))
    assert rows["f1_iou50"]["value"] == 1.0
    assert rows["f1_iou50_class_2"]["fn"] == 1 and rows["f1_iou50_class_3"]["fp"] == 1
    assert rows["f1_iou50_class_2"]["value"] < 1 and rows["f1_iou50_class_3"]["value"] < 1
