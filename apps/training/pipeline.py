"""The body of the ``training.run`` task: labels -> weight maps -> ``fit`` -> validation -> version.

Imported only inside the Celery worker (it imports numpy at once and torch through ``labseg.ml``).
Every step writes a heartbeat; ``fit`` gets a ``ProgressReporter`` that writes progress and stops the
run when it is cancelled. Failures a lab can fix raise ``TrainingError`` with a plain message.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from apps.annotate import weight_maps
from apps.annotate.masks import annotation_arrays
from apps.annotate.models import Annotation, Image, Split
from labseg.ml.metrics import HoldoutStrip, holdout_strip, metric_rows

from . import services
from .models import ModelVersion, ScoreMethod, TrainingRun

log = logging.getLogger(__name__)

#: Out-of-memory retries: each halves the training tile (and the batch), then the run fails.
OOM_RETRIES = 2


@dataclass
class Example:
    """One annotated image as the trainer sees it."""

    image: Image
    annotation: Annotation
    raw: np.ndarray  # (C, H, W) as stored (fit normalises it, with the config's percentiles)
    classes: np.ndarray  # uint8 (H, W), 0 unlabelled
    instances: np.ndarray | None  # (H, W) ids or None
    variant: str = "full"  # weight-cache key part: "full" or the held-out crop
    whole_ids: frozenset = frozenset()  # instance ids drawn whole (``whole_object_ids`` of the saved strokes)


@dataclass
class Holdout:
    """Labels kept out of training and scored at the end: a whole image, or a strip of one."""

    example: Example
    split: str
    strip: HoldoutStrip | None = None  # score this strip only (None: the whole image)

    @property
    def region(self) -> tuple[slice, slice]:
        return (slice(None), slice(None)) if self.strip is None else (self.strip.rows, self.strip.cols)


# --- settings -> torch -----------------------------------------------------------------------
def resolve_device():
    """torch device from LABSEG_DEVICE (auto | cpu | cuda); threads from LABSEG_TORCH_THREADS or free cores."""
    from labseg.ml.device import configure_threads, pick_device

    try:
        device = pick_device(settings.LABSEG_DEVICE)
    except ValueError as exc:
        raise services.TrainingError(f"This worker cannot train: {exc}.") from exc
    if device.type == "cpu":
        configure_threads(settings.LABSEG_TORCH_THREADS or None)
    return device


# --- data ------------------------------------------------------------------------------------
def collect_examples(run: TrainingRun, worker: str) -> list[Example]:
    """Every image of the project with painted labels (class > 0), read as stored."""
    from labseg.ml.io import read_image

    annotations = (
        Annotation.objects.filter(image__project_id=run.project_id, classes_png__isnull=False)
        .select_related("image").order_by("image_id")
    )
    examples = []
    for ann in annotations:
        classes, instances = annotation_arrays(ann)
        if classes is None or not (classes > 0).any():
            continue
        services.heartbeat(run.pk, worker, f"Reading {ann.image.original_filename}")
        try:
            raw = read_image(ann.image.file.path)
        except Exception as exc:  # noqa: BLE001 - a broken file is the lab's to fix, with its name
            raise services.TrainingError(f"The image {ann.image.original_filename} could not be read ({exc}).") from exc
        if raw.shape[-2:] != classes.shape:
            raise services.TrainingError(
                f"The labels of {ann.image.original_filename} ({classes.shape[1]}x{classes.shape[0]}) do not match "
                f"the image size ({raw.shape[-1]}x{raw.shape[-2]}); open it and save the annotation again."
            )
        examples.append(Example(ann.image, ann, raw, classes.astype(np.uint8),
                                None if instances is None or not instances.any() else instances,
                                whole_ids=whole_object_ids(ann.strokes)))
    return examples


#: Tools that draw an object whole in instance mode: the polygon (its outline, filled) and the fill (a region up to
#: what bounds it).
WHOLE_TOOLS = frozenset({"polygon", "fill"})


def whole_object_ids(strokes) -> frozenset:
    """The instance ids the saved strokes (the annotate page's list, as stored: anything) drew whole with a polygon
    or a fill; malformed entries are ignored. Brush strokes are judged by their masks (``painted_whole``)."""
    if not isinstance(strokes, list):
        return frozenset()
    return frozenset(s["instance"] for s in strokes
                     if isinstance(s, dict) and s.get("tool") in WHOLE_TOOLS and type(s.get("instance")) is int
                     and 0 < s["instance"] < 2**32)


def check_examples(examples: list[Example], num_classes: int, in_channels: int | None) -> None:
    """Fail fast, in words a biologist understands, when the labels cannot train a model."""
    if not examples:
        raise services.TrainingError(
            "There is nothing to learn from yet: no image of this project has painted labels. "
            "Paint a few strokes of background and of each object class on one or more images, then train again."
        )
    channels = {}
    for ex in examples:
        channels.setdefault(ex.raw.shape[0], ex.image.original_filename)
    if len(channels) > 1:
        listed = ", ".join(f"{name} has {c} channel{'s' if c != 1 else ''}" for c, name in sorted(channels.items()))
        raise services.TrainingError(
            f"The labelled images have different numbers of channels ({listed}). One model needs the same "
            "channels in every image: move the other images into their own project, or remove their labels."
        )
    c = next(iter(channels))
    if in_channels is not None and c != in_channels:
        raise services.TrainingError(
            f"The model to fine-tune from expects {in_channels}-channel images, but the labelled images have {c}. "
            "Start from scratch (no parent version) or pick a version trained on these images."
        )
    painted = set()
    for ex in examples:
        painted.update(int(v) for v in np.unique(ex.classes) if v > 0)
    if len(painted) < 2:
        only = "background" if painted == {1} else f"class {painted.pop()}" if painted else "nothing"
        raise services.TrainingError(
            f"Only one class is painted ({only}). The model learns by telling classes apart: paint a few strokes "
            "of background and a few of each object class, then train again."
        )
    too_high = sorted(v for v in painted if v > num_classes)
    if too_high:
        raise services.TrainingError(
            f"Labels use class {too_high[0]}, which this project does not have any more. Repaint those strokes."
        )


def split_holdout(examples: list[Example]) -> tuple[list[Example], list[Holdout]]:
    """Training examples and what to score at the end.

    Images in the validation (and test) split are never trained on; they are scored. When there is
    no such image, the labels of one training image in five (at least one, when there are two or
    more) are held out; with a single labelled image, a quarter of its labelled columns or rows is
    (``labseg.ml.metrics.holdout_strip``: the right-most, unless it holds most of some class's labels).
    A hold-out that would leave training without two classes is dropped (then nothing is scored).
    """
    train = [e for e in examples if e.image.split == Split.TRAIN]
    held = [Holdout(e, e.image.split) for e in examples if e.image.split != Split.TRAIN]
    if held or not train:
        return train, held
    if len(train) >= 2:
        k = max(1, len(train) // 5)
        candidate_train, candidate_held = train[:-k], [Holdout(e, "holdout") for e in train[-k:]]
        if _classes_painted(candidate_train) >= 2:
            return candidate_train, candidate_held
        return train, []
    ex = train[0]
    strip = holdout_strip(ex.classes)
    if strip is None:
        return train, []
    r, c = strip.rows, strip.cols
    kept = ex.classes.copy()
    kept[r, c] = 0
    trimmed = dataclasses.replace(ex, classes=kept, variant=f"held-{r.start}:{r.stop}-{c.start}:{c.stop}")
    return [trimmed], [Holdout(ex, "holdout", strip)]


def _classes_painted(examples: list[Example]) -> int:
    values = set()
    for e in examples:
        values.update(int(v) for v in np.unique(e.classes) if v > 0)
    return len(values)


# --- weight maps, cached per annotation version (shared with the viewer's overlay) ----------
def cached_weight_map(ex: Example, w0: float, sigma: float, balance: str | None = "inverse") -> tuple[np.ndarray, bool]:
    """``(weights float32 (H, W), was_cached)`` of the example's labels (``apps.annotate.weight_maps``)."""
    return weight_maps.cached_weight_map(ex.annotation, ex.classes, ex.instances, w0, sigma, balance, ex.variant)


# --- validation ------------------------------------------------------------------------------
def predict_classes(model, raw: np.ndarray, normalization: dict, device, on_tile=None, radius: float | None = None,
                    split: str = "shape", gate=None, splitter=None,
                    size: float | None = None, edges: bool = False,
                    cache: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(class mask uint8 (H, W) with values 1.., instances or None)`` of the trained model on one image.

    ``on_tile(done, total)`` is called after each tile (heartbeat + cancel check on large images).
    ``radius``: the typical object radius for splitting (None: estimated from the foreground); ``split``:
    how touching objects are separated (``painted_split``); ``gate``: the run's intensity gate, ``splitter``: its
    intensity-aware split (both from ``fit_intensity``), applied as predictions of the version apply them;
    ``size``: the object radius the project sets (``project_size``; ``radius`` is then None); ``edges``: the
    run's edge calibration is on (``fit_intensity``), applied after the gate as predictions apply it. ``cache``: a
    dict kept between calls on the same images (``score_unet``'s two scorings): the network runs once per image.
    """
    from labseg.ml.tiling import predict_tiled
    from labseg.ml.train import apply_normalization

    if cache is not None and id(raw) in cache:
        pixels, probs = cache[id(raw)]
    else:
        pixels = apply_normalization(raw, normalization)
        probs = predict_tiled(model, pixels, device=device, progress=on_tile)
        if gate is not None:
            gate.apply(probs, pixels)
        if cache is not None:
            cache[id(raw)] = pixels, probs
    if edges:
        if cache is not None:
            probs = probs.copy()  # the cached probabilities stay the network's (and the gate's)
        from labseg.ml.baselines import calibrate_edges_at
        from labseg.ml.postprocess import object_scale

        calibrate_edges_at(probs, pixels, object_scale(size, radius), settings.LABSEG_EDGE_MAX_PIXELS)
    classes = (np.argmax(probs, axis=0) + 1).astype(np.uint8)
    instances = None
    try:
        from labseg.ml.postprocess import instances_by_class
    except ImportError:  # the ML core's post-processing not installed: score_all uses connected components
        instances_by_class = None
    if instances_by_class is not None and probs.shape[0] >= 2:
        # objects of every class, each class split on its own (as predictions are: apps.inference.runner)
        landscape = None if splitter is None else splitter.landscape(pixels)
        instances, _ = instances_by_class(probs, classes=classes - 1, radius=radius, split=split, image=landscape,
                                          size=size)
    return classes, instances


def score_holdouts(
        predict, holdouts: list[Holdout], beat, method: str = ScoreMethod.UNET) -> list[services.ImageScores]:
    """Predict every held-out image with ``predict(raw, on_tile) -> (classes, instances)``, score it
    against its labels, and average per scored split; rows carry ``method``."""
    return with_aggregate(score_images(predict, holdouts, beat, method), method)


def score_images(predict, holdouts: list[Holdout], beat, method: str = ScoreMethod.UNET) -> list[services.ImageScores]:
    """The per-image rows of ``score_holdouts`` (no aggregate)."""
    from labseg.ml.metrics import score_all

    per_image: list[services.ImageScores] = []
    for h in holdouts:
        name = h.example.image.original_filename
        beat(f"Scoring {name}" + ("" if method == ScoreMethod.UNET else f" ({method} baseline)"))
        last = [time.monotonic()]

        def on_tile(done: int, total: int, name=name, last=last) -> None:
            if time.monotonic() - last[0] >= services.PROGRESS_INTERVAL_S:
                last[0] = time.monotonic()
                beat(f"Scoring {name}: tile {done} of {total}")

        pred_c, pred_i = predict(h.example.raw, on_tile)
        region = h.region
        gt_i = h.example.instances[region] if h.example.instances is not None else None
        pred_i_region = None if pred_i is None else pred_i[region]
        result = score_all(pred_c[region], pred_i_region, h.example.classes[region], gt_i)
        per_image.append(services.ImageScores(h.example.image.pk, h.split, metric_rows(result), method))
    return per_image


def with_aggregate(per_image: list[services.ImageScores], method: str) -> list[services.ImageScores]:
    """``per_image`` and their mean over the scored split (validation, else the hold-out, else test)."""
    primary = next((s for s in ("validation", "holdout", "test") if any(p.split == s for p in per_image)), None)
    if primary is None:
        return per_image
    chosen = [p for p in per_image if p.split == primary]
    names = sorted({n for p in chosen for n in p.scores})
    aggregate = {}
    for name in names:
        values = [_value(p.scores[name]) for p in chosen if name in p.scores]
        aggregate[name] = {"value": float(np.mean(values)), "images": len(values)}
    return per_image + [services.ImageScores(None, primary, aggregate, method)]


def score_unet(model, normalization: dict, device, holdouts: list[Holdout], beat, fitted: dict, radius: float | None,
               split: str, size: float | None) -> tuple[list[services.ImageScores], dict]:
    """The network's scores on the held-out labels, predicted as its version will predict (``predict_classes``
    with the run's ``fitted`` gate, split and edge calibration: ``fit_intensity``), and the edge calibration the
    version keeps. Where the calibration is auto (``edge_calibration: null``) the held-out labels are scored
    without and with it (the network run once per image) and it goes on only where it lifts their foreground
    IoU (``labseg.ml.baselines.choose_edges``); those scores are kept. -> (scores, edge_calibration entry)."""
    from labseg.ml.baselines import choose_edges, edges_auto, edges_on

    def scored(edges: bool, images: list[Holdout], cache: dict | None) -> list[services.ImageScores]:
        return score_images(
            lambda raw, on_tile: predict_classes(model, raw, normalization, device, on_tile, radius, split,
                                                 fitted["gate"], fitted["splitter"], size, edges, cache),
            images, beat)

    unet = ScoreMethod.UNET
    if not edges_auto(fitted["edges_info"]):
        return with_aggregate(scored(fitted["edges"], holdouts, None), unet), fitted["edges_info"]
    without, with_edges = [], []
    for h in holdouts:  # both ways, image by image: one image's network output is held at a time
        cache: dict = {}
        without += scored(False, [h], cache)
        with_edges += scored(True, [h], cache)
    without, with_edges = with_aggregate(without, unet), with_aggregate(with_edges, unet)
    info = choose_edges(_aggregate(without, "iou_fg"), _aggregate(with_edges, "iou_fg"))
    return (with_edges if edges_on(info) else without), info


def _aggregate(scores: list[services.ImageScores], name: str) -> float | None:
    """The mean of ``name`` over the scored split (``score_holdouts``' aggregate row), or None."""
    row = next((s for s in scores if s.image_id is None), None)
    value = None if row is None else row.scores.get(name)
    return None if value is None else _value(value)


# --- the baselines every version is shown beside ---------------------------------------------
def painted_objects(examples: list[Example]) -> tuple[float | None, dict]:
    """What was painted as objects, in one pass: (the typical object radius of the instances painted whole,
    None when fewer than 3 were; ``{"with_ids": objects painted with ids, "whole": those painted whole}``, for
    the page to say why the size was or was not taken from them). Strokes saved with ids (instance mode) are not
    whole objects and do not count (``labseg.ml.postprocess.painted_whole``); objects drawn with a polygon or a
    fill do (``whole_ids``)."""
    from labseg.ml.postprocess import painted_radius as median_painted_radius, painted_whole

    kept, with_ids = [], 0
    for ex in examples:
        if ex.instances is None:
            continue
        inst = np.asarray(ex.instances)
        with_ids += len(np.unique(inst[(ex.classes >= 2) & (inst > 0)]))
        kept.append(painted_whole(ex.classes, inst, ex.whole_ids))
    whole = sum(len(np.unique(k[k > 0])) for k in kept)
    return median_painted_radius(kept), {"with_ids": with_ids, "whole": whole}


def project_size(project) -> float | None:
    """The object radius (px) the project sets: half its ``object_diameter`` (the lab's typical object width);
    None when unset (the size then comes from the objects painted whole, else from each prediction)."""
    return None if project.object_diameter is None else float(project.object_diameter) / 2.0


def painted_split(examples: list[Example]) -> str:
    """How touching objects are separated, from what was painted (``labseg.ml.postprocess.painted_split``):
    "boundaries" when the painted background is mostly thin lines between objects (EM membranes), else
    "shape"."""
    from labseg.ml.postprocess import painted_split as split_of

    return split_of([ex.classes for ex in examples], [ex.instances for ex in examples])


def run_split(examples: list[Example]) -> str:
    """A training run's split (``painted_split``), read from the whole labels of the images it trains on (the train
    split): a one-image hold-out's quarter, kept out of training to score, still says how the lab paints. On the
    real EM set one seed's membrane lines lay mostly in that quarter, and the three quarters left read as blobs:
    the watershed cut its neurites (``bench/fewlabel.py``). Validation and test images are not read."""
    return painted_split([e for e in examples if e.image.split == Split.TRAIN])


def fit_intensity(train: list[Example], normalization: dict, config, split: str, radius: float | None = None,
                  held_out: bool = True) -> dict:
    """What the run's predictions take from the grey values of its training labels, normalised as the network
    saw them (one normalised copy for both): ``{"gate": IntensityGate or None, "gate_info": provenance entry,
    "splitter": SplitIntensity or None, "split_info": provenance entry, "edges": bool, "edges_info": provenance
    entry}``.

    The gate (``labseg.ml.baselines.fit_intensity_gate``) is off when the config turns it off, when objects are
    split by painted membranes (the membrane fill decides their edges), when objects were painted with their
    outlines, or when the threshold drops more than a tenth of some painted object class (the entry says
    which). The intensity-aware split (``fit_split_intensity``) is off when the config turns it off, on
    painted membranes, or when objects were painted whole (``radius``, from ``painted_objects``). Edge
    calibration (``labseg.ml.baselines.edge_setting``) is on where the config turns it on, except on painted
    membranes; auto (``edges_info`` says so, ``edges`` False) is chosen by ``score_unet``, or off at once where
    nothing is ``held_out``; it is fitted on each predicted image, so it stores no numbers."""
    from labseg.ml.baselines import edge_setting, edges_on, fit_intensity_gate, fit_split_intensity
    from labseg.ml.train import apply_normalization

    images, classes = [apply_normalization(e.raw, normalization) for e in train], [e.classes for e in train]
    gate, gate_info = fit_intensity_gate(images, classes, enabled=config.intensity_gate, split=split)
    splitter, split_info = fit_split_intensity(images, classes, enabled=config.intensity_split, split=split,
                                               painted_radius=radius)
    edges_info = edge_setting(enabled=config.edge_calibration, split=split, held_out=held_out)
    return {"gate": gate, "gate_info": gate_info, "splitter": splitter, "split_info": split_info,
            "edges": edges_on(edges_info), "edges_info": edges_info}


def prediction_settings(examples, normalization: dict, config, size: float | None = None) -> dict:
    """The provenance entries a version's predictions read back (``apps.inference.runner``), from the labels its
    network learnt: ``object_radius`` and ``painted_objects`` (``painted_objects``), ``object_size`` (``size``,
    the radius the project sets: ``project_size``), ``split``
    (``painted_split``), ``intensity_gate``, ``intensity_split`` and ``edge_calibration`` (``fit_intensity``: the
    weights, or why each is off). A training run computes them on its way; a live session (``apps.live.runner``)
    with this, so that a kept network predicts as a trained one does. ``examples``: anything with ``raw``, ``classes``,
    ``instances`` (None or an id mask) and ``whole_ids``."""
    (radius, painted), split = painted_objects(examples), painted_split(examples)
    fitted = fit_intensity(examples, normalization, config, split, radius, held_out=False)  # auto: nothing to choose on
    return {"object_radius": radius, "painted_objects": painted, "object_size": size, "split": split,
            "intensity_gate": fitted["gate_info"], "intensity_split": fitted["split_info"],
            "edge_calibration": fitted["edges_info"]}


def score_baselines(train: list[Example], holdouts: list[Holdout], config, radius: float | None,
                    beat, split: str = "shape", splitter=None,
                    size: float | None = None) -> tuple[list[services.ImageScores], dict]:
    """Fit the threshold and forest baselines on the run's training labels and score them on the run's
    held-out labels, exactly as the U-Net is scored (the same split: ``splitter``, the run's intensity-aware
    split, or None). Returns (scores, what was fitted, for provenance).

    Skipped (with the reason in the provenance) when nothing is held out, or when the images are larger
    than ``LABSEG_BASELINE_MAX_PIXELS`` in all (the forest's features take ~100 bytes a pixel)."""
    from labseg.ml.baselines import ForestBaseline, ThresholdBaseline
    from labseg.ml.io import normalize
    from labseg.ml.postprocess import instances_from_probs

    if not holdouts:
        return [], {"skipped": "nothing held out to score"}
    pixels = sum(e.raw.shape[-1] * e.raw.shape[-2] for e in train) + sum(
        h.example.raw.shape[-1] * h.example.raw.shape[-2] for h in holdouts)
    if pixels > settings.LABSEG_BASELINE_MAX_PIXELS:
        return [], {"skipped": f"{pixels} pixels, more than LABSEG_BASELINE_MAX_PIXELS="
                               f"{settings.LABSEG_BASELINE_MAX_PIXELS}"}
    norm = lambda raw: normalize(raw, config.norm_low, config.norm_high)  # noqa: E731 - as the U-Net sees it
    beat("Baselines: fitting a threshold and a random forest on the same labels")
    xs, cs = [norm(e.raw) for e in train], [e.classes for e in train]
    held = {id(h.example.raw): norm(h.example.raw) for h in holdouts}  # normalised once for both baselines
    info: dict = {}
    scores: list[services.ImageScores] = []
    for method, model in ((ScoreMethod.THRESHOLD, ThresholdBaseline()),
                          (ScoreMethod.FOREST, ForestBaseline(threads=max(1, settings.LABSEG_TORCH_THREADS or 1),
                                                              seed=config.seed))):
        try:
            model.fit(xs, cs)
        except ValueError as exc:  # e.g. only one class painted in the training part
            info[str(method)] = {"skipped": str(exc)}
            continue

        def predict(raw, on_tile=None, model=model):
            x = held[id(raw)] if id(raw) in held else norm(raw)
            classes, fg = model.predict(x)
            landscape = None if splitter is None else splitter.landscape(x)
            return classes, instances_from_probs(fg, radius=radius, split=split, image=landscape, size=size)

        scores += score_holdouts(predict, holdouts, beat, method)
        info[str(method)] = ({"threshold": model.threshold, "weights": [float(w) for w in model.weights]}
                             if method == ScoreMethod.THRESHOLD else {"trees": model.trees})
    return scores, info


def _value(raw) -> float:
    return float(raw["value"] if isinstance(raw, dict) else raw)


# --- the run ---------------------------------------------------------------------------------
#: Shown per self-training round on the Training page (the run's ``rounds``), in this order.
ROUND_METRICS = ("f1_iou50", "iou_fg", "mean_iou", "pixel_error")


class RoundProgress:
    """Wraps the run's ``ProgressReporter`` and keeps ``TrainingRun.rounds`` up to date: one entry per
    training round ``{"round", "of", "start_step", "end_step", "validation"}``, where ``validation`` is
    ``{"split", "images", "scores": {metric: mean}}`` of the held-out images after that round (None when
    nothing is held out). Everything else (``curve``, ``flush``) is the reporter's."""

    def __init__(self, reporter, run_id: int, worker: str):
        self.reporter, self.run_id, self.worker = reporter, run_id, worker
        self.rounds: list[dict] = []
        self._last_step = 0
        self._save()

    def __getattr__(self, name):
        return getattr(self.reporter, name)

    def __call__(self, step: int, loss=None, *args, round: int | None = None, rounds: int | None = None, **kw):
        if round is not None and (not self.rounds or self.rounds[-1]["round"] != round):
            # a restart (out-of-memory retry) begins at round 1 again: drop what it replaces
            self.rounds = [r for r in self.rounds if r["round"] < round]
            start = self.rounds[-1]["end_step"] if self.rounds and self.rounds[-1]["end_step"] is not None else (
                self._last_step if round > 1 else 0)
            self.rounds.append({"round": round, "of": rounds, "start_step": int(start or 0), "end_step": None,
                                "validation": None})
            self._save()
        self._last_step = int(step)
        return self.reporter(step, loss, *args, **kw)

    def end_round(self, number: int, step: int) -> None:
        for r in self.rounds:
            if r["round"] == number:
                r["end_step"] = int(step)
        self._save()

    def set_validation(self, number: int, scores: list) -> None:
        aggregate = next((s for s in scores if s.image_id is None and s.method == ScoreMethod.UNET), None)
        if aggregate is None:
            return
        values = {n: aggregate.scores[n] for n in ROUND_METRICS if n in aggregate.scores}
        images = max((v.get("images", 0) for v in values.values() if isinstance(v, dict)), default=0)
        summary = {"split": aggregate.split, "images": images, "scores": {n: _value(v) for n, v in values.items()}}
        for r in self.rounds:
            if r["round"] == number:
                r["validation"] = summary
        self._save()

    def _save(self) -> None:
        TrainingRun.objects.filter(pk=self.run_id, worker=self.worker[:200]).update(rounds=self.rounds)


def _fit_with_oom_fallback(fit, examples: list[Example], weights: list[np.ndarray], config, init, reporter,
                           on_round_end=None):
    """``fit``; on out-of-memory halve the tile (and batch) and retry, at most ``OOM_RETRIES`` times."""
    from labseg.ml.device import free_cuda_cache, is_oom

    extra = {"on_round_end": on_round_end} if on_round_end is not None else {}
    for attempt in range(OOM_RETRIES + 1):
        try:
            return fit([e.raw for e in examples], [e.classes for e in examples], [e.instances for e in examples],
                       config=config, init=init, progress=reporter, weights=weights, **extra)
        except (RuntimeError, MemoryError) as exc:
            if not is_oom(exc) and not isinstance(exc, MemoryError):
                raise
            free_cuda_cache()
            if attempt == OOM_RETRIES or config.tile_output <= 16:
                raise services.TrainingError(
                    f"The {config.device} ran out of memory, even with training tiles of {config.tile_output} px "
                    f"and batches of {config.batch_size}. Use a smaller base_channels, or a worker with more memory."
                ) from exc
            config.tile_output = max(16, config.tile_output // 2)
            config.batch_size = max(1, config.batch_size // 2)
            log.warning("out of memory; retrying with tile_output=%s batch_size=%s",
                        config.tile_output, config.batch_size)
            reporter.curve.clear()
            reporter.flush(f"Out of memory: retrying with {config.tile_output}-px tiles")
        except ValueError as exc:  # the ML core's input checks: data the lab can fix
            raise services.TrainingError(f"Training could not start: {exc}.") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def execute_run(run_id: int, worker: str) -> ModelVersion | None:
    """Train the claimed run ``run_id`` and store its version; raises TrainingError / RunStopped."""
    from labseg.ml.postprocess import object_scale, split_sizes
    from labseg.ml.train import fit, save_checkpoint, sized_crops, validate_config_overrides

    started = time.monotonic()
    run = TrainingRun.objects.select_related("project", "parent_version").get(pk=run_id)
    project, parent = run.project, run.parent_version
    device = resolve_device()
    try:
        config = validate_config_overrides(run.config)
    except ValueError as exc:
        raise services.TrainingError(f"The training settings are not valid: {exc}.") from exc
    config.device = str(device)
    config.num_threads = settings.LABSEG_TORCH_THREADS or None
    config.log_every = 1  # the reporter throttles its writes itself; cancel is seen within one step
    if config.num_classes is None:
        config.num_classes = max(2, services.project_num_classes(project))
    beat = lambda message=None: services.heartbeat(run_id, worker, message)  # noqa: E731

    examples = collect_examples(run, worker)
    parent_channels = (parent.architecture or {}).get("in_channels") if parent else None
    check_examples(examples, config.num_classes, parent_channels)
    train, holdouts = split_holdout(examples)
    if not train:
        raise services.TrainingError(
            "Every labelled image is in the validation or test split, so nothing is left to train on. "
            "Put at least one labelled image in the train split."
        )
    weights, cached = [], 0  # computed once per annotation version, shared with the weight-map overlay
    for ex in train:
        beat(f"Weight map of {ex.image.original_filename}")
        w, hit = cached_weight_map(ex, config.w0, config.sigma, config.balance)
        weights.append(w)
        cached += hit

    init = None
    if parent is not None:
        beat(f"Loading model version {parent.number} to fine-tune")
        if not parent.checkpoint or not Path(parent.checkpoint.path).exists():
            raise services.TrainingError(
                f"The checkpoint file of version {parent.number} is missing; train from scratch.")
        parent_classes = (parent.architecture or {}).get("num_classes")
        if parent_classes is not None and int(parent_classes) != config.num_classes:
            raise services.TrainingError(
                f"Version {parent.number} was trained for {parent_classes} classes (background included), but this "
                f"project now has {config.num_classes}. Train from scratch so the model learns the new classes."
            )
        init = parent.checkpoint.path
    reporter = RoundProgress(
        services.ProgressReporter(run_id, worker, total_steps=config.steps, max_seconds=config.max_seconds),
        run_id, worker)
    reporter.flush("Training")
    (radius, painted), split = painted_objects(train), run_split(examples)
    # the project's object size, when set, wins over the painted one: objects are split at it, and it sizes the crops
    size = project_size(project)
    split_radius, _ = split_sizes(size, radius)
    if "tile_output" not in (run.config or {}):
        config = sized_crops(config, object_scale(size, radius))

    fitted: list = []  # the run's gate and split, fitted once on the first scoring (one normalisation per run)

    def intensity_for(normalization: dict) -> dict:
        if not fitted:
            fitted.append(fit_intensity(train, normalization, config, split, radius))
        return fitted[0]

    def score_round(number: int, of: int, model, history: dict) -> None:
        """Validation scores after each self-training round but the last (scored below anyway)."""
        reporter.end_round(number, history.get("steps", 0))
        if number < of and holdouts:
            reporter.flush(f"Scoring the validation labels after round {number} of {of}")
            reporter.set_validation(number, score_unet(
                model, history["normalization"], device, holdouts, beat, intensity_for(history["normalization"]),
                split_radius, split, size)[0])

    model, history = _fit_with_oom_fallback(fit, train, weights, config, init, reporter, score_round)
    if history.get("stop_reason") == "cancelled":
        raise services.RunStopped("cancelled")
    reporter.flush("Scoring the validation labels")
    intensity = intensity_for(history["normalization"])

    scores, edges_info = score_unet(model, history["normalization"], device, holdouts, beat, intensity,
                                    split_radius, split, size)
    if reporter.rounds:
        reporter.set_validation(reporter.rounds[-1]["round"], scores)
    baseline_scores, baselines = score_baselines(train, holdouts, config, split_radius, beat, split,
                                                 intensity["splitter"], size)
    scores += baseline_scores
    class_names = dict(project.label_classes.values_list("index", "name"))
    names = [class_names.get(k, f"class {k}") for k in range(1, config.num_classes + 1)]
    trained = {e.image.pk for e in train}
    provenance = {
        "images": [
            {"id": e.image.pk, "file": e.image.original_filename, "annotation_id": e.annotation.pk,
             "annotation_version": e.annotation.version, "labelled_pixels": int((e.classes > 0).sum()),
             "split": e.image.split, "used_for": "train" if e.image.pk in trained else "validation"}
            for e in examples
        ],
        "held_out": [{"image": h.example.image.pk, "split": h.split,
                      "strip": None if h.strip is None else h.strip.describe()} for h in holdouts],
        "weight_maps_cached": cached,
        "code_version": services.code_version(), "seed": config.seed, "device": str(device),
        "torch_threads": None, "steps_done": history.get("steps"), "stop_reason": history.get("stop_reason"),
        "rounds": history.get("rounds", []),  # the second and later rounds train on self-training labels
        "object_radius": radius,  # from the painted instances; None: estimated per image when splitting
        "painted_objects": painted,  # ids painted, and how many whole (they set object_radius)
        "object_size": size,  # the radius the project's object diameter sets (wins over object_radius); None: unset
        "split": split,  # how touching objects are separated: "shape" (watershed) or "boundaries" (components)
        "prior_weight": history.get("prior_weight"),  # the threshold prior's weight (on for painted membranes)
        "intensity_gate": intensity["gate_info"],  # the gate predictions apply (weights, threshold), or why it is off
        "intensity_split": intensity["split_info"],  # the intensity-aware split's weights, or why it is off
        "edge_calibration": edges_info,  # {"on": true} or why it is off (calibrate_edges, per image; auto: both IoUs)
        "baselines": baselines,
        "train_seconds": round(float(history.get("seconds", 0.0)), 2),
        "duration_seconds": round(time.monotonic() - started, 2),
        "parent_version": parent.number if parent else None, "attempt": run.attempts,
    }
    try:
        import torch

        provenance["torch"] = str(torch.__version__)
        provenance["torch_threads"] = torch.get_num_threads() if device.type == "cpu" else None
    except ImportError:  # pragma: no cover - the worker has torch
        pass
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(path, model, config=config, class_names=names, history=history,
                        extra={"provenance": provenance, "project": project.pk, "run": run_id})
        version = services.finish_run(
            run_id, worker, checkpoint_path=path, architecture=dict(model.config),
            config=config.to_dict(), provenance=provenance, scores=scores,
        )
    return version
