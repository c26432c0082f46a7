"""Objects to check in a prediction: the worker's own code stores them in the counts (largest first, with
their box) and the prediction endpoint returns them; versions trained on painted membranes get none."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from apps.inference.runner import review_of
from tests.helpers import image_row

pytestmark = pytest.mark.django_db

BLOB = (slice(60, 100), slice(20, 70))  # a 40 x 50 block: 10x the area of one disc


def blob_image() -> np.ndarray:
    yy, xx = np.mgrid[:128, :128]
    pixels = np.zeros((128, 128), np.uint16)
    for cy, cx in [(15, 15), (15, 50), (15, 85), (15, 115), (110, 100), (80, 110)]:
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 8 ** 2] = 4000
    pixels[BLOB] = 4000
    return pixels


def test_the_prediction_lists_the_large_object_to_check_and_the_api_returns_it(project, owner, make_version,
                                                                               run_inline, client_for):
    version = make_version(project, threshold=0.35)
    image = image_row(project, blob_image(), "blob.tif", display_max=4000)
    pred = run_inline(version, image)
    review = pred.counts["review"]
    assert pred.counts["instances"] == 7
    assert review["total"] == 1
    (obj,) = review["objects"]
    ys, xs = BLOB
    assert obj["bbox"] == [xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start]
    assert obj["area"] == 40 * 50 and obj["area_ratio"] > 5
    body = client_for(owner).get(f"/api/v1/predictions/{pred.pk}/").json()
    assert body["counts"]["review"] == review
    version.is_active = True
    version.save()
    grid = client_for(owner).get(f"/api/v1/projects/{project.pk}/predictions/").json()
    assert [(r["image"], r["to_check"]) for r in grid["images"]] == [(image.pk, 1)]


def test_a_predicted_object_holding_two_painted_strokes_comes_first(project, make_version, run_inline):
    from apps.annotate.masks import encode_png
    from apps.annotate.models import Annotation

    version = make_version(project, threshold=0.35)
    image = image_row(project, blob_image(), "blob.tif", display_max=4000)
    classes = np.zeros((128, 128), np.uint8)
    classes[11:13, 10:21] = 2  # two strokes inside the disc at (15, 15): the user says two objects
    classes[18:20, 10:21] = 2
    classes[40:44, 40:60] = 1  # background
    Annotation.objects.create(image=image, classes_png=encode_png(classes), version=1,
                              labelled_pixels=int((classes > 0).sum()))
    review = run_inline(version, image).counts["review"]
    assert review["total"] == 2
    first, second = review["objects"]
    assert first["bbox"] == [7, 7, 17, 17] and first["reason"] == "holds 2 separately painted objects"
    assert second["area"] == 40 * 50


def test_versions_that_split_by_painted_membranes_list_only_objects_holding_two_painted_ones():
    labels = np.zeros((64, 64), np.int32)
    labels[:20, :20], labels[30:34, 30:34], labels[40:44, 40:44], labels[50:54, 50:54] = 1, 2, 3, 4
    groups = np.array([0, 1, 1, 1, 1])
    shape = review_of(labels, groups, SimpleNamespace(split="shape", object_radius=None, object_size=None))
    assert [o["id"] for o in shape["objects"]] == [1]  # 25x the typical area
    # a size the project set bounds the typical area, as a painted radius does, and wins over it: three 20x20
    # colonies and one 4x4 object are 8x a disc of twice radius 2 (50 px) but the median area without it
    colonies = np.zeros((64, 64), np.int32)
    colonies[:20, :20], colonies[:20, 30:50], colonies[30:50, :20], colonies[40:44, 40:44] = 1, 2, 3, 4
    def ids(radius, size):
        return [o["id"] for o in review_of(colonies, groups, SimpleNamespace(split="shape", object_radius=radius,
                                                                             object_size=size))["objects"]]
    assert ids(None, None) == [] and ids(2.0, None) == [1, 2, 3]
    assert ids(12.0, 2.0) == [1, 2, 3] and ids(2.0, 12.0) == []
    membranes = SimpleNamespace(split="boundaries", object_radius=None, object_size=None)
    skipped = review_of(labels, groups, membranes)
    assert "objects" not in skipped and "membranes" in skipped["skipped"]
    painted = np.zeros_like(labels)
    assert review_of(labels, groups, membranes, painted)["total"] == 0  # size alone says nothing here
    painted[31, 30:34], painted[33, 30:34] = 1, 2  # two strokes in object 2: two neurites merged
    (obj,) = review_of(labels, groups, membranes, painted)["objects"]
    assert obj["id"] == 2 and obj["reason"] == "holds 2 separately painted objects"
