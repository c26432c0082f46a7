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
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.annotate.models import Image
from apps.training.models import ModelVersion

from labseg.api import ServiceUnavailable

from .models import Prediction, PredictionStatus

log = logging.getLogger(__name__)

ACTIVE_PREDICTION_STATUSES = (PredictionStatus.QUEUED, PredictionStatus.RUNNING)


ENQUEUE_ERROR = ("The prediction queue could not be reached ({}). Ask your administrator to check the broker "
                 "(Redis) and ask for the prediction again.")


def _enqueue(prediction_id: int, failed: list[int] | None = None) -> None:
    """Send the prediction task once the surrounding transaction commits (never before the row exists).

    If the broker cannot be reached the prediction is failed with a message at once (a queued row that no
    message will ever claim would stay "queued" forever) and its id is appended to ``failed``, so the caller
    can answer 503; the other predictions of the same request are still sent.
    """
    from .tasks import predict

    def send() -> None:
        try:
            predict.delay(prediction_id)
        except Exception as exc:  # noqa: BLE001 - kombu/redis raise many kinds of connection errors
            log.exception("could not enqueue prediction %s", prediction_id)
            fail_prediction(prediction_id, ENQUEUE_ERROR.format(type(exc).__name__))
            if failed is not None:
                failed.append(prediction_id)

    transaction.on_commit(send)


def _is_stale(prediction: Prediction) -> bool:
    """A running prediction whose worker stopped writing heartbeats (the worker died)."""
    if prediction.status != PredictionStatus.RUNNING:
        return False
    last = prediction.heartbeat_at or prediction.started_at or prediction.created_at
    return last < timezone.now() - timedelta(seconds=settings.LABSEG_HEARTBEAT_TIMEOUT)


def fail_prediction(prediction_id: int, error: str, worker: str | None = None) -> None:
    """Mark a prediction failed with a message a user can read (only if it is not already finished).

    With ``worker`` (the task's own failure) only while that worker still runs it: a worker that lost the
    prediction (recovered as stale, re-queued, maybe running elsewhere) must not fail the next attempt.
    """
    rows = (_running(prediction_id, worker) if worker is not None
            else Prediction.objects.filter(pk=prediction_id, status__in=ACTIVE_PREDICTION_STATUSES))
    rows.update(status=PredictionStatus.FAILED, error=error[:2000], finished_at=timezone.now())


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
        except (TypeError, ValueError):
            raise ValidationError({"image_ids": "Image ids must be integers."})
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


def claim_prediction(prediction_id: int, worker: str = "") -> bool:
    """queued -> running with one conditional UPDATE: a redelivered message can never run it twice."""
    now = timezone.now()
    return bool(
        Prediction.objects.filter(pk=prediction_id, status=PredictionStatus.QUEUED).update(
            status=PredictionStatus.RUNNING, started_at=now, heartbeat_at=now, progress=0.0, worker=worker[:200],
            attempts=F("attempts") + 1,
        )
    )


class PredictionLost(Exception):
    """The prediction is no longer running for this worker: recovered as stale (re-queued, maybe claimed by
    another worker) or deleted. The worker stops at its next progress write, as a training run does, instead
    of computing on unseen (no heartbeat) while the jobs queued behind it look unattended."""


def _running(prediction_id: int, worker: str | None = None):
    rows = Prediction.objects.filter(pk=prediction_id, status=PredictionStatus.RUNNING)
    return rows if worker is None else rows.filter(worker=worker[:200])


def heartbeat(prediction_id: int, worker: str | None = None) -> bool:
    """Say the worker is alive (without touching progress); False when the prediction is no longer its own."""
    return bool(_running(prediction_id, worker).update(heartbeat_at=timezone.now()))


MAX_ATTEMPTS = 2


def recover_stale_predictions(timeout_s: float | None = None) -> dict[str, list[int]]:
    """Running predictions without a heartbeat for ``timeout_s`` (LABSEG_HEARTBEAT_TIMEOUT): their worker
    died. Re-queued (a new message) if claimed fewer than MAX_ATTEMPTS times, else failed with a message.
    Each change is one conditional UPDATE, so a live worker's final write is never overwritten."""
    timeout_s = settings.LABSEG_HEARTBEAT_TIMEOUT if timeout_s is None else timeout_s
    cutoff = timezone.now() - timedelta(seconds=timeout_s)
    out: dict[str, list[int]] = {"requeued": [], "failed": []}
    stale = Prediction.objects.filter(status=PredictionStatus.RUNNING, heartbeat_at__lt=cutoff)
    for pred_id, attempts in stale.values_list("id", "attempts"):
        same = Prediction.objects.filter(pk=pred_id, status=PredictionStatus.RUNNING, heartbeat_at__lt=cutoff)
        if attempts < MAX_ATTEMPTS:
            with transaction.atomic():
                if same.update(status=PredictionStatus.QUEUED, progress=0.0, worker="", enqueued_at=timezone.now(),
                               resends=0):
                    _enqueue(pred_id)
                    out["requeued"].append(pred_id)
        elif same.update(status=PredictionStatus.FAILED, finished_at=timezone.now(),
                         error="The worker running this prediction stopped responding twice; ask for it again."):
            out["failed"].append(pred_id)
    return out


