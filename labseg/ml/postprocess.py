"""From a foreground probability map to instance labels, separating touching nuclei.

Threshold the probability, fill holes, then split touching objects by a seeded watershed on a landscape
of distance-to-background (+ smoothed intensity when the image is given): one seed per h-maximum, so a
neck or a dim line between two nuclei becomes a border while one elongated nucleus is not over-split.
Objects smaller than ``min_size`` pixels are dropped. ``split_instances`` does the splitting of any binary
mask (the same post-processing is used for the baselines in ``labseg.ml.baselines`` and ``bench/fewlabel.py``, so
comparisons are fair). ``object_radius`` estimates the typical object size from painted instances or
from a foreground mask; splitting and debris removal scale with it. ``painted_split`` chooses how touching
objects are told apart from what was painted: by their shape (the watershed above: round nuclei, rods) or,
when the painted background is mostly thin lines (membranes between neurites or cells, as in EM), by those
boundaries alone (connected components of the foreground), whose objects then fill the thin predicted
membrane up to a 1-px line between them (``fill_boundaries``: the partition the ISBI 2012 challenge scores after
thinning borders, and what EM ground truth such as CREMI's is).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed


def marker_function(mask: np.ndarray, image: np.ndarray | None = None, *, radius: float = 10.0,
                    smooth: float = 1.0, confidence: np.ndarray | None = None) -> np.ndarray:
    """The landscape whose maxima seed objects: distance to the background in units of ``radius``,
    plus (when ``image`` is given) the Gaussian-smoothed intensity scaled so its 99th percentile inside
    the mask is 1. Nuclei are brightest near their centres and dim where two touch, so intensity finds
    borders that the shape of the mask alone does not show. ``confidence``: (H, W) in [0, 1], the method's
    probability of the object to ``CONFIDENCE_POWER`` (``confidence_map``), multiplies the distance, so a band of
    lower probability between two touching objects parts them where their outline shows no neck."""
    distance = ndi.distance_transform_edt(mask) / float(radius)
    if confidence is not None:
        distance *= confidence
    if image is None:
        return ndi.gaussian_filter(distance, smooth) if smooth > 0 else distance
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image[0]
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
    intensity = ndi.gaussian_filter(image, smooth) if smooth > 0 else image
    inside = intensity[mask]
    lo = float(np.percentile(intensity[~mask], 50)) if (~mask).any() else 0.0
    scale = max(float(np.percentile(inside, 99)) - lo, 1e-6)
    return distance + (intensity - lo) / scale


#: The h-maxima height that seeds an object of the watershed landscape, in units of the object radius: of the
#: distance transform alone, and of distance plus intensity (measured on the real benchmark sets, where 0.03
#: over-split and 0.2-0.3 merged touching rods; ``bench/fewlabel.py``).
SHAPE_H = 0.15
INTENSITY_H = 0.1

#: The watershed's distance to the background is weighted by the method's probability of the object to this power
#: (``marker_function``): two touching objects that the foreground joins broadly, with no neck in its outline, are
#: often parted by a band the method is less sure of. None or 0: the distance alone. Chosen on the real benchmark
#: sets (``bench/fewlabel.py``; README, *The probability-weighted split*): over the 9 (set, protocol) pairs of
#: HeLa, Huh7 and trpL, the same saved U-Net foregrounds scored F1 0.798 with the distance alone, 0.816 / 0.821 /
#: 0.819 / 0.816 at powers 1 / 2 / 3 / 4 (Huh7 +0.03..+0.08, trpL painted rods +0.065; HeLa and trpL dense
#: labels -0.008 and -0.019); a hard cut at a probability instead (0.6-0.9) did less, and at 0.9 over-split HeLa.
CONFIDENCE_POWER: float | None = 2.0


#: Where set, an object must hold at least one pixel whose probability (of its class) reaches this; objects grown
#: from the pixels above 0.5 without such a seed are dropped (hysteresis thresholding, as edge detectors do). None
#: (the default) or 0: every object is kept. On the real benchmark sets the U-Net's false objects after dense HeLa
#: labels were mostly unsure, ragged blobs in empty background (up to 62 in one run, median peak 0.83 against
#: 1.00), and 0.9 removed them (F1 0.865 -> 0.892); but after scribbles real nuclei peak lower too (HeLa
#: scribbles 0.850 -> 0.806), and the baselines gain more than the U-Net (the threshold's Huh7 scribbles 0.44 ->
#: 0.63): over the real sets the U-Net's mean moved by +0.001, so it is off (README, *Objects need a sure pixel*;
#: ``bench/fewlabel.py --seed-prob``).
SEED_PROB: float | None = None


def object_peaks(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """float32 (N + 1,): the largest ``probability`` inside each object of ``labels`` (ids 1..N; [0] = 0), read
    object box by object box (``probability`` may be a memory map: no whole-image copy)."""
    boxes = ndi.find_objects(labels)
    peaks = np.zeros(len(boxes) + 1, np.float32)
    for index, box in enumerate(boxes, start=1):
        if box is not None:
            peaks[index] = np.asarray(probability[box])[labels[box] == index].max()
    return peaks


def drop_unsure(labels: np.ndarray, probability: np.ndarray, seed_prob: float | None = SEED_PROB,
                rows: int = 1024) -> np.ndarray:
    """``labels`` (int32, 1..N) without the objects whose ``object_peaks`` stay below ``seed_prob``, renumbered
    1..M in their order, in place (row blocks); unchanged when ``seed_prob`` is None or 0."""
    if not seed_prob or labels.max() == 0:
        return labels
    peaks = object_peaks(labels, probability)
    keep = peaks >= np.float32(seed_prob)
    keep[0] = False
    if keep[1:].all():
        return labels
    lut = np.zeros(len(peaks), labels.dtype)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
    for y in range(0, labels.shape[0], rows):
        labels[y:y + rows] = lut[labels[y:y + rows]]
    return labels


def confidence_map(probability: np.ndarray, power: float | None) -> np.ndarray | None:
    """float32 (H, W): ``probability`` (one class's, or the foreground's) clipped to [0, 1], to ``power``; None when
    ``power`` is None or 0 (the watershed then weighs the distance alone)."""
    if not power:
        return None
    return np.clip(np.asarray(probability, np.float32), 0.0, 1.0) ** np.float32(power)

#: How touching objects are separated: "shape" (distance-transform watershed) or "boundaries" (the
#: predicted background between objects is the only separation: 4-connected components).
SPLIT_MODES = ("shape", "boundaries")
#: Painted background thinner than this (px, the diameter of the disk an opening keeps) counts as a line.
THIN_LINE_PX = 5
#: Predicted background that holds a disk of this radius (px) is a region of its own (extracellular space, a thick
#: sheath), not a membrane between objects: ``fill_boundaries`` leaves it background.
THICK_BACKGROUND_PX = 8
#: Painted background within this distance (px) of painted objects is an object's outline, not a line
#: between objects; it does not count either way.
OUTLINE_PX = 3


def painted_split(classes: list[np.ndarray] | np.ndarray, instances: list | np.ndarray | None = None,
                  min_pixels: int = 50) -> str:
    """"boundaries" when most of the painted background (class 1) is thin lines (narrower than
    ``THIN_LINE_PX``) between objects: the user painted the membranes between touching objects (EM,
    epithelia), so the objects are what those boundaries enclose. Otherwise "shape" (thick background
    strokes, or fewer than ``min_pixels`` background pixels that count).

    Background within ``OUTLINE_PX`` of a painted object (class >= 2) is that object's outline and does not
    count, unless ``instances`` (matching instance masks) show two different objects there: then it is a
    line between them (dense labels of touching objects)."""
    classes = [classes] if isinstance(classes, np.ndarray) else list(classes)
    instances = [None] * len(classes) if instances is None else (
        [instances] if isinstance(instances, np.ndarray) else list(instances))
    thin = counted = 0
    for cls, inst in zip(classes, instances):
        cls = np.asarray(cls)
        bg = cls == 1
        if not bg.any():
            continue
        objects = cls >= 2
        outline = ndi.binary_dilation(objects, _disk(OUTLINE_PX)) if objects.any() else objects
        if inst is not None and np.asarray(inst).shape == cls.shape and outline.any():
            ids = np.where(objects, np.asarray(inst), 0).astype(np.int64)
            outline &= ~two_ids_within(ids, _disk(2))  # two objects within 2 px: a line between them, it counts
        away = bg & ~outline
        thick = ndi.binary_opening(bg, _disk(THIN_LINE_PX // 2))
        counted += int(away.sum())
        thin += int((away & ~thick).sum())
    return "boundaries" if counted >= min_pixels and thin > 0.5 * counted else "shape"


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy * yy + xx * xx <= radius * radius


def components(mask: np.ndarray, *, min_size: int = 20, fill_holes: bool = True) -> np.ndarray:
    """Instance labels int32 (H, W): the 4-connected components of a binary mask (holes filled), objects
    smaller than ``min_size`` removed. The "boundaries" split: objects touch only across predicted background."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    labels, _ = ndi.label(mask, structure=ndi.generate_binary_structure(2, 1))
    return remove_small(labels, min_size)


