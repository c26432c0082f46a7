"""The body of the ``inference.predict`` task: checkpoint -> overlap-tile prediction -> stored maps -> scores.

Imported only inside the Celery worker (it imports torch). Memory stays bounded by the tiles and
the output: the probabilities of a large image are written into an ``np.memmap`` under MEDIA_ROOT
(deleted afterwards) instead of a RAM array, and the stored maps are 8-bit.

Stored files of a prediction:
- ``classes.png``: 8-bit grey, the label class index (1 background, 2.. classes) of the argmax; every pixel
  of an object (holes filled) carries its object's class, so the class of each object is read here.
- ``instances.tif``: uint16 (uint32 above 65535 objects) instance ids of every object class, unique in the
  image, zlib-compressed TIFF.

Counts (``Prediction.counts``): ``instances`` (all objects), ``instances_per_class`` (label class value ->
objects, every object class listed), ``instances_per_class_name`` (the project's class name -> objects),
``pixels_per_class``, ``mean_uncertainty``, ``review`` (the objects that look like several merged, to
check first: ``labseg.ml.review.suspect_merges``).
- ``probability.png``: 8-bit, round(255 * foreground probability) (1 - p(background)).
- ``uncertainty.png``: 8-bit, round(255 * uncertainty) from test-time augmentation (0 = all agree).
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile

from apps.annotate.masks import encode_png
from apps.training.models import ModelVersion
from labseg.jobs import service as jobs

from .maps import classes_from_probs, encode_tiff, foreground_uint8, to_uint8
from .models import Prediction
from .services import PREDICTIONS, heartbeat, report_progress

log = logging.getLogger(__name__)

# Images with more pixels than this get their probabilities in a memmap instead of RAM.
MEMMAP_PIXELS = int(os.environ.get("LABSEG_MEMMAP_PIXELS", 4096 * 4096))
PROGRESS_EVERY_S = 1.0
HEARTBEAT_EVERY_S = 10.0


@dataclass
class LoadedModel:
    """A checkpoint loaded once per worker process: the network plus what prediction needs."""

    model: object
    in_channels: int
    num_classes: int
    normalization: dict = field(default_factory=dict)
    class_names: list = field(default_factory=list)
    tile_output: int | None = None  # None: the ML core's default per device (256 CPU, 512 CUDA)
    object_radius: float | None = None  # from the painted objects of the training run; None: estimated
    object_size: float | None = None  # the radius the project set for the run (wins over object_radius)
    split: str = "shape"  # how the training run's labels say touching objects part (``painted_split``)
    gate: object | None = None  # the training run's intensity gate (``labseg.ml.baselines.IntensityGate``)
    splitter: object | None = None  # its intensity-aware split (``labseg.ml.baselines.SplitIntensity``)
    edges: bool = False  # its edge calibration is on (``labseg.ml.baselines.calibrate_edges``, fitted per image)

    def sizes(self) -> tuple[float | None, float | None]:
        """``(radius, size)`` for ``instances_of``: the size the project set wins over the painted radius."""
        from labseg.ml.postprocess import split_sizes

        return split_sizes(self.object_size, self.object_radius)


_cache: dict[tuple[int, str], LoadedModel] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 2
_threads_set = False


def torch_device():
    """The torch device LABSEG_DEVICE asks for (auto: CUDA when available); sizes CPU threads once."""
    from labseg.ml.device import configure_threads, pick_device

    global _threads_set
    if not _threads_set:
        configure_threads(settings.LABSEG_TORCH_THREADS or None)
        _threads_set = True
    return pick_device(settings.LABSEG_DEVICE)


def load_model(version: ModelVersion) -> LoadedModel:
    """The version's network in eval mode on the worker's device, cached per process by version id."""
    key = (version.pk, version.checkpoint.name)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    from labseg.ml.train import load_checkpoint

    device = torch_device()
    model, checkpoint = load_checkpoint(version.checkpoint.path, map_location=device)
    loaded = LoadedModel(
        model=model.to(device).eval(), in_channels=int(model.in_channels), num_classes=int(model.num_classes),
        normalization=dict(checkpoint.get("normalization") or {}),
        class_names=list(checkpoint.get("class_names") or []),
        object_radius=_painted_radius(checkpoint), object_size=_set_size(checkpoint), split=_painted_split(checkpoint),
        gate=_gate(checkpoint), splitter=_splitter(checkpoint), edges=_edges(checkpoint),
    )
    with _cache_lock:
        while len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = loaded
    return loaded


def _provenance(checkpoint: dict) -> dict:
    """The training run's provenance saved in the checkpoint ({} for uploaded or older checkpoints)."""
    return (checkpoint.get("extra") or {}).get("provenance") or {}


