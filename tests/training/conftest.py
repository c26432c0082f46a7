"""Helpers of the training tests: synthetic nuclei images with painted strokes, tiny configs, waiting."""
from __future__ import annotations

import base64
import hashlib
import io
import time

import numpy as np
import pytest
import tifffile
from django.core.files.base import ContentFile

from apps.annotate.masks import encode_png
from labseg.ml.synthetic import make_nuclei, scribbles

#: Keeps a run to seconds on one CPU thread: a 2-level U-Net of width 4 on 64-px tiles.
TINY = {"base_channels": 4, "depth": 2, "steps": 12, "tile_output": 32, "batch_size": 1, "seed": 0, "warmup_steps": 0}


def add_image(project, *, seed: int = 0, size: int = 96, channels: int = 1, split: str = "train",
              strokes: int = 12, dense: bool = False, only_class: int | None = None, client=None):
    """An Image row (a real TIFF file) with an Annotation of painted strokes (or dense labels).

    With ``client`` the masks are saved like the browser saves them: PUT /api/v1/images/{id}/annotation/.
    """
    from apps.annotate.models import Annotation, Image
    from labseg.ml.synthetic import classes_from_instances

    pixels, instances = make_nuclei((size, size), seed=seed, channels=channels)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels if channels > 1 else pixels[0])
    data = buf.getvalue()
    image = Image(project=project, original_filename=f"nuclei_{seed}_{channels}c.tif",
                  checksum=hashlib.sha256(data).hexdigest(), size_bytes=len(data), width=size, height=size,
                  channels=channels, dtype=str(pixels.dtype), display_range=[[0, 65535]] * channels, split=split)
    image.file.save(image.original_filename, ContentFile(data), save=False)
    image.save()
    classes = classes_from_instances(instances) if dense else scribbles(instances, strokes, seed=seed, length=16)
    if only_class is not None:
        classes = np.where(classes > 0, only_class, 0).astype(np.uint8)
    inst = np.where(classes == 2, instances, 0).astype(np.uint16)
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


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate()`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def run_row(run_id: int):
    from apps.training.models import TrainingRun

    return TrainingRun.objects.get(pk=run_id)
