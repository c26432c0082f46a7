"""The two baselines every U-Net is compared with, fitted on the same labels (plain numpy; no Django).

- ``ThresholdBaseline``: what a lab does without machine learning. The channels are projected on the
  direction that separates the painted object pixels from the painted background pixels (for one
  channel: the channel itself, flipped when objects are darker than background; for RGB histology:
  roughly the haematoxylin direction), smoothed, and thresholded with Otsu.
- ``ForestBaseline``: ilastik's pixel classification: a random forest on multiscale intensity, edge
  and texture features of every channel, trained on the painted pixels.

Both return a class mask (1 background, 2.. objects as painted) and a foreground probability, so their
instances come from the same ``labseg.ml.postprocess.split_instances`` as the U-Net's: the comparison
measures the foreground each method finds, not the splitting.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

#: Forest training uses at most this many labelled pixels (a class-balanced random sample): a densely
#: painted 4-megapixel image would otherwise take minutes and gigabytes.
FOREST_MAX_SAMPLES = 60_000
#: Feature scales of the forest (px): ilastik's default set spans 0.7 to 10.
FOREST_SIGMA_MAX = 16.0
#: Images larger than this are predicted by the forest in row bands (features are ~30 floats a pixel).
FOREST_BAND_PIXELS = 1_000_000


def _as_cyx(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    return image[None] if image.ndim == 2 else image


def _painted(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = np.asarray(classes)
    return classes == 1, classes >= 2


@dataclass
class ThresholdBaseline:
    """Otsu on the label-aware projection of the normalised channels; objects bright or dark as painted."""

    smooth: float = 1.0
    weights: np.ndarray | None = field(default=None, repr=False)  # per channel; sign carries the polarity
    threshold: float = 0.0
    object_class: int = 2

    def fit(self, images, classes) -> ThresholdBaseline:
        """``images``: one or a list of normalised (C, H, W); ``classes``: matching masks (0 unlabelled)."""
        from skimage.filters import threshold_otsu

        images = [images] if isinstance(images, np.ndarray) else list(images)
        classes = [classes] if isinstance(classes, np.ndarray) else list(classes)
        self.weights = object_direction(images, classes)  # objects project higher than background
        counts: dict[int, int] = {}
        for cls in classes:
            values, n = np.unique(np.asarray(cls)[np.asarray(cls) >= 2], return_counts=True)
            for v, c in zip(values, n):
                counts[int(v)] = counts.get(int(v), 0) + int(c)
        self.object_class = max(counts, key=counts.get)
        projected = [self._project(_as_cyx(img)) for img in images]
        self.threshold = float(threshold_otsu(np.concatenate([p.ravel() for p in projected])))
        fg_v = np.concatenate([p[np.asarray(c) >= 2] for p, c in zip(projected, classes)])
        bg_v = np.concatenate([p[np.asarray(c) == 1] for p, c in zip(projected, classes)])
        if _balanced_accuracy(fg_v, bg_v, self.threshold) < 0.95:
            # Otsu splits the image elsewhere (e.g. bright nuclei inside dim cells): the threshold that
            # best separates what was painted, as a user moving a slider until the strokes agree would
            self.threshold = _best_threshold(fg_v, bg_v)
        return self

    def _project(self, image: np.ndarray) -> np.ndarray:
        return _smoothed_projection(self.weights, image, self.smooth)

    def foreground(self, image: np.ndarray) -> np.ndarray:
        """A soft foreground score in [0, 1] (0.5 at the Otsu threshold)."""
        if self.weights is None:
            raise ValueError("fit the baseline first")
        projected = self._project(_as_cyx(image))
        spread = float(np.std(projected)) or 1.0
        return (1.0 / (1.0 + np.exp(-(projected - self.threshold) * (8.0 / spread)))).astype(np.float32)

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(class mask uint8: 1 background / object class, foreground probability float32)``."""
        fg = self.foreground(image)
        return np.where(fg > 0.5, self.object_class, 1).astype(np.uint8), fg


#: The intensity gate is used only when the threshold keeps at least this share of every painted object
#: class's pixels: it must never drop what a user painted as object (dim or textured objects).
GATE_MIN_KEPT = 0.9
#: The gate is not used when at least this share of the painted objects' edge pixels touch painted
#: background: objects painted whole with their outline told the network where the edges are.
GATE_MAX_OUTLINED = 0.5
#: Rows per band when the gate is applied to a large image (the smoothing needs only a few rows more).
GATE_BAND_ROWS = 1024


