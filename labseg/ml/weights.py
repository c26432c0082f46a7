"""Pixel weight maps for the U-Net loss (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``: a class-balancing term plus a border
term that is large in the thin background gaps between touching objects. d1 <= d2 are the distances
from a background pixel to the nearest and second-nearest object instance.

The obvious implementation runs one full-image distance transform per instance (N * H * W time and,
if stacked, memory). :func:`border_weights` instead computes each instance's distance transform only
inside its bounding box grown by a radius ``R`` beyond which the term cannot exceed the tolerance, and
keeps the two smallest distances per pixel in two running float32 arrays. Cost ~ sum over instances
of (box + 2R)^2, memory two images.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

BALANCE_CHOICES = ("inverse", "log", None)


def border_radius(w0: float, sigma: float, tol: float = 1e-5) -> int:
    """Radius ``R`` (px) beyond which ignoring an instance changes the border term by at most ``tol``.

    Where the true d2 <= R both nearest instances are within R, hence inside both grown boxes, and
    their distances are computed exactly. Where d2 > R, the exact term and the computed term (whose
    second distance is >= the true d2) both lie in ``[0, w0 * exp(-R**2 / (2 sigma**2))]``, so their
    difference is at most that bound; ``R`` is chosen so that the bound is <= ``tol``.
    """
    if w0 <= tol or sigma <= 0:
        return 0
    return int(math.ceil(sigma * math.sqrt(2.0 * math.log(w0 / tol)))) + 1


def _relabel(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary (sparse, huge or negative) instance ids to 1..N, keeping 0 as background.

    Returns ``(labels int32, N)``.
    """
    flat = instances.ravel()
    lo, hi = int(flat.min()), int(flat.max())
    if lo >= 0 and hi < 4 * flat.size + 16:  # dense enough: a lookup table beats sorting
        present = np.bincount(flat.astype(np.intp), minlength=hi + 1) > 0
        present[0] = False
        table = np.zeros(hi + 1, np.int32)
        table[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
        return table[flat].reshape(instances.shape), int(present.sum())
    ids, inverse = np.unique(flat, return_inverse=True)
    labels = inverse.astype(np.int32) + 1
    pos = int(np.searchsorted(ids, 0))
    if pos < len(ids) and ids[pos] == 0:
        labels[inverse == pos] = 0
        labels[inverse > pos] -= 1
        return labels.reshape(instances.shape), len(ids) - 1
    return labels.reshape(instances.shape), len(ids)


def border_weights(
    instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0, *, tol: float = 1e-5
) -> np.ndarray:
    """Border term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background pixels, float32 (H, W).

    ``instances``: integer (H, W) labels, 0 = background, any other value = one object (ids may be
    sparse and as large as uint64 allows). ``d_i`` is exactly
    ``scipy.ndimage.distance_transform_edt(instances != i)``; d1 <= d2 are the two smallest over all
    instances. The result is 0 on object pixels and everywhere when there are fewer than two
    instances. Absolute error against that definition <= ``tol`` (see :func:`border_radius`) plus
    float32 rounding.
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be 2-D (H, W), got shape {instances.shape}")
    if not (np.issubdtype(instances.dtype, np.integer) or instances.dtype == bool):
        raise ValueError(f"instances must be an integer label image, got {instances.dtype}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    h, w = instances.shape
    out = np.zeros((h, w), np.float32)
    if w0 == 0 or sigma == 0 or instances.size == 0:
        return out
    labels, n = _relabel(instances)
    if n < 2:
        return out
    radius = border_radius(abs(w0), sigma, tol)
    d1 = np.full((h, w), np.inf, np.float32)
    d2 = np.full((h, w), np.inf, np.float32)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        ys = slice(max(0, box[0].start - radius), min(h, box[0].stop + radius))
        xs = slice(max(0, box[1].start - radius), min(w, box[1].stop + radius))
        # every pixel of instance i lies in its box, hence in the crop: the crop's EDT is exact
        dist = ndi.distance_transform_edt(labels[ys, xs] != i).astype(np.float32)
        a, b = d1[ys, xs], d2[ys, xs]
        np.minimum(b, np.maximum(a, dist), out=b)  # new second = min(old second, max(old first, d))
        np.minimum(a, dist, out=a)
    near = (labels == 0) & np.isfinite(d2)
    s = d1[near].astype(np.float64) + d2[near]
    out[near] = (w0 * np.exp(-(s * s) / (2.0 * sigma * sigma))).astype(np.float32)
    return out


def class_weights(classes: np.ndarray, balance: str | None = "inverse") -> dict[int, float]:
    """Weight per labelled class (value > 0) from its share ``p`` among the labelled pixels.

    ``"inverse"``: ``1 / (K p)`` for the K classes present, so the mean weight over labelled pixels
    is exactly 1 (rare classes count as much as frequent ones in total). ``"log"``: ``1 / ln(1.02 + p)``
    (the bounded ENet variant, 1.42 .. 50.5). ``None``: 1 for every class.
    """
    if balance not in BALANCE_CHOICES:
        raise ValueError(f"balance must be one of {BALANCE_CHOICES}, got {balance!r}")
    values, counts = np.unique(np.asarray(classes), return_counts=True)
    keep = values > 0
    values, counts = values[keep], counts[keep].astype(np.float64)
    if len(values) == 0:
        return {}
    p = counts / counts.sum()
    if balance == "inverse":
        wc = 1.0 / (len(values) * p)
    elif balance == "log":
        wc = 1.0 / np.log(1.02 + p)
    else:
        wc = np.ones_like(p)
    return {int(v): float(x) for v, x in zip(values, wc)}


def weight_map(
    classes: np.ndarray,
    instances: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    balance: str | None = "inverse",
) -> np.ndarray:
    """Per-pixel loss weights, float32 (H, W): class term + border term, exactly 0 where unlabelled.

    ``classes``: (H, W) ints, 0 = unlabelled, 1 = background, 2.. = object classes. Class shares are
    counted over labelled pixels only (see :func:`class_weights`). ``instances`` (optional, same
    shape): object instances for the border term (:func:`border_weights`); without it the map is the
    class term only.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise ValueError(f"classes must be 2-D (H, W), got shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must be an integer mask, got {classes.dtype}")
    out = np.zeros(classes.shape, np.float32)
    for value, wc in class_weights(classes, balance).items():
        out[classes == value] = wc
    if instances is not None:
        instances = np.asarray(instances)
        if instances.shape != classes.shape:
            raise ValueError(f"instances shape {instances.shape} != classes shape {classes.shape}")
        out += border_weights(instances, w0=w0, sigma=sigma)
    out[classes == 0] = 0.0
    return out