def recover_lost_predictions(timeout_s: float | None = None, *, at_worker_start: bool = False) -> dict[str, list[int]]:
    """Queued predictions whose message no worker received: re-sent once, then failed (``labseg.lost_messages``).

    The timeout (``LABSEG_QUEUED_TIMEOUT``) counts only while no GPU job (prediction or training run) writes
    heartbeats: predictions waiting behind others on a busy GPU worker are never failed for the queue's length.
    """
    from labseg.lost_messages import recover_lost, unclaimed_error

    timeout_s = settings.LABSEG_QUEUED_TIMEOUT if timeout_s is None else timeout_s
    return recover_lost(Prediction, send=_enqueue, timeout_s=timeout_s, at_worker_start=at_worker_start,
                        fail_fields={"error": unclaimed_error("prediction", timeout_s, "ask for the prediction again")})


def recover_predictions(*, at_worker_start: bool = False) -> dict[str, dict[str, list[int]]]:
    """Both recoveries (beat task and worker start): predictions whose worker died, and those no worker received."""
    return {"stale": recover_stale_predictions(),
            "lost": recover_lost_predictions(at_worker_start=at_worker_start)}


def report_progress(prediction_id: int, progress: float, worker: str | None = None) -> None:
    """Write progress (0..1) together with a heartbeat; ``PredictionLost`` when it is no longer running for
    ``worker`` (any worker when None)."""
    if not _running(prediction_id, worker).update(progress=max(0.0, min(1.0, float(progress))),
                                                   heartbeat_at=timezone.now()):
        raise PredictionLost(f"prediction {prediction_id} is no longer running for {worker or 'this worker'}")


def weight_map_of(image: Image, *, w0: float = 10.0, sigma: float = 5.0):
    """The training weight map (``labseg.ml.weights.weight_map``) of the image's current annotation.

    Cached per annotation version in the training pipeline's weight cache (the same files a training
    run uses), so the viewer's many region requests compute it once. NotFound without labelled pixels.
    """
    from rest_framework.exceptions import NotFound

    from apps.annotate.masks import annotation_arrays
    from apps.annotate.models import Annotation
    from apps.training.pipeline import Example, cached_weight_map

    annotation = Annotation.objects.filter(image=image).first()
    classes, instances = annotation_arrays(annotation) if annotation is not None else (None, None)
    if classes is None or not classes.any():
        raise NotFound("This image has no annotation yet: paint some labels first.")
    example = Example(image=image, annotation=annotation, raw=None, classes=classes, instances=instances)
    return cached_weight_map(example, w0, sigma)[0]


def accept_prediction(prediction: Prediction, user, version: int, keep_labels: bool = False):
    """Copy a finished prediction into the image's annotation as a new version (409 if ``version`` is stale).

    Uses the annotation save service (so the overwritten state goes to the history and the usual
    optimistic-concurrency rule applies). ``keep_labels``: where the current annotation has labels,
    keep them instead of the prediction's (the user's strokes are ground truth).
    """
    import base64

    from apps.annotate.masks import annotation_arrays, encode_png
    from apps.annotate.models import Annotation
    from apps.annotate.services import save_annotation

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

    def b64(mask) -> str:
        return base64.b64encode(encode_png(mask)).decode()

    return save_annotation(user=user, image_id=prediction.image_id, version=version, classes_png=b64(classes),
                           instances_png=b64(instances), strokes=[])


def annotation_summary(annotation) -> dict:
    """What the accept endpoint answers: the new annotation version and its labelled pixel count."""
    return {"image": annotation.image_id, "version": annotation.version, "labelled_pixels": annotation.labelled_pixels,
            "updated_by": annotation.updated_by.username if annotation.updated_by_id else None,
            "updated_at": annotation.updated_at.isoformat() if annotation.updated_at else None}
