"""The training weight map of an annotation (``labseg.ml.weights.weight_map``), cached on disk per annotation
version. One cache for its two readers: a training run (its loss weights) and the weight-map overlay of
the viewer (many region requests, one computation). Deleting an image removes its entries
(``services._weight_cache_files``)."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
from django.conf import settings

from .models import Annotation
from .services import WEIGHT_CACHE_DIR


def weight_cache_path(annotation: Annotation, classes: np.ndarray, instances: np.ndarray | None, w0: float,
                      sigma: float, balance: str | None, variant: str = "full") -> Path:
    """Cache file of one weight map: keyed by annotation id + version + parameters + crop ``variant``, and by
    the masks' content, so a reused id (a recreated or restored database) can never return a stale map."""
    h = hashlib.sha1(f"{w0}-{sigma}-{balance}-{variant}".encode())
    for mask in (classes, instances):
        if mask is not None:
            h.update(f"{mask.dtype}{mask.shape}".encode())
            h.update(np.ascontiguousarray(mask).data)
    name = f"ann{annotation.pk}-v{annotation.version}-{h.hexdigest()[:16]}.npy"
    return Path(settings.MEDIA_ROOT) / WEIGHT_CACHE_DIR / name


def cached_weight_map(annotation: Annotation, classes: np.ndarray, instances: np.ndarray | None, w0: float,
                      sigma: float, balance: str | None = "inverse", variant: str = "full") -> tuple[np.ndarray, bool]:
    """``(weights float32 (H, W), was_cached)``; computed by ``labseg.ml.weights.weight_map`` on a miss.

    ``classes`` / ``instances`` are the annotation's masks (or a crop of them, named by ``variant``)."""
    from labseg.ml.weights import weight_map

    path = weight_cache_path(annotation, classes, instances, w0, sigma, balance, variant)
    if path.exists():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == classes.shape:
                return cached, True
        except (OSError, ValueError):
            pass  # a torn file: recompute
    weights = weight_map(classes, instances, w0=w0, sigma=sigma, balance=balance).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{time.monotonic_ns()}.tmp.npy")
    np.save(tmp, weights, allow_pickle=False)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return weights, False
