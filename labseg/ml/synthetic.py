"""Synthetic fluorescence-like nuclei with known instance labels (test data, demo data, benchmarks).

Nuclei are ellipses with random size, orientation and brightness, packed so that many touch; the
image is their intensity with internal texture, blurred by a Gaussian PSF, on a background with a
slow gradient, with Poisson (shot) and Gaussian (read) noise. Deterministic for a given seed.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def make_nuclei(
    shape: tuple[int, int] = (256, 256),
    n: int | None = None,
    radius: tuple[float, float] = (7.0, 13.0),
    *,
    touching: float = 0.6,
    seed: int = 0,
    dtype: str = "uint16",
    channels: int = 1,
    blur: float = 1.5,
    noise: float = 0.04,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image (C, H, W) in dtype, instances int32 (H, W))``.

    ``n`` nuclei (default: about 30 % area coverage); ``touching`` in 0..1 is how strongly nuclei are
    pulled together into touching clusters. Instance ids are 1..N, 0 is background; where ellipses
    overlap, the pixel goes to the nearer centre (a flat, touching border, as in real segmentations).
    Extra channels (C > 1) are a cytoplasm-like dilated ring and noise, so they carry other signal.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    mean_r = float(np.mean(radius))
    if n is None:
        n = max(1, int(0.30 * h * w / (np.pi * mean_r**2)))
    centres = []
    cluster_centres = rng.uniform([0, 0], [h, w], size=(max(1, n // 5), 2))
    tries = 0
    while len(centres) < n and tries < n * 200:
        tries += 1
        if rng.random() < touching and centres:
            # place next to an existing nucleus so that they touch or nearly touch
            base = centres[rng.integers(len(centres))]
            ang = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(1.4, 1.9) * mean_r
            c = base[:2] + dist * np.array([np.sin(ang), np.cos(ang)])
        else:
            cc = cluster_centres[rng.integers(len(cluster_centres))]
            c = cc + rng.normal(0, max(h, w) / 4, size=2)
        if not (2 <= c[0] < h - 2 and 2 <= c[1] < w - 2):
            continue
        if centres and np.min(np.hypot(*(np.array([x[:2] for x in centres]) - c).T)) < 1.25 * radius[0]:
            continue
        ra, rb = sorted(rng.uniform(*radius, size=2))[::-1]
        centres.append((c[0], c[1], ra, rb, rng.uniform(0, np.pi), rng.uniform(0.5, 1.0)))

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    instances = np.zeros((h, w), np.int32)
    best = np.full((h, w), np.inf, np.float32)
    intensity = np.zeros((h, w), np.float32)
    for i, (cy, cx, ra, rb, theta, bright) in enumerate(centres, start=1):
        y0, y1 = int(max(0, cy - ra - 2)), int(min(h, cy + ra + 3))
        x0, x1 = int(max(0, cx - ra - 2)), int(min(w, cx + ra + 3))
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        r = np.sqrt((u / ra) ** 2 + (v / rb) ** 2)  # < 1 inside
        inside = r < 1.0
        win = best[y0:y1, x0:x1]
        take = inside & (r < win)
        win[take] = r[take]
        instances[y0:y1, x0:x1][take] = i
        intensity[y0:y1, x0:x1][take] = bright * (1.0 - 0.35 * r[take] ** 2)
    texture = ndi.gaussian_filter(rng.normal(0, 1, (h, w)).astype(np.float32), 2.0)
    nuc = intensity * (1.0 + 0.25 * texture / (texture.std() + 1e-6))
    gradient = 0.08 + 0.06 * (yy / h + xx / w) / 2
    chans = [nuc]
    if channels > 1:
        ring = ndi.grey_dilation(intensity, size=7) - intensity
        chans.append(0.6 * ring + 0.1 * nuc)
        for _ in range(2, channels):
            chans.append(ndi.gaussian_filter(rng.random((h, w)).astype(np.float32), 4) * 0.5)
    out = []
    for c in chans:
        c = ndi.gaussian_filter(c, blur) + gradient
        peak = 400.0  # photons at full brightness
        c = rng.poisson(np.clip(c, 0, None) * peak).astype(np.float32) / peak
        c = c + rng.normal(0, noise, c.shape).astype(np.float32)
        out.append(np.clip(c, 0, None))
    img = np.stack(out)
    img /= max(float(img.max()), 1e-6)
    if dtype == "uint16":
        img = np.round(img * 40000 + 200).astype(np.uint16)  # a camera's offset and partial range
    elif dtype == "uint8":
        img = np.round(img * 250).astype(np.uint8)
    else:
        img = img.astype(dtype)
    return img, instances


def classes_from_instances(instances: np.ndarray, object_class: int = 2) -> np.ndarray:
    """Dense class mask: 1 background, ``object_class`` inside nuclei (uint8)."""
    return np.where(instances > 0, object_class, 1).astype(np.uint8)


def paint_stroke(out: np.ndarray, ys: np.ndarray, xs: np.ndarray, allowed: np.ndarray, value: int,
                 rng: np.random.Generator, *, radius: int, length: int, grid: tuple[np.ndarray, np.ndarray]) -> None:
    """One straight brush stroke (``radius``, ``length`` px, random direction) centred on a random one of the
    pixels ``ys, xs``, painted as ``value`` into ``out`` where ``allowed``; nothing when there is no pixel."""
    if len(ys) == 0:
        return
    yy, xx = grid
    j = rng.integers(len(ys))
    y, x = float(ys[j]), float(xs[j])
    ang = rng.uniform(0, 2 * np.pi)
    for t in np.linspace(-length / 2, length / 2, length):
        py, px = y + t * np.sin(ang), x + t * np.cos(ang)
        disk = (yy - py) ** 2 + (xx - px) ** 2 <= radius**2
        out[disk & allowed] = value


def scribbles(
    instances: np.ndarray, n_strokes: int = 15, *, radius: int = 3, length: int = 24, seed: int = 0,
    object_class: int = 2, bg_margin: float | None = None, separations: int = 0,
) -> np.ndarray:
    """Sparse brush strokes as a user paints them: short strokes inside nuclei and in background.

    Returns a uint8 class mask, 0 where unlabelled. About half of the strokes go into nuclei (each
    clipped to that nucleus, so it never crosses a border), the rest into background away from nuclei:
    every background stroke pixel is more than ``bg_margin`` px from the nearest nucleus (default
    ``radius + 3``, a cautious painter; 1-2 px is a painter who outlines the gaps between nuclei).
    ``separations``: how many of the background strokes are instead thin (1 px radius) lines along the
    shared border of two touching nuclei, up to ``length`` px long: the paper's separation borders, as a
    user who wants touching nuclei apart paints them (background, over the nuclei's edge pixels).
    """
    rng = np.random.default_rng(seed)
    h, w = instances.shape
    out = np.zeros((h, w), np.uint8)
    ids = [i for i in np.unique(instances) if i > 0]
    margin = radius + 3 if bg_margin is None else bg_margin
    bg_far = ndi.distance_transform_edt(instances == 0) > margin
    yy, xx = np.mgrid[0:h, 0:w]
    n_fg = (n_strokes + 1) // 2
    n_sep = min(max(0, separations), n_strokes - n_fg)
    for k in range(n_strokes - n_sep):
        fg = k < n_fg and ids
        if fg:
            obj = instances == ids[rng.integers(len(ids))]
            ys, xs = np.nonzero(ndi.binary_erosion(obj, iterations=radius) if obj.sum() > 40 else obj)
            allowed, value = obj, object_class
        else:
            ys, xs = np.nonzero(bg_far)
            allowed, value = bg_far, 1
        paint_stroke(out, ys, xs, allowed, value, rng, radius=radius, length=length, grid=(yy, xx))
    for _ in range(n_sep):
        line = separation_line(instances, rng, length)
        if line is not None:
            out[line] = 1
    return out


def touching_pairs(instances: np.ndarray) -> list[tuple[int, int]]:
    """Sorted pairs (a, b), a < b, of instance ids that share a 4-connected border."""
    pairs = set()
    for a, b in ((instances[:, :-1], instances[:, 1:]), (instances[:-1, :], instances[1:, :])):
        touch = (a > 0) & (b > 0) & (a != b)
        lo, hi = np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])
        pairs.update(zip(lo.tolist(), hi.tolist()))
    return sorted(pairs)


def separation_line(instances: np.ndarray, rng: np.random.Generator, length: int = 24,
                    pairs: list[tuple[int, int]] | None = None) -> np.ndarray | None:
    """A boolean mask: the pixels on both sides of the border between two touching nuclei (a random
    pair), at most ``length`` px along it; None when no nuclei touch."""
    pairs = touching_pairs(instances) if pairs is None else pairs
    if not pairs:
        return None
    a, b = pairs[rng.integers(len(pairs))]
    in_a, in_b = instances == a, instances == b
    cross = ndi.generate_binary_structure(2, 1)
    border = (in_a & ndi.binary_dilation(in_b, cross)) | (in_b & ndi.binary_dilation(in_a, cross))
    ys, xs = np.nonzero(border)
    j = rng.integers(len(ys))
    near = np.hypot(ys - ys[j], xs - xs[j]) <= length / 2
    line = np.zeros(instances.shape, bool)
    line[ys[near], xs[near]] = True
    return line