def fill_boundaries(labels: np.ndarray, background: np.ndarray, *, thick_px: int = THICK_BACKGROUND_PX) -> np.ndarray:
    """The "boundaries" split's objects grown over the thin predicted background between them, leaving a 1-px
    line where two meet: int32 (H, W), the same ids.

    A seeded watershed of ``background`` (the background probability, (H, W)) from the objects, so two objects
    meet on the membrane's most certain line, not half-way by distance. Only background that is thin can be
    filled: regions of it that hold a disk of radius ``thick_px`` stay background (their rim included), and so
    does background no object reaches. Predicted membranes are several pixels wide (4-5 on CREMI) while the
    objects of EM ground truth meet at a line: the ISBI 2012 challenge scores only after thinning borders to
    1 px, since a segmentation's border width says nothing of its errors."""
    labels = np.asarray(labels)
    background = np.asarray(background, np.float32)
    if background.shape != labels.shape:
        raise ValueError(f"background {background.shape} and labels {labels.shape} differ in shape")
    bg = labels == 0
    if not labels.any() or not bg.any():
        return labels.astype(np.int32)
    if thick_px > 0:
        # an opening in which the image's edge does not make a region thin: the disk may reach past the edge
        disk = _disk(int(thick_px))
        thick = ndi.binary_dilation(ndi.binary_erosion(bg, disk, border_value=1), disk) & bg
    else:
        thick = np.zeros(bg.shape, bool)
    return watershed(background, labels, mask=~thick, connectivity=1, watershed_line=True).astype(np.int32)