def _painted_split(checkpoint: dict) -> str:
    """The training run's split mode ("shape" for versions trained before it was recorded)."""
    from labseg.ml.postprocess import recorded_split

    return recorded_split(_provenance(checkpoint).get("split"))


def _gate(checkpoint: dict):
    """The training run's intensity gate (None when it was off, or for versions trained before it)."""
    from labseg.ml.baselines import IntensityGate

    return IntensityGate.from_dict(_provenance(checkpoint).get("intensity_gate"))


def _edges(checkpoint: dict) -> bool:
    """Whether the training run turned edge calibration on (off for versions trained before it)."""
    from labseg.ml.baselines import edges_on

    return edges_on(_provenance(checkpoint).get("edge_calibration"))


def _splitter(checkpoint: dict):
    """The training run's intensity-aware split (None when it was off, or for versions trained before it)."""
    from labseg.ml.baselines import SplitIntensity

    return SplitIntensity.from_dict(_provenance(checkpoint).get("intensity_split"))


def _painted_radius(checkpoint: dict) -> float | None:
    """The typical object radius the training run measured on painted instances (None when unknown)."""
    from labseg.ml.postprocess import recorded_radius

    return recorded_radius(_provenance(checkpoint).get("object_radius"))


def _set_size(checkpoint: dict) -> float | None:
    """The object radius the project set for the training run (None: unset, or a version trained before)."""
    from labseg.ml.postprocess import recorded_radius

    return recorded_radius(_provenance(checkpoint).get("object_size"))


def read_normalized(path: str, loaded: LoadedModel) -> np.ndarray:
    """The image as float32 (C, H, W), normalised the way the checkpoint was trained."""
    from labseg.ml.io import read_image
    from labseg.ml.train import apply_normalization

    image = read_image(path)
    if image.ndim == 2:
        image = image[None]
    if image.shape[0] != loaded.in_channels:
        raise ValueError(
            f"The model expects {loaded.in_channels} channel(s) but the image has {image.shape[0]}."
        )
    return np.asarray(apply_normalization(image, loaded.normalization), dtype=np.float32)


