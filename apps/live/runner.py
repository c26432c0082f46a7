"""The worker's loop of a live session (imported only inside the Celery worker: numpy and torch).

    read the row  ->  page silent for LABSEG_LIVE_HEARTBEAT_TIMEOUT s? stop ("browser_gone")
                  ->  a newer draft? swap it in (``LiveTrainer.set_draft``)
    train for LABSEG_LIVE_OVERLAY_MS (at least one step)           -> step, loss   (jobs.beat)
    predict the visible region with the network's context margin  -> overlay PNG  (jobs.beat)
    every CHECKPOINT_S seconds                                     -> checkpoint   (jobs.beat)

Every write is ``jobs.beat``: conditional on the session still running for this worker, so a session
stopped (DELETE), taken over (a second tab) or recovered elsewhere raises ``JobLost`` at the next write
and this loop ends without writing anything more.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from apps.annotate.masks import annotation_arrays, decode_mask
from apps.annotate.models import Annotation, Split
from apps.training import services as training
from apps.training.pipeline import prediction_settings, project_size, resolve_device, whole_object_ids

from . import services
from .models import LiveSession, StopReason

log = logging.getLogger(__name__)

#: The network is written for Keep at most this often (seconds), and when the session ends normally.
CHECKPOINT_S = 5.0
#: How often the loop looks at the row while it has nothing to learn from (no labels yet).
IDLE_S = 0.5


class TrainingInputError(Exception):
    """The labels cannot train a network (a message for the lab)."""


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = (colour or "#00ff00").lstrip("#")
    try:
        return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)
    except ValueError:
        return 0, 255, 0


def render_overlay(probs: np.ndarray, colours: dict[int, str]) -> bytes:
    """RGBA PNG of a prediction: each pixel the colour of its most likely class (class value k + 1 for
    output k); background (class 1) transparent; alpha = 64 + 191 x the network's margin (top-1 minus top-2
    probability), so uncertain pixels are faint."""
    order = np.sort(probs, axis=0)
    margin = order[-1] - (order[-2] if probs.shape[0] > 1 else 0.0)
    classes = np.argmax(probs, axis=0) + 1
    lut = np.zeros((probs.shape[0] + 2, 3), np.uint8)
    for index, colour in colours.items():
        if 0 <= index < len(lut):
            lut[index] = _rgb(colour)
    rgba = np.zeros(classes.shape + (4,), np.uint8)
    rgba[..., :3] = lut[classes]
    rgba[..., 3] = np.where(classes > 1, 64 + np.round(191 * np.clip(margin, 0, 1)), 0).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def crop_with_margin(pixels: np.ndarray, region: dict, margin: int) -> np.ndarray:
    """The region of a normalised (C, H, W) image grown by ``margin`` px of real context (mirrored outside
    the image), so that the prediction of the region does not depend on where it was cut."""
    from labseg.ml.tiling import reflect_index

    _, h, w = pixels.shape
    ry = reflect_index(np.arange(region["y"] - margin, region["y"] + region["height"] + margin), h)
    rx = reflect_index(np.arange(region["x"] - margin, region["x"] + region["width"] + margin), w)
    return pixels[:, ry[:, None], rx[None, :]]


class Labelled(NamedTuple):
    """One labelled image as ``apps.training.pipeline.prediction_settings`` reads it."""

    raw: np.ndarray
    classes: np.ndarray
    instances: np.ndarray | None
    whole_ids: frozenset = frozenset()  # ids drawn whole (polygon, fill): ``pipeline.whole_object_ids``


def _saved_examples(session: LiveSession, skip_image: bool) -> tuple[list, list, list, list, list[dict]]:
    """Raw images, class and instance masks of the project's labelled train-split images (and of the
    session's image whatever its split, unless its draft replaces it), the ids their strokes drew whole, and
    their provenance."""
    from labseg.ml.io import read_image

    anns = (Annotation.objects.filter(image__project_id=session.image.project_id, classes_png__isnull=False)
            .select_related("image").order_by("image_id"))
    images, classes, instances, whole, seen = [], [], [], [], []
    for ann in anns:
        if ann.image.split != Split.TRAIN and ann.image_id != session.image_id:
            continue
        if skip_image and ann.image_id == session.image_id:
            continue
        cls, inst = annotation_arrays(ann)
        if cls is None or not (cls > 0).any():
            continue
        raw = read_image(ann.image.file.path)
        if raw.shape[-2:] != cls.shape or raw.shape[0] != session.image.channels:
            continue  # a mismatched image is the training run's to report; live just leaves it out
        images.append(raw)
        classes.append(cls.astype(np.uint8))
        instances.append(inst if inst is not None and inst.any() else None)
        whole.append(whole_object_ids(ann.strokes))
        seen.append({"id": ann.image_id, "file": ann.image.original_filename, "annotation_id": ann.pk,
                     "annotation_version": ann.version, "labelled_pixels": int((cls > 0).sum())})
    return images, classes, instances, whole, seen


def _init_and_config(session: LiveSession):
    """(init checkpoint path or None, TrainConfig): the session's own checkpoint after a restart, else the
    parent version's, else from scratch with the default config plus LABSEG_LIVE_CONFIG."""
    from labseg.ml.train import validate_config_overrides

    try:
        config = validate_config_overrides(services.live_config())
    except ValueError as exc:
        raise TrainingInputError(f"LABSEG_LIVE_CONFIG is not valid: {exc}") from exc
    own = services.checkpoint_path(session)
    if own is not None:
        return str(own), config
    parent = session.parent_version
    if parent is not None:
        if not parent.checkpoint or not Path(parent.checkpoint.path).exists():
            raise TrainingInputError(f"The checkpoint file of version {parent.number} is missing; start from scratch.")
        return parent.checkpoint.path, config
    return None, config