def split_instances(
    mask: np.ndarray,
    image: np.ndarray | None = None,
    *,
    h: float | None = None,
    radius: float = 10.0,
    smooth: float = 1.0,
    min_size: int = 20,
    fill_holes: bool = True,
    confidence: np.ndarray | None = None,
) -> np.ndarray:
    """Instance labels int32 (H, W) from a binary mask (4-connected objects).

    Seeded watershed on ``marker_function`` (see there; ``image`` (H, W) or (C, H, W), first channel
    used, makes splitting intensity-aware; ``confidence`` weighs the distance). ``h``: minimal height of a
    maximum of that landscape to seed its own object (larger merges more); default 0.15 (1.5 px of distance at
    radius 10) without an image, 0.03 with one. ``min_size``: smaller objects are removed. Every pixel of
    ``mask`` still goes to an object: a component with no seed (too thin, too unsure) is one object.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    if h is None:
        h = SHAPE_H if image is None else INTENSITY_H
    landscape = marker_function(mask, image, radius=radius, smooth=smooth, confidence=confidence)
    eight = ndi.generate_binary_structure(2, 2)
    four = ndi.generate_binary_structure(2, 1)
    markers, _ = ndi.label(h_maxima(landscape, h, footprint=eight).astype(bool) & mask, structure=eight)
    # components without a seed (too thin to reach h) keep one label each instead of vanishing
    components, n_components = ndi.label(mask, structure=four)
    unseeded = np.setdiff1d(np.arange(1, n_components + 1), np.unique(components[markers > 0]))
    if len(unseeded):
        extra = np.isin(components, unseeded)
        markers[extra] = components[extra] + markers.max()
    labels = watershed(-landscape, markers, mask=mask, connectivity=four)
    return remove_small(labels, min_size)


def object_radius(instances: np.ndarray | None = None, foreground: np.ndarray | None = None,
                  default: float = 10.0) -> float:
    """Typical object radius (px) for instance splitting.

    The median largest inscribed radius (the distance transform's maximum: a round object's radius, an
    elongated one's half width; two touching objects merged into one component keep one object's
    radius): of painted (or known) ``instances`` when there are at least 3, else of the connected
    components of a binary ``foreground``. ``default`` when neither tells.
    """
    if instances is not None:
        painted = painted_radius([instances])
        if painted is not None:
            return painted
    if foreground is not None and np.asarray(foreground).any():
        # the inscribed radius of a round object is its radius; of an elongated one, its half width
        return median_radius(inscribed_radii(ndi.binary_fill_holes(np.asarray(foreground, bool))), default)
    return float(default)


def two_ids_within(ids: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """(H, W) bool: where two different non-zero ids of ``ids`` (int64, 0 = none) lie within ``footprint``."""
    top = int(ids.max()) + 1  # a sentinel above every id: int64's max overflows scipy's minimum filter (1.17)
    hi = ndi.maximum_filter(ids, footprint=footprint)
    lo = ndi.minimum_filter(np.where(ids > 0, ids, top), footprint=footprint)
    return (hi > 0) & (lo < top) & (hi != lo)


#: A painted instance counts as an object painted whole when at least this share of its edge touches painted
#: background or another painted object (``painted_whole``).
WHOLE_EDGE_SHARE = 0.25


def painted_whole(classes: np.ndarray, instances: np.ndarray, whole_ids=()) -> np.ndarray:
    """``instances`` (object classes only) with the ids that were not painted whole set to 0.

    An object painted whole has an edge that meets what was painted around it: its outline as background, or
    the next object (dense labels). A stroke inside an object saved with an id (instance mode paints each
    stroke as a new object) is surrounded by unlabelled pixels: its size is the brush's, not the object's, so
    it must not set the object radius. Kept: the ids with at least ``WHOLE_EDGE_SHARE`` of their edge pixels
    (a 4-neighbour outside the object; the image's border is not an edge) within one pixel (8-neighbourhood)
    of painted background or of another id; and the ids in ``whole_ids`` (objects the user drew whole, say with a
    polygon, whatever was painted around them)."""
    classes, instances = np.asarray(classes), np.asarray(instances)
    if classes.shape != instances.shape:
        raise ValueError(f"classes {classes.shape} and instances {instances.shape} differ in shape")
    ids = np.where((classes >= 2) & (instances > 0), instances, 0).astype(np.int64)  # no negative ids
    if not ids.any():
        return ids
    cross, square = ndi.generate_binary_structure(2, 1), np.ones((3, 3), bool)
    edge = (ids > 0) & ((ndi.maximum_filter(ids, footprint=cross, mode="nearest") != ids)
                        | (ndi.minimum_filter(ids, footprint=cross, mode="nearest") != ids))
    # on an object's own pixel, two ids within one pixel means another object beside it
    met = edge & (two_ids_within(ids, square) | ndi.binary_dilation(classes == 1, structure=square))
    index = np.unique(ids[ids > 0])
    edges = ndi.sum_labels(edge, ids, index)
    whole = ndi.sum_labels(met, ids, index) >= WHOLE_EDGE_SHARE * np.maximum(edges, 1)
    keep = np.zeros(int(index.max()) + 1, bool)
    keep[index[whole & (edges > 0)]] = True
    drawn = [int(i) for i in whole_ids if 0 < int(i) < len(keep)]
    keep[drawn] = True
    return np.where(keep[ids], ids, 0)


def painted_radius(instances: list[np.ndarray], classes: list[np.ndarray] | None = None,
                   whole_ids: list | None = None) -> float | None:
    """The median inscribed radius of the objects of several instance masks; None below 3 objects. With the
    matching ``classes``, only the objects painted whole count (``painted_whole``: not strokes saved with ids;
    ``whole_ids``: per mask, the ids drawn whole)."""
    radii = []
    for k, inst in enumerate(instances):
        labels = np.asarray(inst).astype(np.int64) if classes is None else painted_whole(
            classes[k], inst, () if whole_ids is None else whole_ids[k])
        if labels.any():
            r = inscribed_radii(labels > 0, labels)
            radii.extend(r[r > 0])
    return float(max(2.0, np.median(radii))) if len(radii) >= 3 else None


def median_radius(inscribed: np.ndarray, default: float = 10.0) -> float:
    """The median of the inscribed radii of at least 2 px (smaller components are specks), at least 2;
    ``default`` when there is none."""
    inscribed = np.asarray(inscribed, np.float64)
    inscribed = inscribed[inscribed >= 2]
    return float(max(2.0, np.median(inscribed))) if len(inscribed) else float(default)


def inscribed_radii(mask: np.ndarray, components: np.ndarray | None = None) -> np.ndarray:
    """The largest inscribed radius (px) of each 4-connected component of ``mask``, each measured on its
    own bounding box (padded by 1 px of background), so the memory is one box's at a time."""
    if components is None:
        components, _ = ndi.label(mask, structure=ndi.generate_binary_structure(2, 1))
    out = []
    for index, box in enumerate(ndi.find_objects(components), start=1):
        if box is not None:
            out.append(float(ndi.distance_transform_edt(np.pad(components[box] == index, 1)).max()))
    return np.asarray(out, np.float64)


def min_object_size(radius: float) -> int:
    """Objects smaller than a fifth of the typical object's area are debris: dropped (at least 10 px)."""
    return int(max(10, round(0.2 * np.pi * radius * radius)))


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects with fewer than ``min_size`` pixels and renumber 1..N (int32)."""
    labels = np.asarray(labels)
    if min_size > 1 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return relabel_sequential(labels.astype(np.int32))[0].astype(np.int32)


def foreground_probability(probs: np.ndarray, fg_class: int | None = 1) -> np.ndarray:
    """(H, W) foreground probability from (K, H, W) softmax output or an (H, W) map.

    ``fg_class``: the output channel of the object class (1 = class value 2, the first object class);
    None: everything but channel 0 (background) counts as foreground.
    """
    probs = np.asarray(probs, np.float32)
    if probs.ndim == 2:
        return probs
    if probs.ndim != 3:
        raise ValueError(f"probs must be (K, H, W) or (H, W), got shape {probs.shape}")
    if fg_class is None:
        return 1.0 - probs[0]
    if not 0 <= fg_class < probs.shape[0]:
        raise ValueError(f"fg_class {fg_class} out of range for {probs.shape[0]} channels")
    return probs[fg_class]


def instances_from_probs(
    probs: np.ndarray,
    fg_class: int | None = 1,
    threshold: float = 0.5,
    min_size: int | None = None,
    *,
    image: np.ndarray | None = None,
    h: float | None = None,
    radius: float | None = None,
    smooth: float = 1.0,
    fill_holes: bool = True,
    split: str = "shape",
    size: float | None = None,
    confidence_power: float | None = CONFIDENCE_POWER,
    seed_prob: float | None = SEED_PROB,
) -> np.ndarray:
    """Instance labels int32 (H, W) from softmax probabilities (K, H, W) or a foreground map (H, W).

    Foreground = probability of ``fg_class`` above ``threshold``, holes filled; then ``split_instances``,
    by default the plain distance-transform watershed; ``image``, an (H, W) intensity landscape
    (``labseg.ml.baselines.SplitIntensity``), is added to the watershed's: with neither ``radius`` nor
    ``min_size`` given only where the foreground is merged colonies (``split_where_merged``), else always.
    ``radius``: typical object radius in px; None: ``object_radius`` of the foreground itself.
    ``min_size``: None: ``min_object_size(radius)``. ``split``: "shape" (the watershed) or "boundaries"
    (connected components grown over the thin predicted membrane between them: ``fill_boundaries``; see
    ``painted_split``). ``size``: the object radius the lab gave (a project setting, not measured from painted
    objects; ``radius`` must then be None): objects are split at it, and the grey values of ``image`` still
    take part only where the foreground is merged colonies, told by the foreground's blobs against ``size``
    (``split_where_merged``). ``confidence_power``: the watershed's distance is weighted by the foreground
    probability to this power (``CONFIDENCE_POWER``, ``marker_function``); None: the distance alone.
    ``seed_prob``: objects whose foreground probability never reaches it are dropped (``SEED_PROB``,
    ``drop_unsure``); None: every object is kept.
    """
    _check_split(split)
    if size is not None and radius is not None:
        raise ValueError("give the object radius as radius (measured) or size (set), not both")
    fg = foreground_probability(probs, fg_class)
    mask = fg > threshold
    auto = radius is None and min_size is None and image is not None and split == "shape"
    blob = object_radius(foreground=mask) if radius is None and (size is None or auto) else None
    if radius is None:
        radius = float(size) if size is not None else blob
    if min_size is None:
        min_size = min_object_size(radius)
    if split == "boundaries":
        objects = drop_unsure(components(mask, min_size=min_size, fill_holes=fill_holes), fg, seed_prob)
        return fill_boundaries(objects, 1.0 - fg)
    confidence = confidence_map(fg, confidence_power)
    if auto:  # the grey values split only a foreground of merged colonies (split_where_merged)
        if fill_holes:
            mask = ndi.binary_fill_holes(mask)
        labels = split_where_merged(
            lambda landscape, least, r: split_instances(mask, landscape, h=h, radius=r, smooth=smooth, min_size=least,
                                                        fill_holes=False, confidence=confidence), image, blob,
            size)
    else:
        labels = split_instances(mask, image, h=h, radius=radius, smooth=smooth, min_size=min_size,
                                 fill_holes=fill_holes, confidence=confidence)
    return drop_unsure(labels, fg, seed_prob)


#: The foreground is merged colonies when its blobs' median inscribed radius is more than this many times that
#: of the objects the grey values split it into. On the benchmark's real sets: 1.8-3.8 where touching rods were
#: predicted as one colony (trpL after scribbles), 1.0-1.2 wherever the foreground's blobs were the objects
#: (HeLa, Huh7, trpL after lines between rods; ``bench/fewlabel.py``).
MERGED_RATIO = 1.5


def split_where_merged(split_with, image: np.ndarray, radius: float, size: float | None = None) -> np.ndarray:
    """The intensity-aware split where no object size was measured on painted objects: ``split_with(landscape or
    None, min_size, radius) -> labels`` splits the mask; ``radius`` is the foreground's own median inscribed radius
    (``object_radius``). ``size``: the object radius the lab set (``instances_from_probs``'s ``size``): the
    foreground is merged colonies when ``radius`` is more than ``MERGED_RATIO`` times it; then the grey values
    split it (at the colony's radius, where the grey values weigh as much as the distance to the background: at
    the objects' own radius the distance across a colony would drown them), with debris judged at the size;
    else the plain watershed splits at the size.

    The grey values (``image``, the (H, W) landscape) split the mask first. When the objects they find are
    much smaller than the foreground's own blobs (``MERGED_RATIO``), the foreground is touching objects merged
    into colonies that shape alone cannot part (rods side by side): that split is kept, with debris judged on
    the objects as split (``min_object_size`` of their median inscribed radius; a fifth of a colony's area
    would drop every rod). Otherwise the blobs are the objects and the plain distance-transform watershed
    splits them (on the real sets the grey values over-split textured nuclei and rods that the network had
    already parted)."""
    if size is not None:
        if radius > MERGED_RATIO * size:
            return split_with(image, min_object_size(size), radius)
        return split_with(None, min_object_size(size), size)
    labels = split_with(image, 1, radius)
    split_radius = median_radius(inscribed_radii(labels > 0, labels), default=radius)
    if radius > MERGED_RATIO * split_radius:
        return remove_small(labels, min_object_size(split_radius))
    return split_with(None, min_object_size(radius), radius)


def object_scale(size: float | None, painted: float | None) -> float | None:
    """The object radius that sizes training crops and edge calibration: the size the lab set wins over the
    radius of the objects painted whole (None: neither; measured on the foreground where one is needed)."""
    return size if size is not None else painted


def split_sizes(size: float | None, painted: float | None) -> tuple[float | None, float | None]:
    """``(radius, size)`` for the split (``instances_by_class``): a size the lab set splits merged colonies only
    and wins over the painted radius, which otherwise splits every object (the grey values always take part)."""
    return (None, size) if size is not None else (painted, None)


def recorded_radius(value: object) -> float | None:
    """An object radius stored with a model (provenance, checkpoint extras: ``object_radius``, ``object_size``;
    outside data when the checkpoint was uploaded): None unless a number in 1..10000."""
    try:
        return float(value) if value is not None and 1.0 <= float(value) <= 10_000 else None
    except (TypeError, ValueError, OverflowError):
        return None


def recorded_split(value: object) -> str:
    """The split mode stored with a model (provenance, checkpoint extras); "shape" for models trained
    before it was recorded, or for anything that is not a known mode."""
    return value if value in SPLIT_MODES else "shape"


def _check_split(split: str) -> None:
    if split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")


def split_by_component(mask: np.ndarray, *, radius: float, min_size: int, margin: int = 16,
                       image: np.ndarray | None = None, probability: np.ndarray | None = None,
                       power: float | None = None) -> np.ndarray:
    """``split_instances`` of a (hole-filled) binary mask computed one 4-connected component at a time.

    Each component is split on its bounding box grown by ``margin`` px (with the neighbouring components'
    pixels, so distances and the smoothing near it are the whole image's) and only its own pixels are kept,
    renumbered 1..N: the same partition as the whole-mask call, in the memory of one box instead of ~100
    bytes per pixel of the whole image (distance transforms, h-maxima, watershed). ``image``: the (H, W)
    intensity landscape of ``split_instances``, cut to each box (its percentiles are then the box's);
    ``probability`` (a memory map too) to ``power``: the distance's weight (``confidence_map``), cut likewise, so
    no weight image of the whole is made."""
    mask = np.asarray(mask, bool)
    components, _ = ndi.label(mask, structure=ndi.generate_binary_structure(2, 1))
    out = np.zeros(mask.shape, np.int32)
    h, w = mask.shape
    next_id = 0
    for index, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        ys = slice(max(0, box[0].start - margin), min(h, box[0].stop + margin))
        xs = slice(max(0, box[1].start - margin), min(w, box[1].stop + margin))
        labels = split_instances(mask[ys, xs], None if image is None else image[ys, xs], fill_holes=False,
                                 radius=radius, min_size=min_size,
                                 confidence=None if probability is None else confidence_map(probability[ys, xs], power))
        mine = components[ys, xs] == index
        ids = np.unique(labels[mine])
        ids = ids[ids > 0]
        if not len(ids):
            continue  # the whole component was smaller than min_size
        lut = np.zeros(int(labels.max()) + 1, np.int32)
        lut[ids] = np.arange(next_id + 1, next_id + 1 + len(ids), dtype=np.int32)
        next_id += len(ids)
        out[ys, xs][mine] = lut[labels[mine]]
    return out


def instances_by_class(probs: np.ndarray, *, classes: np.ndarray | None = None, radius: float | None = None,
                       by_component: bool = False, split: str = "shape",
                       image: np.ndarray | None = None, size: float | None = None,
                       confidence_power: float | None = CONFIDENCE_POWER,
                       seed_prob: float | None = SEED_PROB) -> tuple[np.ndarray, np.ndarray]:
    """Instances of every object class: ``(instances int32 (H, W), object_class)``.

    ``probs``: softmax (K, H, W), channel 0 = background, channel k = the k-th object class. A pixel belongs
    to the class of its largest probability (``classes``, the argmax, may be passed when already computed);
    each object class's pixels are split on their own (holes filled, ``split_instances`` with the object
    ``radius``; None: estimated per class from its own pixels, debris below ``min_object_size`` removed), so
    a nucleus touching a mitosis stays two objects. Ids are unique in the image, numbered class after class;
    ``object_class[i]`` is the channel of object ``i`` (``object_class[0] = 0``). With two channels this is
    exactly ``instances_from_probs``. ``by_component``: split one connected component at a time
    (``split_by_component``, for images too large for whole-image distance transforms). ``split``:
    "shape" (the watershed) or "boundaries" (each class's connected components, then all grown over the thin
    predicted background between them: ``fill_boundaries``, except with ``by_component``, whose images are too
    large for a whole-image watershed: there the objects keep the predicted membrane's width; see
    ``painted_split``). ``image``: an (H, W) intensity landscape for the watershed (``split_instances``;
    ``labseg.ml.baselines.SplitIntensity``), used by the "shape" split only: with ``radius`` None only where
    a class's foreground is merged colonies (``split_where_merged``), with a given ``radius`` always.
    ``size``: the object radius the lab set (``instances_from_probs``): every class is split at it, with the
    grey values only where that class's foreground is merged colonies. ``confidence_power``: each class's watershed
    weighs the distance by that class's probability to this power (``instances_from_probs``). ``seed_prob``: objects
    whose class's probability never reaches it are dropped (``drop_unsure``, box by box).
    """
    _check_split(split)
    if size is not None and radius is not None:
        raise ValueError("give the object radius as radius (measured) or size (set), not both")
    probs = np.asarray(probs) if not isinstance(probs, np.memmap) else probs
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"probs must be (K >= 2, H, W), got shape {probs.shape}")
    if classes is None:
        classes = np.argmax(probs, axis=0)
    out = None  # the first class's labels become the output (no second int32 image while it is split)
    object_class = [0]
    for k in range(1, probs.shape[0]):
        mask = ndi.binary_fill_holes(classes == k)
        if not mask.any():
            continue
        r = radius if radius is not None else size if size is not None else object_radius(foreground=mask)
        if split == "boundaries":
            labels = components(mask, min_size=min_object_size(r), fill_holes=False)
        else:
            def split_with(landscape, least, at, mask=mask, k=k):
                if by_component:  # the weight cut box by box from the (possibly memory-mapped) probabilities
                    return split_by_component(mask, radius=at, min_size=least, image=landscape,
                                              probability=probs[k] if confidence_power else None,
                                              power=confidence_power)
                return split_instances(mask, landscape, radius=at, min_size=least, fill_holes=False,
                                       confidence=confidence_map(probs[k], confidence_power))

            if image is not None and radius is None:  # the grey values split merged colonies only
                blob = r if size is None else object_radius(foreground=mask)
                labels = split_where_merged(split_with, image, blob, size)
            else:
                labels = split_with(image, min_object_size(r), r)
        del mask
        labels = drop_unsure(labels, probs[k], seed_prob)
        n = int(labels.max())
        if n:
            base = len(object_class) - 1
            if out is None:
                out = labels
            else:
                # holes filled in one class may cover another class's pixels: the later class keeps them
                # (in place, so no temporary the size of the objects' pixels)
                objects = labels > 0
                np.add(labels, base, out=labels, where=objects)
                np.copyto(out, labels, where=objects)
                del objects
            object_class.extend([k] * n)
        del labels
    if out is None:
        out = np.zeros(classes.shape, np.int32)
    # ids overwritten by a later class (a hole of one class filled over another) are renumbered away
    present = np.unique(out)
    if len(present) - 1 != len(object_class) - 1:
        relabelled, forward, _ = relabel_sequential(out)
        object_class = [0] + [object_class[int(old)] for old in forward.in_values[forward.in_values > 0]]
        out = relabelled.astype(np.int32)
    if split == "boundaries" and not by_component:
        out = fill_boundaries(out, probs[0])
    return out, np.asarray(object_class, np.int32)
