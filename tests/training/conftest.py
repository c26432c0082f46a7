"""Helpers of the training tests: synthetic nuclei images with painted strokes, tiny configs, waiting."""
from __future__ import annotations

import base64

import numpy as np

from apps.annotate.masks import encode_png
from labseg.ml.synthetic import make_nuclei, scribbles

# TINY and wait_for live in tests/helpers.py; the training tests (and others) import them from here
from tests.helpers import TINY, image_row, wait_for  # noqa: F401


def add_image(project, *, seed: int = 0, size: int = 96, channels: int = 1, split: str = "train",
              strokes: int = 12, dense: bool = False, only_class: int | None = None, client=None,
              membranes: bool = False, object_ids: bool = True):
    """An Image row (a real TIFF file) with an Annotation of painted strokes (or dense labels; or, with
    ``membranes``, 1-px background lines along every nucleus outline and one nucleus painted inside, as an
    EM annotator paints membranes). ``object_ids`` False: the strokes carry no object ids (the annotate page's
    default; with them, as in instance mode, their size is the painted object size).

    With ``client`` the masks are saved like the browser saves them: PUT /api/v1/images/{id}/annotation/.
    """
    from apps.annotate.models import Annotation
    from labseg.ml.synthetic import classes_from_instances

    pixels, instances = make_nuclei((size, size), seed=seed, channels=channels)
    image = image_row(project, pixels if channels > 1 else pixels[0], f"nuclei_{seed}_{channels}c.tif", split=split,
                      display_max=65535)
    classes = classes_from_instances(instances) if dense else scribbles(instances, strokes, seed=seed, length=16)
    if membranes:
        from scipy import ndimage as ndi

        classes = np.zeros(instances.shape, np.uint8)
        classes[(ndi.grey_dilation(instances, size=3) != instances) & (instances > 0)] = 1
        classes[(instances == instances.max()) & (classes == 0)] = 2
    if only_class is not None:
        classes = np.where(classes > 0, only_class, 0).astype(np.uint8)
    inst = np.where(classes == 2, instances, 0).astype(np.uint16) * object_ids
    if client is not None:
        body = {"version": 0, "classes_png": base64.b64encode(encode_png(classes.astype(np.uint8))).decode(),
                "instances_png": base64.b64encode(encode_png(inst)).decode() if inst.any() else None,
                "strokes": []}
        r = client.put(f"/api/v1/images/{image.pk}/annotation/", body, format="json")
        assert r.status_code == 200, r.content
    else:
        Annotation.objects.create(image=image, classes_png=encode_png(classes.astype(np.uint8)),
                                  instances_png=encode_png(inst), version=1, labelled_pixels=int((classes > 0).sum()))
    return image


def run_row(run_id: int):
    from apps.training.models import TrainingRun

    return TrainingRun.objects.get(pk=run_id)