@contextmanager
def scratch_file(directory: Path, suffix: str = ".probs"):
    """A temporary file path under ``directory``, removed on exit whatever happens."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def predict_maps(loaded: LoadedModel, image: np.ndarray, progress=None, scratch: Path | None = None, device=None):
    """``(probs (K, H, W) float32, uncertainty (H, W) float32 in 0..1)`` by overlap-tile inference.

    Images up to ``MEMMAP_PIXELS``: test-time augmentation over the 8 flips/rotations, uncertainty =
    normalised entropy of the averaged probabilities. Larger images: one pass written into an
    ``np.memmap`` (memory bounded by the tiles and the 8-bit outputs, never a RAM copy of the logits),
    uncertainty = normalised entropy of that pass, computed in row blocks.
    """
    from labseg.ml.tiling import predict_tiled, predict_tiled_with_uncertainty

    h, w = image.shape[1:]
    device = device or torch_device()
    if scratch is None or h * w <= MEMMAP_PIXELS:
        result = predict_tiled_with_uncertainty(
            loaded.model, image, tile_output=loaded.tile_output, device=device, progress=progress
        )
        return result.probs, result.entropy
    out = np.memmap(scratch, dtype=np.float32, mode="w+", shape=(loaded.num_classes, h, w))
    probs = predict_tiled(loaded.model, image, tile_output=loaded.tile_output, device=device, progress=progress,
                          out=out)
    return probs, normalised_entropy(probs)


def normalised_entropy(probs: np.ndarray, rows: int = 512) -> np.ndarray:
    """Entropy of (K, H, W) probabilities over ln K (0 certain, 1 uniform), float32, in row blocks."""
    k, h, _ = probs.shape
    out = np.empty(probs.shape[1:], np.float32)
    for y in range(0, h, rows):
        p = np.clip(np.asarray(probs[:, y:y + rows], np.float32), 1e-12, 1.0)
        out[y:y + rows] = -(p * np.log(p)).sum(0) / max(np.log(k), 1e-12)
    return out


@contextmanager
def heartbeats(prediction_id: int, worker: str, every_s: float = HEARTBEAT_EVERY_S):
    """Write a heartbeat every ``every_s`` seconds from a thread while the block runs (post-processing of a
    huge image reports no progress for minutes; without this, recovery would think the worker dead).

    A failed write (the database restarting) is logged and retried at the next beat on a new connection;
    the thread stops beating once the prediction is no longer ``worker``'s (recovered as stale)."""
    from django.db import connection

    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every_s):
                try:
                    if not heartbeat(prediction_id, worker):
                        return  # lost: the main thread stops at its next progress write
                except Exception:  # noqa: BLE001 - a missed heartbeat must not kill the prediction
                    log.exception("heartbeat of prediction %s failed", prediction_id)
                    connection.close()  # a broken connection is replaced at the next beat
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{prediction_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass
class PredictionOutputs:
    """What one prediction produces: the encoded files, the label arrays (for scoring) and the counts."""

    classes: np.ndarray
    instances: np.ndarray
    files: dict[str, bytes]
    counts: dict


def compute_outputs(loaded: LoadedModel, path: str, *, scratch_dir: Path, progress=None,
                    device=None, painted: np.ndarray | None = None) -> PredictionOutputs:
    """Read + normalise the image, predict (TTA or memmap), post-process and encode the four maps.

    ``painted``: the separately painted objects of the image's annotation (``review.painted_objects``),
    for the objects to check (a predicted object holding two of them is a merge).

    The whole prediction except the database and the broker (the benchmark times exactly this).
    """
    image = read_normalized(path, loaded)
    with scratch_file(scratch_dir) as scratch, ExitStack() as more_scratch:
        probs, uncertainty = predict_maps(loaded, image, progress=progress, scratch=scratch, device=device)
        if loaded.gate is not None:
            loaded.gate.apply(probs, image)  # object pixels the threshold calls background -> background
        radius, size = loaded.sizes()
        edges = None
        if loaded.edges:  # the edges at this image's grey level that best reproduces the network's objects
            from labseg.ml.baselines import calibrate_edges_at
            from labseg.ml.postprocess import object_scale

            edges = calibrate_edges_at(probs, image, object_scale(size, radius), settings.LABSEG_EDGE_MAX_PIXELS)
        landscape = None
        if loaded.splitter is not None and loaded.split == "shape":  # the watershed adds the projected grey values
            h, w = image.shape[-2:]
            out = None
            if h * w > MEMMAP_PIXELS:  # a large image's landscape goes to disk, as its probabilities do
                path = more_scratch.enter_context(scratch_file(scratch_dir, ".landscape"))
                out = np.memmap(path, np.float32, "w+", shape=(h, w))
            landscape = loaded.splitter.landscape(image, out=out)
        del image
        classes = classes_from_probs(probs)
        instances, object_class = instances_of(probs, radius, classes=classes, split=loaded.split, image=landscape,
                                               size=size)
        paint_objects(classes, instances, object_class)
        files = {
            "classes.png": encode_png(classes),
            "instances.tif": encode_tiff(instances),
            "probability.png": encode_png(foreground_uint8(probs)),
            "uncertainty.png": encode_png(to_uint8(uncertainty)),
        }
        counts = {
            "pixels_per_class": {str(int(k)): int(v) for k, v in zip(*np.unique(classes, return_counts=True))},
            "instances": int(len(object_class) - 1),
            "instances_per_class": count_objects(object_class, probs.shape[0]),
            "mean_uncertainty": float(np.mean(uncertainty, dtype=np.float64)),
            "review": review_of(instances, object_class, loaded, painted),
        }
        if edges is not None:
            counts["edges"] = edges  # the grey level, how well it reproduced the network, pixels added / removed
        del probs  # drop the memmap before its file goes
    return PredictionOutputs(classes=classes, instances=instances, files=files, counts=counts)


def run_prediction(prediction_id: int, worker: str) -> None:
    """Predict, post-process, store the four maps and the counts, then score against the annotation.

    ``worker``: the claim's worker name; every write (progress, heartbeat, the final one) is conditional on
    the prediction still running for it (``labseg.jobs``); a progress write that finds it taken (recovered as
    stale) raises ``PredictionLost`` (the task stops), and a lost final write stores nothing and scores nothing.
    """
    pred = Prediction.objects.select_related("image", "model_version", "image__project").get(pk=prediction_id)
    loaded = load_model(pred.model_version)
    report_progress(pred.pk, 0.02, worker)
    last = [0.0]

    def progress(done: int, total: int, *_a, **_k) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or done == total:  # a heartbeat, not a write per tile
            last[0] = now
            report_progress(pred.pk, 0.05 + 0.8 * done / max(1, total), worker)

    with heartbeats(pred.pk, worker):
        out = compute_outputs(loaded, pred.image.file.path, scratch_dir=Path(settings.MEDIA_ROOT) / "tmp",
                              progress=progress, painted=painted_of(pred.image))
    report_progress(pred.pk, 0.9, worker)
    out.counts["instances_per_class_name"] = name_counts(pred.image.project, out.counts["instances_per_class"])
    fields = {"classes.png": pred.classes_file, "instances.tif": pred.instances_file,
              "probability.png": pred.probability_file, "uncertainty.png": pred.uncertainty_file}
    for name, field_file in fields.items():
        field_file.save(name, ContentFile(out.files[name]), save=False)
    done = jobs.finish_if_ours(
        PREDICTIONS, pred.pk, worker, counts=out.counts, mean_uncertainty=out.counts["mean_uncertainty"],
        classes_file=pred.classes_file.name, instances_file=pred.instances_file.name,
        probability_file=pred.probability_file.name, uncertainty_file=pred.uncertainty_file.name,
    )
    if done:
        from .scoring import score_prediction

        score_prediction(pred.pk, classes=out.classes, instances=out.instances)


def review_of(instances: np.ndarray, object_class: np.ndarray, loaded: LoadedModel,
              painted: np.ndarray | None = None) -> dict:
    """The objects to check first (``labseg.ml.review.suspect_merges``, typical area per object class,
    ``painted``: the annotation's separately painted objects). Where the version splits by painted
    membranes, objects are whatever the membranes enclose, so their shape says nothing: only objects
    holding two painted objects are listed, and without an annotation ``{"skipped": why}``."""
    from labseg.ml.review import suspect_merges

    if painted is not None and painted.shape != instances.shape:
        painted = None  # an annotation of another size cannot be read against this image
    membranes = loaded.split == "boundaries"
    if membranes and painted is None:
        return {"skipped": "objects are split by painted membranes, so their shape says nothing about merges, "
                           "and this image has no painted objects to compare with"}
    radius = loaded.object_size if loaded.object_size is not None else loaded.object_radius
    return suspect_merges(instances, radius=radius, groups=object_class, painted=painted,
                          by_shape=not membranes)


def painted_of(image) -> np.ndarray | None:
    """The separately painted objects of the image's annotation (None: not annotated)."""
    from apps.annotate.masks import annotation_arrays
    from apps.annotate.models import Annotation
    from labseg.ml.review import painted_objects

    annotation = Annotation.objects.filter(image=image).first()
    return painted_objects(*annotation_arrays(annotation)) if annotation is not None else None


def name_counts(project, per_class: dict[str, int]) -> dict[str, int]:
    """``{"2": 5, "3": 1}`` -> ``{"nucleus": 5, "mitosis": 1}`` with the project's class names (a class
    without a name keeps ``"class <value>"``)."""
    names = dict(project.label_classes.values_list("index", "name"))
    return {str(names.get(int(k)) or f"class {k}"): n for k, n in per_class.items()}


def instances_of(probs: np.ndarray, radius: float | None = None, classes: np.ndarray | None = None,
                 split: str = "shape", image: np.ndarray | None = None,
                 size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(instances int32 (H, W), object_class)`` of every object class
    (``labseg.ml.postprocess.instances_by_class``): each pixel goes to its argmax class, each object class is
    split on its own (holes filled, touching objects split by a distance-transform watershed scaled to the
    object ``radius`` (None: estimated per class), debris removed); ids unique in the image;
    ``object_class[i]`` is the probability channel of object ``i`` (label class value = channel + 1).

    ``classes``: the label class map (``classes_from_probs``, values channel + 1) when already computed.
    ``split`` "boundaries": connected components instead of the watershed (the version's training labels
    painted membranes between objects), grown over the thin predicted membrane to a 1-px line between them
    (``fill_boundaries``). Above ``MEMMAP_PIXELS`` the splitting runs per connected component
    (``instances_by_component``), so memory is a few bytes per pixel instead of ~100 (distance transforms,
    h-maxima, watershed of the whole image at once); there membranes are not filled (a whole-image watershed).
    ``image``: the version's intensity landscape (``SplitIntensity.landscape``) added to the watershed's.
    ``size``: the object radius the project set (``radius`` then None): objects are split at it, the grey values
    only in merged colonies."""
    from labseg.ml.postprocess import instances_by_class

    if probs.shape[1] * probs.shape[2] > MEMMAP_PIXELS:
        return instances_by_component(probs, radius=radius, classes=classes, split=split, image=image, size=size)
    if classes is None:
        return instances_by_class(probs, radius=radius, split=split, image=image, size=size)
    with _as_channels(classes) as channels:
        return instances_by_class(probs, classes=channels, radius=radius, split=split, image=image, size=size)


def instances_by_component(probs: np.ndarray, radius: float | None = None, classes: np.ndarray | None = None,
                           split: str = "shape", image: np.ndarray | None = None,
                           size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``instances_of`` computed one 4-connected component of each class at a time
    (``instances_by_class(by_component=True)``): the same partition into objects as the whole-image call, in
    the memory of one component's box (with an intensity ``image``, its grey values are scaled per box, not
    per image: nearly the same). The argmax is taken in row blocks as uint8 (``classes_from_probs``),
    never as an int64 (H, W) array over a copy of the probabilities."""
    from labseg.ml.postprocess import instances_by_class

    if classes is None:
        classes = classes_from_probs(probs)
    with _as_channels(classes) as channels:
        return instances_by_class(probs, classes=channels, radius=radius, by_component=True, split=split,
                                  image=image, size=size)


@contextmanager
def _as_channels(classes: np.ndarray):
    """The label class map (values channel + 1, uint8) as probability channels for the block: shifted in
    place and back (no second image), the caller's map unchanged afterwards."""
    if classes.dtype != np.uint8:
        raise ValueError(f"classes must be uint8, got {classes.dtype}")
    classes -= 1
    try:
        yield classes
    finally:
        classes += 1


def paint_objects(classes: np.ndarray, instances: np.ndarray, object_class: np.ndarray, rows: int = 1024) -> None:
    """Give every pixel of an object its object's class in ``classes`` (in place, in row blocks).

    ``instances_by_class`` fills holes: a background pixel inside a nucleus belongs to the nucleus object, so
    the class map says nucleus there too; the class map and the instance map then agree everywhere, and the
    class of each object is kept in the stored maps themselves (exports, accept, outlines read it there)."""
    lut = (np.asarray(object_class, np.int32) + 1).astype(np.uint8)
    for y in range(0, classes.shape[0], rows):
        inst = instances[y:y + rows]
        objects = inst > 0
        classes[y:y + rows][objects] = lut[inst[objects]]


def count_objects(object_class: np.ndarray, num_classes: int) -> dict[str, int]:
    """Objects per label class value (``"2"``, ``"3"``, ...), every object class listed (0 when none)."""
    counts = np.bincount(np.asarray(object_class[1:], np.int64), minlength=num_classes)
    return {str(k + 1): int(counts[k]) for k in range(1, num_classes)}


def explain_error(exc: Exception) -> str:
    """A message for the user; out-of-memory errors get a hint."""
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
    if "out of memory" in str(exc).lower():
        text += " (the device ran out of memory: try a smaller tile size or LABSEG_DEVICE=cpu)"
    return text
