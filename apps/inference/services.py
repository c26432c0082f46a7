"""Write operations of the inference app: request predictions, run one, accept one into the annotation.

Every function here is one use case; transactions live here, views and tasks only call them.
The heavy lifting (loading a checkpoint, overlap-tile prediction, post-processing, scoring) is in
``runner.py`` and ``scoring.py``, which import torch lazily so Django never loads it.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.annotate.models import Image
from apps.training.models import ModelVersion
from labseg.api import ServiceUnavailable
from labseg.jobs import service as jobs
from labseg.jobs.models import ACTIVE_STATUSES

from .models import ExportFormat, ModelExport, Prediction, PredictionStatus

log = logging.getLogger(__name__)

ACTIVE_PREDICTION_STATUSES = ACTIVE_STATUSES

#: A prediction is a ``labseg.jobs`` job: claim, heartbeat, progress, finish-if-ours, fail and recovery are
#: ``labseg.jobs.service``'s; a worker that lost its prediction stops at its next write (``PredictionLost``).
PREDICTIONS = jobs.register(jobs.JobKind(
    name="prediction", model=Prediction, task="apps.inference.tasks.predict", noun="prediction",
    queue_noun="prediction", again="ask for the prediction again",
    crash_advice="Ask for it again; if it fails the same way, ask your administrator to check the GPU worker.",
))
PredictionLost = jobs.JobLost
EXPORTS = jobs.register(jobs.JobKind(
    name="export", model=ModelExport, task="apps.inference.tasks.export", noun="model export",
    queue_noun="export", again="ask for the export again",
))


def _enqueue(prediction_id: int, failed: list[int] | None = None) -> None:
    """Send the prediction task once the surrounding transaction commits (a broker error fails the row)."""
    jobs.enqueue(PREDICTIONS, prediction_id, failed)


def _is_stale(prediction: Prediction) -> bool:
    """A running prediction whose worker stopped writing heartbeats (the worker died)."""
    if prediction.status != PredictionStatus.RUNNING:
        return False
    last = prediction.heartbeat_at or prediction.started_at or prediction.created_at
    return last < timezone.now() - timedelta(seconds=settings.LABSEG_HEARTBEAT_TIMEOUT)


def fail_prediction(prediction_id: int, error: str, worker: str | None = None) -> None:
    """Mark a prediction failed with a message a user can read (only if it is not already finished; with
    ``worker``, only while that worker still runs it)."""
    jobs.fail(PREDICTIONS, prediction_id, error, worker=worker)


def _request_one(model_version: ModelVersion, image: Image, user, failed: list[int] | None = None) -> Prediction:
    """The queued/running prediction of (image, version), or a new queued one (enqueued on commit)."""
    for _attempt in range(3):
        active = (
            Prediction.objects.filter(image=image, model_version=model_version, status__in=ACTIVE_PREDICTION_STATUSES)
            .order_by("-id")
            .first()
        )
        if active is not None:
            if not _is_stale(active):
                return active
            fail_prediction(active.pk, "The worker running this prediction stopped responding; it was restarted.")
            continue
        try:
            with transaction.atomic():  # savepoint: the partial unique constraint may refuse a racing twin
                pred = Prediction.objects.create(
                    image=image, model_version=model_version, created_by=user if _is_user(user) else None,
                    enqueued_at=timezone.now(),
                )
        except IntegrityError:
            continue  # another request created it in between: loop and return that one
        _enqueue(pred.pk, failed)
        return pred
    raise RuntimeError("could not create or find the prediction")  # pragma: no cover - needs 3 races in a row


def _is_user(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


def request_predictions(model_version: ModelVersion, image_ids=None, user=None) -> list[Prediction]:
    """Queue a prediction of ``model_version`` for each image (``None``: every image of its project).

    Returns one Prediction per image, in the order of ``image_ids`` (or of the images' ids). An image
    that already has a queued or running prediction by this version gets that one back (no second job);
    a running one whose worker died (no heartbeat for ``LABSEG_HEARTBEAT_TIMEOUT`` s) is failed and
    replaced. Unknown ids, or images of another project, raise a ValidationError (400).

    When the broker cannot be reached the new predictions are failed with a message and, if this call
    committed them itself (not inside a caller's transaction), ``ServiceUnavailable`` (503) is raised.
    """
    failed: list[int] = []
    with transaction.atomic():
        preds = _request_predictions(model_version, image_ids, user, failed)
    # The enqueue hooks ran when the block above committed, unless a caller's transaction is still open
    # (then they run at its commit and only fail the rows).
    if failed:
        raise ServiceUnavailable(
            f"The prediction queue could not be reached: {len(failed)} prediction(s) were not started (marked "
            "failed). Ask your administrator to check the broker (Redis), then try again.",
            code="queue_unavailable", extra={"failed_predictions": sorted(failed)})
    return preds


def _request_predictions(model_version: ModelVersion, image_ids, user, failed: list[int]) -> list[Prediction]:
    images = Image.objects.filter(project_id=model_version.project_id)
    if image_ids is None:
        ordered = list(images.order_by("id"))
    else:
        try:
            ids = [int(i) for i in image_ids]
        except (TypeError, ValueError) as exc:
            raise ValidationError({"image_ids": "Image ids must be integers."}) from exc
        by_id = {im.pk: im for im in images.filter(pk__in=ids)}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ValidationError({"image_ids": f"Not images of this project: {missing[:20]}"})
        ordered = [by_id[i] for i in dict.fromkeys(ids)]
    return [_request_one(model_version, image, user, failed) for image in ordered]


def auto_predict(model_version: ModelVersion) -> list[Prediction]:
    """After a successful training run: predict every image of the project if LABSEG_AUTO_PREDICT."""
    if not settings.LABSEG_AUTO_PREDICT:
        return []
    return request_predictions(model_version)


def on_version_trained(sender, version: ModelVersion, **_kwargs) -> None:
    """Receiver of ``apps.training.signals.version_trained`` (connected in ``apps.py``): auto-predict. A
    failure is logged: the version is stored, and predictions can be asked for again."""
    try:
        auto_predict(version)
    except Exception:  # noqa: BLE001
        log.exception("auto-predict of version %s failed", version.pk)


def claim_prediction(prediction_id: int, worker: str) -> bool:
    """queued -> running with one conditional UPDATE: a redelivered message can never run it twice."""
    return jobs.claim(PREDICTIONS, prediction_id, worker)


def heartbeat(prediction_id: int, worker: str) -> bool:
    """Say the worker is alive (without touching progress); False when the prediction is no longer its own."""
    return jobs.touch(PREDICTIONS, prediction_id, worker)


def report_progress(prediction_id: int, progress: float, worker: str) -> None:
    """Write progress (0..1) with a heartbeat; ``PredictionLost`` when it is no longer running for ``worker``."""
    jobs.report(PREDICTIONS, prediction_id, worker, progress)


def recover_stale_predictions(timeout_s: float | None = None) -> dict[str, list[int]]:
    """Predictions whose worker died: re-queued once, then failed (``labseg.jobs.service.recover_stale``)."""
    return jobs.recover_stale(PREDICTIONS, timeout_s)


def recover_lost_predictions(timeout_s: float | None = None, *, at_worker_start: bool = False) -> dict[str, list[int]]:
    """Queued predictions whose message no worker received: re-sent once, then failed (``jobs.recover_lost``)."""
    return jobs.recover_lost(PREDICTIONS, timeout_s, at_worker_start=at_worker_start)


def recover_predictions(*, at_worker_start: bool = False) -> dict[str, dict[str, list[int]]]:
    """Both recoveries of predictions (the beat task ``jobs.recover`` runs them for every kind)."""
    return jobs.recover(PREDICTIONS, at_worker_start=at_worker_start)


def weight_map_of(image: Image, *, w0: float = 10.0, sigma: float = 5.0):
    """The training weight map (``labseg.ml.weights.weight_map``) of the image's current annotation.

    Cached per annotation version (``apps.annotate.weight_maps``: the same files a training run uses), so
    the viewer's many region requests compute it once. NotFound without labelled pixels.
    """
    from rest_framework.exceptions import NotFound

    from apps.annotate.masks import annotation_arrays
    from apps.annotate.models import Annotation
    from apps.annotate.weight_maps import cached_weight_map

    annotation = Annotation.objects.filter(image=image).first()
    classes, instances = annotation_arrays(annotation) if annotation is not None else (None, None)
    if classes is None or not classes.any():
        raise NotFound("This image has no annotation yet: paint some labels first.")
    return cached_weight_map(annotation, classes, instances, w0, sigma)[0]


def accept_prediction(prediction: Prediction, user, version: int, keep_labels: bool = False):
    """Copy a finished prediction into the image's annotation as a new version (409 if ``version`` is stale).

    Uses the annotation save service (so the overwritten state goes to the history and the usual
    optimistic-concurrency rule applies). ``keep_labels``: where the current annotation has labels,
    keep them instead of the prediction's (the user's strokes are ground truth).
    """
    from apps.annotate.masks import annotation_arrays
    from apps.annotate.models import Annotation, Role
    from apps.annotate.selectors import get_image_for
    from apps.annotate.services import save_masks

    from .rendering import read_map

    classes = read_map(prediction.classes_file.path)
    instances = read_map(prediction.instances_file.path)
    if keep_labels:
        current = Annotation.objects.filter(image_id=prediction.image_id).first()
        old_classes, old_instances = annotation_arrays(current) if current is not None else (None, None)
        if old_classes is not None:
            mine = old_classes > 0
            classes = np.where(mine, old_classes, classes).astype(np.uint8)
            if old_instances is not None:
                offset = int(instances.max(initial=0))
                shifted = np.where(old_instances > 0, old_instances.astype(np.int64) + offset, 0)
                instances = np.where(mine, shifted, instances)
    instances = instances.astype(np.uint32 if instances.max(initial=0) > 65535 else np.uint16)

    image = get_image_for(user, prediction.image_id, Role.ANNOTATOR)
    return save_masks(image, user=user, version=version, classes=classes, instances=instances, strokes=[])


def annotation_summary(annotation) -> dict:
    """What the accept endpoint answers: the new annotation version and its labelled pixel count."""
    return {"image": annotation.image_id, "version": annotation.version, "labelled_pixels": annotation.labelled_pixels,
            "updated_by": annotation.updated_by.username if annotation.updated_by_id else None,
            "updated_at": annotation.updated_at.isoformat() if annotation.updated_at else None}


# --- model exports (TorchScript / ONNX, made by a worker) -------------------------------------------
def request_export(version: ModelVersion, fmt: str, user=None) -> ModelExport:
    """The version's export as ``fmt``: the newest finished one, else the queued or running one, else a new
    queued one (enqueued on commit). Asking again while one runs returns it; never two at once (the
    partial unique constraint settles a race). ValidationError (400) for an unknown format;
    ServiceUnavailable (503) when the broker cannot be reached (the new export is marked failed)."""
    if fmt not in ExportFormat.values:
        raise ValidationError({"format": f"format must be one of {', '.join(ExportFormat.values)}"})
    mine = ModelExport.objects.filter(model_version=version, format=fmt)
    for _attempt in range(3):
        done = mine.filter(status=PredictionStatus.SUCCEEDED).exclude(file="").order_by("-id").first()
        active = mine.filter(status__in=ACTIVE_STATUSES).order_by("-id").first()
        if done is not None or active is not None:
            return done or active
        failed: list[int] = []
        try:
            with transaction.atomic():
                export = ModelExport.objects.create(project_id=version.project_id, model_version=version, format=fmt,
                                                    created_by=user if _is_user(user) else None,
                                                    enqueued_at=timezone.now())
                jobs.enqueue(EXPORTS, export.pk, failed)
        except IntegrityError:
            continue  # a concurrent request created it: loop and return that one
        if failed:
            raise ServiceUnavailable(
                "The export queue could not be reached, so the export was not started (it is marked failed). "
                "Ask your administrator to check the broker (Redis), then try again.",
                code="queue_unavailable", extra={"export_id": export.pk})
        return export
    raise RuntimeError("could not create or find the export")  # pragma: no cover - needs 3 races in a row


def claim_export(export_id: int, worker: str) -> bool:
    return jobs.claim(EXPORTS, export_id, worker)


def run_export(export_id: int, worker: str) -> None:
    """The worker's part: export the version (torch), store the file, finish, all only while it is ours."""
    from django.core.files.base import ContentFile

    from .exports import export_model

    export = ModelExport.objects.select_related("model_version__project").get(pk=export_id)
    jobs.report(EXPORTS, export.pk, worker, 0.1)
    data, filename, _content_type = export_model(export.model_version, export.format)
    jobs.report(EXPORTS, export.pk, worker, 0.9)
    export.file.save(filename, ContentFile(data), save=False)
    if not jobs.finish_if_ours(EXPORTS, export.pk, worker, file=export.file.name, filename=filename):
        export.file.delete(save=False)  # lost meanwhile: the attempt that owns it writes its own file


def fail_export(export_id: int, error: str, worker: str) -> None:
    jobs.fail(EXPORTS, export_id, error, worker=worker)