def run_session(session_id: int, worker: str) -> str:
    """Train the claimed session until it is stopped; returns why it ended."""
    import torch

    from labseg.ml.baselines import IntensityGate, calibrate_edges_at, edges_on
    from labseg.ml.io import normalize, read_image
    from labseg.ml.postprocess import object_scale
    from labseg.ml.train import LiveTrainer

    session = LiveSession.objects.select_related("image", "image__project", "parent_version").get(pk=session_id)
    image, project = session.image, session.image.project
    device = resolve_device()
    init, config = _init_and_config(session)
    warm_start = ("session" if init and services.checkpoint_path(session) is not None else
                  "parent" if init else "scratch")
    config.device = str(device)
    num_classes = max(2, training.project_num_classes(project))
    size = project_size(project)  # as the session starts: a kept version splits at it, as a run's does
    services.beat(session_id, worker)
    raw = read_image(image.file.path)
    pixels = normalize(raw, config.norm_low, config.norm_high)
    try:
        trainer = LiveTrainer(config, in_channels=raw.shape[0], num_classes=num_classes, init=init)
    except ValueError as exc:
        raise TrainingInputError(f"The live network could not start: {exc}.") from exc
    if init is not None and services.checkpoint_path(session) is not None:
        trainer.steps = session.checkpoint_step  # restarted after its worker died: go on counting from there
    colours = dict(project.label_classes.values_list("index", "color"))
    names_by_index = dict(project.label_classes.values_list("index", "name"))
    class_names = [names_by_index.get(k, f"class {k}") for k in range(1, num_classes + 1)]
    timeout = float(settings.LABSEG_LIVE_HEARTBEAT_TIMEOUT)
    period = max(0.05, settings.LABSEG_LIVE_OVERLAY_MS / 1000.0)
    began = time.monotonic()
    draft_version, has_draft, seen, draft_seen = -1, None, [], None
    last_checkpoint = 0.0
    ckpt_name = f"projects/{project.pk}/live/{session_id}/model.pt"
    # the labels the network learns from now (saved images, then the draft), and the prediction settings fitted
    # on them for the checkpoint (refitted only when they changed: ``labelled["changed"]``)
    labelled: dict = {"saved": [], "draft": [], "changed": True, "settings": {}, "gate": None, "edges": False}

    def save_checkpoint() -> None:
        path = Path(default_storage.path(ckpt_name))
        path.parent.mkdir(parents=True, exist_ok=True)
        if labelled["changed"]:  # what a kept version's predictions take from these labels, as a run's do
            labelled["settings"] = prediction_settings(labelled["saved"] + labelled["draft"],
                                                       trainer.normalization, config, size)
            labelled["gate"] = IntensityGate.from_dict(labelled["settings"]["intensity_gate"])
            labelled["edges"] = edges_on(labelled["settings"]["edge_calibration"])
            labelled["changed"] = False
        provenance = {"images": seen, "draft": draft_seen, "steps": trainer.steps, "device": str(device),
                      "torch_threads": torch.get_num_threads() if device.type == "cpu" else None,
                      "seed": config.seed, "warm_start": warm_start, **labelled["settings"]}
        trainer.checkpoint(path, class_names=class_names,
                           extra={"provenance": provenance, "project": project.pk, "live_session": session_id})
        services.beat(session_id, worker, checkpoint_name=ckpt_name, checkpoint_step=trainer.steps,
                      checkpoint_provenance=provenance)

    while True:
        row = (LiveSession.objects.filter(pk=session_id)
               .values("browser_seen_at", "draft_version", "region").first())
        if row is None:
            raise services.LiveStopped("lost")
        silent = (timezone.now() - row["browser_seen_at"]).total_seconds() if row["browser_seen_at"] else timeout + 1
        reason = (StopReason.BROWSER_GONE if silent > timeout else
                  StopReason.TIME_LIMIT if time.monotonic() - began > settings.LABSEG_LIVE_MAX_SECONDS else None)
        if reason is not None:
            if trainer.steps:
                save_checkpoint()
            services.finish(session_id, worker, reason)
            return reason
        if row["draft_version"] != draft_version:
            draft_version = row["draft_version"]
            blobs = LiveSession.objects.filter(pk=session_id).values("draft_classes", "draft_instances").first()
            cls = decode_mask(blobs["draft_classes"]) if blobs else None
            inst = decode_mask(blobs["draft_instances"]) if blobs else None
            if cls is not None and cls.shape != raw.shape[-2:]:
                cls = None
            if has_draft is None or bool(cls is not None) != bool(has_draft):  # the draft replaces the saved labels
                imgs, clss, insts, whole, seen = _saved_examples(session, skip_image=cls is not None)
                try:
                    trainer.set_data(imgs, clss, insts)
                except ValueError as exc:
                    raise TrainingInputError(f"The saved labels cannot train the live network: {exc}.") from exc
                labelled["saved"] = [Labelled(*x) for x in zip(imgs, clss, insts, whole)]
            try:
                fits = inst is not None and inst.shape == raw.shape[-2:]
                has_draft = trainer.set_draft(raw, cls, inst if fits else None)
            except ValueError as exc:
                raise TrainingInputError(f"The draft cannot train the live network: {exc}.") from exc
            labelled["draft"] = [Labelled(raw, cls, inst if fits else None)] if has_draft else []
            labelled["changed"] = True
            saved = Annotation.objects.filter(image=image).values_list("version", flat=True).first()
            draft_seen = ({"image": image.pk, "draft_version": draft_version, "based_on_annotation_version": saved,
                           "labelled_pixels": int((cls > 0).sum())} if has_draft else None)
        if not trainer.has_data:
            services.beat(session_id, worker)
            time.sleep(IDLE_S)
            continue
        trained_on = draft_version
        start, losses = time.monotonic(), []
        while not losses or time.monotonic() - start < period:
            losses.append(trainer.train(1))
        loss = float(np.mean(losses))
        services.beat(session_id, worker, step=trainer.steps, loss=loss if np.isfinite(loss) else None)
        region = row["region"] or {"x": 0, "y": 0, "width": min(image.width, 512), "height": min(image.height, 512)}
        margin = trainer.model.margin
        crop = crop_with_margin(pixels, region, margin)
        probs = trainer.predict(crop)
        if labelled["gate"] is not None:  # the overlay shows what a kept version predicts (fitted at the checkpoint)
            labelled["gate"].apply(probs, crop)
        if labelled["edges"]:  # its edges too, at the grey level of the shown crop (a prediction: the whole image's)
            calibrate_edges_at(probs, crop, object_scale(size, labelled["settings"].get("object_radius")))
        probs = probs[:, margin:margin + region["height"], margin:margin + region["width"]]
        services.beat(session_id, worker, overlay_png=render_overlay(probs, colours), overlay_region=region,
                      overlay_step=trainer.steps, overlay_draft_version=max(trained_on, 0),
                      overlay_at=timezone.now())
        if time.monotonic() - last_checkpoint >= CHECKPOINT_S:
            save_checkpoint()
            last_checkpoint = time.monotonic()