@dataclass
class IntensityGate:
    """Drops predicted object pixels that the threshold baseline, fitted on the same strokes, calls
    background: where a network paints a halo around bright objects, the grey values say it is not there.

    Fitted by :func:`fit_intensity_gate`; stored as a plain dict (:meth:`to_dict` / :meth:`from_dict`) in a
    model version's provenance, so a prediction applies exactly the gate its training run chose.
    """

    weights: np.ndarray
    threshold: float
    smooth: float = 1.0

    def _keep_rows(self, image: np.ndarray, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` of the keep mask, from those rows plus the smoothing's reach on each side."""
        h = image.shape[1]
        margin = int(np.ceil(4 * self.smooth)) + 1  # scipy's Gaussian reaches 4 sigma
        a, b = max(0, r0 - margin), min(h, r1 + margin)
        band = _smoothed_projection(self.weights, np.asarray(image[:, a:b], np.float32), self.smooth)
        return band[r0 - a:r1 - a] > self.threshold

    def _check(self, image: np.ndarray) -> np.ndarray:
        return _channels_for(self.weights, image, "the gate")

    def keep(self, image: np.ndarray, rows: int = GATE_BAND_ROWS) -> np.ndarray:
        """(H, W) bool: where the smoothed projection of the normalised ``image`` is above the threshold.
        Computed in bands of ``rows`` rows (memory bounded by a band, same result as the whole image)."""
        image = self._check(image)
        h = image.shape[1]
        return np.concatenate([self._keep_rows(image, r0, min(h, r0 + rows)) for r0 in range(0, h, rows)])

    def apply(self, probs: np.ndarray, image: np.ndarray, rows: int = GATE_BAND_ROWS) -> np.ndarray:
        """Softmax ``probs`` (K, H, W; channel 0 background) with every pixel the gate drops set to
        background (1, 0, ..). In place (a memmap stays one), in bands; returns ``probs``."""
        image = self._check(image)
        if image.shape[1:] != probs.shape[1:]:
            raise ValueError(f"probs {probs.shape[1:]} and image {image.shape[1:]} differ in size")
        h = probs.shape[1]
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            drop = ~self._keep_rows(image, r0, r1)
            for k in range(probs.shape[0]):
                band = probs[k, r0:r1]
                band[drop] = 1.0 if k == 0 else 0.0
        return probs

    def to_dict(self) -> dict:
        return {"weights": [float(w) for w in self.weights], "threshold": float(self.threshold),
                "smooth": float(self.smooth)}

    @classmethod
    def from_dict(cls, data: dict | None) -> IntensityGate | None:
        """The gate of a stored dict; None when there is none (off, skipped, or an older version)."""
        if not isinstance(data, dict) or "weights" not in data:
            return None
        weights = _stored_weights(data, "intensity gate")
        try:
            threshold, smooth = float(data["threshold"]), float(data.get("smooth", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the stored intensity gate is malformed ({exc})") from None
        if not np.isfinite(threshold) or not 0.0 <= smooth <= 16.0:
            raise ValueError("the stored intensity gate is malformed (a finite threshold, smooth 0-16)")
        return cls(weights, threshold, smooth)


def fit_intensity_gate(images, classes, *, enabled: bool = True, split: str = "shape",
                       min_kept: float = GATE_MIN_KEPT) -> tuple[IntensityGate | None, dict]:
    """Fit the threshold baseline on the painted pixels of the normalised ``images`` and return it as a
    gate, with the record a version stores: the gate's numbers (:meth:`IntensityGate.to_dict`) when it is on,
    and what was checked, ``{"kept": {class: share of its painted pixels above the threshold}, "outlined"}``.
    The gate is None, with ``"off"`` saying why, when ``enabled`` is false (``TrainConfig.intensity_gate``),
    when ``split`` is not "shape" (painted membranes: the membrane fill decides the objects' edges), when the
    objects were painted with their outlines (:func:`outlined_share` >= ``GATE_MAX_OUTLINED``: the network
    learned the edges from them; on the benchmark sets the gate cost foreground IoU there and helped only on
    strokes inside objects), when some painted class keeps less than ``min_kept``, or when the fit is
    impossible."""
    if not enabled:
        return None, {"off": "switched off in the training settings (intensity_gate: false)"}
    if split != "shape":
        return None, {"off": "objects are split by painted membranes"}
    images = [images] if isinstance(images, np.ndarray) else list(images)
    classes = [classes] if isinstance(classes, np.ndarray) else list(classes)
    outlined = outlined_share(classes)
    if outlined >= GATE_MAX_OUTLINED:
        return None, {"outlined": round(outlined, 4),
                      "off": f"objects were painted with their outlines ({outlined:.0%} of their painted edge "
                             "touches painted background), so the network learned the edges from them"}
    try:
        model = ThresholdBaseline().fit(images, classes)
    except ValueError as exc:
        return None, {"off": str(exc)}
    gate = IntensityGate(model.weights, model.threshold, model.smooth)
    inside: dict[int, list[int]] = {}
    for img, cls in zip(images, classes):
        keep, cls = gate.keep(img), np.asarray(cls)
        for v in np.unique(cls[cls >= 2]):
            painted = cls == v
            n = inside.setdefault(int(v), [0, 0])
            n[0] += int(keep[painted].sum())
            n[1] += int(painted.sum())
    kept = {str(k): round(a / b, 4) for k, (a, b) in sorted(inside.items())}
    info: dict = {"kept": kept, "outlined": round(outlined, 4)}
    low = [k for k, v in kept.items() if v < min_kept]
    if low:
        info["off"] = (f"the threshold keeps only {min(kept[k] for k in low):.0%} of the pixels painted as class "
                       f"{', '.join(low)} (needs {min_kept:.0%}): the objects are not brighter or darker than "
                       "the background everywhere")
        return None, info
    return gate, {**gate.to_dict(), **info}


@dataclass
class SplitIntensity:
    """The grey values that help split touching objects: the normalised channels projected on the direction
    from the painted background to the painted objects (:func:`object_direction`), so objects are bright on
    it whatever their polarity (bright nuclei, dark rods in phase contrast, haematoxylin in H&E). Added to the
    distance transform of the instance watershed (``labseg.ml.postprocess.marker_function``): the bright halo
    between two touching dark rods, or the dim gap between two bright nuclei, becomes a border that the
    shape of a merged mask alone does not show.

    Fitted by :func:`fit_split_intensity`; stored as a plain dict in a version's provenance
    (:meth:`to_dict` / :meth:`from_dict`), so a prediction splits exactly as its training run measured."""

    weights: np.ndarray

    def landscape(self, image: np.ndarray, rows: int = GATE_BAND_ROWS, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W) float32: the projection of the normalised ``image`` (C, H, W) or (H, W); computed in bands
        of ``rows`` rows (a memmap is read a band at a time), into ``out`` when given (e.g. a memmap)."""
        image = _channels_for(self.weights, image, "the split intensity")
        h = image.shape[1]
        if out is None:
            out = np.empty(image.shape[1:], np.float32)
        elif out.shape != image.shape[1:]:
            raise ValueError(f"out {out.shape} and image {image.shape[1:]} differ in size")
        for r0 in range(0, h, rows):
            out[r0:r0 + rows] = np.tensordot(self.weights, np.asarray(image[:, r0:r0 + rows], np.float32),
                                             axes=(0, 0))
        return out

    def to_dict(self) -> dict:
        return {"weights": [float(w) for w in self.weights]}

    @classmethod
    def from_dict(cls, data: dict | None) -> SplitIntensity | None:
        """The split intensity of a stored dict; None when there is none (off, or an older version)."""
        if not isinstance(data, dict) or "weights" not in data:
            return None
        return cls(_stored_weights(data, "split intensity"))


def fit_split_intensity(images, classes, *, enabled: bool = True, split: str = "shape",
                        painted_radius: float | None = None) -> tuple[SplitIntensity | None, dict]:
    """The :class:`SplitIntensity` of the painted pixels of the normalised ``images``, with the record a
    version stores (its weights, or ``{"off": why}``): off when ``enabled`` is false
    (``TrainConfig.intensity_split``), when ``split`` is not "shape" (painted membranes: objects are what the
    boundaries enclose, no watershed), when objects were painted whole (``painted_radius``, the median radius
    of at least 3 painted objects: their size sets the split, and on the benchmark sets the grey values then
    over-split textured nuclei), or when nothing was painted as object or as background. Where it is on, the
    grey values split only foregrounds of merged colonies (``labseg.ml.postprocess.split_where_merged``)."""
    if not enabled:
        return None, {"off": "switched off in the training settings (intensity_split: false)"}
    if split != "shape":
        return None, {"off": "objects are split by painted membranes"}
    if painted_radius is not None:
        return None, {"off": f"objects were painted whole, so their size (radius {painted_radius:.1f} px) sets the "
                             "split"}
    try:
        weights = object_direction(images, classes)
    except ValueError as exc:
        return None, {"off": str(exc)}
    model = SplitIntensity(weights)
    return model, model.to_dict()


#: Edge calibration (:func:`calibrate_edges`) is skipped when the best threshold of the grey values reproduces
#: less than this share (balanced accuracy) of the network's own foreground: the objects are then not told from
#: background by grey value (texture), and a threshold would punch holes in them. The benchmark's predictions
#: reproduce at 0.84-1.0 (``bench/fewlabel.py``).
EDGE_MIN_AGREEMENT = 0.75
#: The threshold is chosen on at most about this many pixels (a regular grid over a large image).
EDGE_FIT_PIXELS = 1_000_000
#: Fewer predicted object or background pixels than this: nothing to calibrate.
EDGE_MIN_PIXELS = 50


#: With ``edge_calibration: null`` (auto) the calibration goes on only where it lifts the foreground IoU of the
#: run's held-out labels by more than this (a tie keeps the network's own edges).
EDGE_AUTO_MARGIN = 0.01


def edge_setting(*, enabled: bool | None = True, split: str = "shape", held_out: bool = True) -> dict:
    """What a version stores about edge calibration (:func:`calibrate_edges`), from its training run:
    ``{"on": True}``, or ``{"off": why}`` when the config leaves it off (``TrainConfig.edge_calibration``) or when
    objects are split by painted membranes (the membrane fill decides their edges), or, with ``enabled`` None,
    ``{"auto": ...}``: the run chooses on its held-out labels (:func:`choose_edges`), which replaces it; where
    ``held_out`` is False (the command line, a live session: nothing is held out) auto is settled at once, off."""
    if enabled is False:
        return {"off": "not asked for in the training settings (edge_calibration: false)"}
    if split != "shape":
        return {"off": "objects are split by painted membranes"}
    if enabled is None:
        return {"auto": "chosen on the run's held-out labels"} if held_out else choose_edges(None, None)
    return {"on": True}


def edges_on(setting: object) -> bool:
    """Whether a stored :func:`edge_setting` says on (versions trained before it have none: off)."""
    return isinstance(setting, dict) and setting.get("on") is True


def edges_auto(setting: object) -> bool:
    """Whether an :func:`edge_setting` leaves the choice to the run's held-out labels (:func:`choose_edges`)."""
    return isinstance(setting, dict) and "auto" in setting


def choose_edges(iou_without: float | None, iou_with: float | None, *, margin: float | None = None) -> dict:
    """The auto choice of edge calibration, from the foreground IoU of the run's held-out labels (labelled pixels
    only) predicted without and with it: on only where it lifts that IoU by more than ``margin`` (None:
    ``EDGE_AUTO_MARGIN``). Whether a
    lab's outlines follow one grey level per image (generous whole cells with dim cytoplasm) or the network's
    learnt edges (tight nuclei, an automatic segmentation's edges) is said by its own labels, not by a preset.
    -> the :func:`edge_setting` the version stores (``edges_on`` reads it), with both IoUs."""
    margin = EDGE_AUTO_MARGIN if margin is None else margin
    scores = {"iou_fg_without": None if iou_without is None else round(float(iou_without), 4),
              "iou_fg_with": None if iou_with is None else round(float(iou_with), 4)}
    if iou_without is None or iou_with is None:
        return {"off": "auto: no held-out labels to choose on (the network's own edges kept)", **scores}
    if iou_with > iou_without + margin:
        return {"on": True, "auto": f"the held-out labels' foreground IoU {iou_without:.3f} without, "
                                    f"{iou_with:.3f} with", **scores}
    return {"off": f"auto: the held-out labels' foreground IoU {iou_without:.3f} without, {iou_with:.3f} with "
                   f"(on needs more than +{margin:g})", **scores}


def calibrate_edges_at(probs: np.ndarray, image: np.ndarray, radius: float | None,
                       max_pixels: int | None = None) -> dict:
    """:func:`calibrate_edges` within one object radius of the network's objects: ``radius`` is the one the
    objects are split at (set or painted), or None: measured on the network's foreground, as the split does.
    ``max_pixels``: larger images are left as they are (``{"off": why}``; it holds ~40 bytes a pixel); None or 0:
    no limit."""
    pixels = int(np.prod(probs.shape[1:]))
    if max_pixels and pixels > max_pixels:
        return {"off": f"the image has {pixels} pixels, more than the {max_pixels} edge calibration may use "
                       f"(LABSEG_EDGE_MAX_PIXELS): the network's own edges"}
    if radius is None:
        from labseg.ml.postprocess import object_radius

        radius = object_radius(foreground=np.asarray(probs[0]) < 0.5)
    return calibrate_edges(probs, image, reach=float(radius))


def calibrate_edges(probs: np.ndarray, image: np.ndarray, *, reach: float,
                    min_agreement: float = EDGE_MIN_AGREEMENT) -> dict:
    """Redraw the network's object edges at one grey level of this image: the level that best reproduces the
    network's own foreground on it.

    The channels are projected on the direction from the network's background to its objects and smoothed (as
    the threshold baseline does), and the threshold with the best balanced accuracy against the network's
    foreground (probability ``1 - probs[0]`` > 0.5) is taken. Then, within ``reach`` px of the network's objects,
    pixels above it become object unless that would join two objects (a pixel beside another object than its
    nearest stays background: gaps between touching objects stay) or would stand apart from every object
    (specks of noise), and object pixels below it become background; farther away the network's answer stands.
    So each edge lies where the network draws edges on this image in general, not where it drew this one: on
    few labels the network's edges follow the training image's brightness (Huh7 cells: the dim cytoplasm of a
    dimmer image missed, halos around bright nuclei), and one grey level per image puts them back in line
    (``bench/fewlabel.py``).

    ``probs``: softmax (K, H, W), channel 0 background; changed in place (a pixel made object goes to its
    most likely object class at 0.51, one made background to background 1). ``image``: the normalised
    (C, H, W) image the network saw. -> the record a prediction keeps: ``{"threshold", "agreement", "added",
    "removed"}``, or ``{"off": why}`` (with ``"agreement"`` when it was too low); ``probs`` then unchanged.
    """
    from labseg.ml.postprocess import two_ids_within

    image = _as_cyx(image)
    if image.shape[1:] != probs.shape[1:]:
        raise ValueError(f"probs {probs.shape[1:]} and image {image.shape[1:]} differ in size")
    if probs.shape[0] < 2:
        return {"off": "no object class"}
    objects = np.asarray(probs[0]) < 0.5
    n_obj = int(objects.sum())
    if min(n_obj, objects.size - n_obj) < EDGE_MIN_PIXELS:
        return {"off": "too few object or background pixels predicted"}
    step = max(1, int(np.ceil(np.sqrt(objects.size / EDGE_FIT_PIXELS))))
    sampled = objects[::step, ::step]
    weights = object_direction(image[:, ::step, ::step], np.where(sampled, 2, 1))
    projected = _smoothed_projection(weights, image, 1.0)
    fg_v, bg_v = projected[::step, ::step][sampled], projected[::step, ::step][~sampled]
    threshold = _best_threshold(fg_v, bg_v)
    agreement = _balanced_accuracy(fg_v, bg_v, threshold)
    if agreement < min_agreement:
        return {"off": f"one grey level reproduces only {agreement:.0%} of the network's objects "
                       f"(needs {min_agreement:.0%})", "agreement": round(agreement, 4)}
    bright = projected > threshold
    del projected
    labels, _ = ndi.label(objects)
    distance, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    add = (distance <= reach) & bright & ~objects
    del distance
    nearest = np.where(add | objects, labels[iy, ix], 0).astype(np.int64)
    del iy, ix
    add &= ~two_ids_within(nearest, np.ones((3, 3), bool))
    grown, _ = ndi.label(add | objects)  # added pixels only where they grow an object, not as specks of noise
    touched = np.zeros(int(grown.max()) + 1, bool)
    touched[np.unique(grown[objects])] = True
    add &= touched[grown]
    remove = objects & ~bright
    if add.any():
        best = np.argmax(np.asarray(probs[1:])[:, add], axis=0)
        column = np.zeros((probs.shape[0], best.size), probs.dtype)
        column[0] = 0.49
        column[1 + best, np.arange(best.size)] = 0.51
        probs[:, add] = column
    if remove.any():
        probs[:, remove] = 0.0
        probs[0, remove] = 1.0
    return {"threshold": round(float(threshold), 6), "agreement": round(agreement, 4),
            "added": int(add.sum()), "removed": int(remove.sum())}


def object_direction(images, classes) -> np.ndarray:
    """The unit vector (one weight per channel) from the mean painted background pixel to the mean painted
    object pixel of the normalised ``images`` (one or a list of (C, H, W)): objects project higher than
    background. For one channel it is +1 or -1 (objects darker than background)."""
    images = [images] if isinstance(images, np.ndarray) else list(images)
    classes = [classes] if isinstance(classes, np.ndarray) else list(classes)
    fg, bg = [], []
    for img, cls in zip(images, classes):
        img = _as_cyx(img)
        b, f = _painted(cls)
        fg.append(img[:, f].T)
        bg.append(img[:, b].T)
    fg_px, bg_px = np.concatenate(fg), np.concatenate(bg)
    if not len(fg_px) or not len(bg_px):
        raise ValueError("both painted background and painted objects are needed")
    direction = fg_px.mean(0) - bg_px.mean(0)
    norm = float(np.linalg.norm(direction))
    return (direction / norm if norm > 0 else np.ones_like(direction) / len(direction)).astype(np.float32)


def outlined_share(classes) -> float:
    """The share of the painted objects' edge pixels (object pixels with a non-object 4-neighbour) that touch
    painted background (8-neighbourhood): ~0 for strokes inside objects, ~0.7-1 for objects painted whole
    with their outline as background (and for dense labels)."""
    classes = [classes] if isinstance(classes, np.ndarray) else list(classes)
    edges = touching = 0
    for cls in classes:
        cls = np.asarray(cls)
        obj = cls >= 2
        edge = obj & ~ndi.binary_erosion(obj, border_value=1)
        near_bg = ndi.binary_dilation(cls == 1, structure=np.ones((3, 3), bool))
        edges += int(edge.sum())
        touching += int((edge & near_bg).sum())
    return touching / edges if edges else 0.0


def _channels_for(weights: np.ndarray, image: np.ndarray, what: str) -> np.ndarray:
    """``image`` as (C, H, W) (a memmap stays one: a view, no copy), refused when its channels are not the ones
    ``weights`` were fitted on."""
    image = np.asarray(image)
    image = image[None] if image.ndim == 2 else image
    if image.shape[0] != len(weights):
        raise ValueError(f"{what} was fitted on {len(weights)} channel(s), the image has {image.shape[0]}")
    return image


def _stored_weights(data: dict, what: str) -> np.ndarray:
    """The per-channel weights of a stored gate or split intensity (outside data: an uploaded checkpoint's
    provenance), refused with a clear message unless they are 1-64 finite numbers."""
    try:
        weights = np.asarray(data["weights"], np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the stored {what} is malformed ({exc})") from None
    if weights.ndim != 1 or not 1 <= len(weights) <= 64 or not np.isfinite(weights).all():
        raise ValueError(f"the stored {what} is malformed (weights: 1-64 finite numbers)")
    return weights


def _smoothed_projection(weights: np.ndarray, image: np.ndarray, smooth: float) -> np.ndarray:
    """The channels of ``image`` (C, H, W) projected on ``weights``, Gaussian-smoothed (the threshold's input)."""
    out = np.tensordot(weights, image, axes=(0, 0))
    return ndi.gaussian_filter(out, smooth) if smooth > 0 else out


def _balanced_accuracy(fg: np.ndarray, bg: np.ndarray, t: float) -> float:
    return 0.5 * (float(np.mean(fg > t)) + float(np.mean(bg <= t)))


def _best_threshold(fg: np.ndarray, bg: np.ndarray) -> float:
    """The threshold with the best balanced accuracy on the painted pixels (the middle of the best run)."""
    candidates = np.unique(np.quantile(np.concatenate([fg, bg]), np.linspace(0, 1, 257)))
    # _balanced_accuracy at every candidate at once: counts at or below each by binary search in sorted values
    at_or_below_fg = np.searchsorted(np.sort(fg), candidates, side="right")
    at_or_below_bg = np.searchsorted(np.sort(bg), candidates, side="right")
    scores = 0.5 * ((fg.size - at_or_below_fg) / fg.size + at_or_below_bg / bg.size)
    best = np.flatnonzero(scores >= scores.max() - 1e-9)
    return float(candidates[best[len(best) // 2]])


def forest_features(image: np.ndarray, sigma_max: float = FOREST_SIGMA_MAX) -> np.ndarray:
    """ilastik-like features of every channel: intensity, edges and texture at scales 1..16 px -> (H, W, F)."""
    from skimage.feature import multiscale_basic_features

    image = _as_cyx(image)
    return multiscale_basic_features(np.moveaxis(image, 0, -1), intensity=True, edges=True, texture=True,
                                     sigma_min=1, sigma_max=sigma_max, channel_axis=-1).astype(np.float32)


@dataclass
class ForestBaseline:
    """A random forest on ``forest_features``, trained on (a class-balanced sample of) the painted pixels."""

    trees: int = 100
    threads: int = 1
    seed: int = 0
    max_samples: int = FOREST_MAX_SAMPLES

    def fit(self, images, classes) -> ForestBaseline:
        from sklearn.ensemble import RandomForestClassifier

        images = [images] if isinstance(images, np.ndarray) else list(images)
        classes = [classes] if isinstance(classes, np.ndarray) else list(classes)
        rng = np.random.default_rng(self.seed)
        xs, ys = [], []
        for img, cls in zip(images, classes):
            cls = np.asarray(cls)
            labelled = np.flatnonzero(cls.ravel() > 0)
            if not len(labelled):
                continue
            feats = forest_features(img)
            xs.append(feats.reshape(-1, feats.shape[-1])[labelled])
            ys.append(cls.ravel()[labelled])
        if not xs:
            raise ValueError("the forest baseline needs painted pixels")
        x, y = np.concatenate(xs), np.concatenate(ys)
        values = np.unique(y)
        if len(values) < 2:
            raise ValueError("the forest baseline needs at least two painted classes")
        per_class = max(1, self.max_samples // len(values))
        keep = np.concatenate([
            (lambda idx: rng.choice(idx, per_class, replace=False) if len(idx) > per_class else idx)(
                np.flatnonzero(y == v))
            for v in values
        ])
        self.forest = RandomForestClassifier(n_estimators=self.trees, n_jobs=self.threads, random_state=self.seed,
                                             min_samples_leaf=2)
        self.forest.fit(x[keep], y[keep])
        return self

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(class mask uint8 with the painted class values, foreground probability float32)``."""
        image = _as_cyx(image)
        h, w = image.shape[1:]
        band = max(1, FOREST_BAND_PIXELS // max(w, 1))
        margin = int(4 * FOREST_SIGMA_MAX)
        classes_out = np.zeros((h, w), np.uint8)
        fg = np.zeros((h, w), np.float32)
        order = list(self.forest.classes_)
        for y0 in range(0, h, band):  # row bands with a margin, so features see the same context
            y1 = min(h, y0 + band)
            a, b = max(0, y0 - margin), min(h, y1 + margin)
            feats = forest_features(image[:, a:b])
            proba = self.forest.predict_proba(feats.reshape(-1, feats.shape[-1])).reshape(b - a, w, -1)
            proba = proba[y0 - a:y0 - a + (y1 - y0)]
            classes_out[y0:y1] = np.asarray(order, np.uint8)[proba.argmax(-1)]
            bg = proba[..., order.index(1)] if 1 in order else np.zeros(proba.shape[:2])
            fg[y0:y1] = 1.0 - bg
        return classes_out, fg
