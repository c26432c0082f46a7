"""Plain helpers shared by the test packages (no fixtures): TIFF bytes, synthetic nuclei images and Image
rows, polling waits, and the tiny training config.

Import them from here in new tests. The names the packages' conftests offered before (``tiff_bytes``,
``nuclei``, ``TINY``, ``wait_for`` ...) are still importable from those conftests: they re-export these.
"""
from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pytest

#: A training config (the API's ``config``) that keeps a run to seconds on one CPU thread: a 2-level U-Net of
#: width 4 on 64-px tiles.
TINY = {"base_channels": 4, "depth": 2, "steps": 12, "tile_output": 32, "batch_size": 1, "seed": 0, "warmup_steps": 0}


# --- files -----------------------------------------------------------------------------------
def tiff_bytes(array: np.ndarray, **kwargs) -> bytes:
    """``array`` as a TIFF file; ``kwargs`` go to ``tifffile.imwrite`` (metadata, photometric, compression...)."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def hyperstack_tiff_bytes(array: np.ndarray) -> bytes:
    """(C, H, W) or (H, W) array -> TIFF bytes, an ImageJ hyperstack (axes CYX) for several channels."""
    if array.ndim == 3:
        return tiff_bytes(array, imagej=True, metadata={"axes": "CYX"})
    return tiff_bytes(array)


# --- images ----------------------------------------------------------------------------------
def nuclei(shape=(64, 80), channels=1, dtype="uint16", seed=0, n=6, radius=(6.0, 9.0)) -> np.ndarray:
    """A (C, H, W) synthetic fluorescence image (``labseg.ml.synthetic.make_nuclei``, instances dropped)."""
    from labseg.ml.synthetic import make_nuclei

    image, _ = make_nuclei(shape, n=n, radius=radius, seed=seed, dtype=dtype, channels=channels)
    return image


def image_row(project, pixels: np.ndarray, filename: str, *, split: str = "train", display_max: int = 40000,
              **fields):
    """An ``Image`` row of ``project`` whose file is ``pixels`` written as a TIFF as given ((H, W) or
    (C, H, W)), without the upload service: the quick way to a stored image. ``fields`` (e.g. ``uploaded_by``)
    go to the row."""
    from django.core.files.base import ContentFile

    from apps.annotate.models import Image

    channels = pixels.shape[0] if pixels.ndim == 3 else 1
    data = tiff_bytes(pixels)
    image = Image(project=project, original_filename=filename, checksum=hashlib.sha256(data).hexdigest(),
                  size_bytes=len(data), width=pixels.shape[-1], height=pixels.shape[-2], channels=channels,
                  dtype=str(pixels.dtype), display_range=[[0, display_max]] * channels, split=split, **fields)
    image.file.save(filename, ContentFile(data), save=False)
    image.save()
    return image


# --- waiting ---------------------------------------------------------------------------------
def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate()`` until it returns something truthy and return that; fail the test with ``what``
    after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def wait_prediction_done(pred_id: int, timeout: float = 240):
    """The ``Prediction`` once it has succeeded or failed (a worker runs it)."""
    from apps.inference.models import Prediction

    return wait_for(lambda: (p := Prediction.objects.get(pk=pred_id)).status in ("succeeded", "failed") and p,
                    timeout, interval=0.3, what=f"prediction {pred_id} to finish")
