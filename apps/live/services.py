"""Write operations of live training sessions (issue 13); the worker's loop is ``runner.py``.

A session is a ``labseg.jobs`` job of kind ``LIVE`` on the ``live`` Celery queue::

    start_session (API)   -> queued     (enqueued on commit); an active session of the same user and image
                                         is stopped first (stop_reason "taken_over"): one per user and image
    claim (worker)        -> running    (jobs.claim: ONE conditional UPDATE queued->running)
    put_draft / heartbeat               the page's heartbeat (browser_seen_at) + its unsaved draft
    worker writes                       step/loss/overlay/checkpoint, each conditional on owning the row
                                        (jobs.owned): a stopped or taken-over session changes nothing
    stop_session (DELETE) -> cancelled  at once (not via cancel_requested): the worker loses the row at its
                                        next write and stops; the unique constraint frees at once
    browser gone          -> cancelled  by the worker, LABSEG_LIVE_HEARTBEAT_TIMEOUT s after the last heartbeat
    keep_session                        the newest checkpoint -> a new ModelVersion (training's create_version)

A worker that died is recovered by the jobs beat (re-queued once, then failed), like any job.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import NotFound, Throttled, ValidationError

from apps.annotate.masks import encode_png
from apps.annotate.models import Image, Role
from apps.annotate.selectors import get_image_for, require_role
from apps.annotate.services import decode_masks
from apps.training import services as training
from apps.training.models import ModelVersion
from labseg.api import Conflict, ServiceUnavailable
from labseg.jobs import service as jobs
from labseg.jobs.models import ACTIVE_STATUSES, JobStatus

from .models import LiveSession, StopReason

log = logging.getLogger(__name__)

LIVE = jobs.register(jobs.JobKind(
    name="live", model=LiveSession, task="apps.live.tasks.run_live", noun="live training session",
    queue_noun="live training", again="turn Live on again", queue="live",
    crash_advice="Ask your administrator to check the worker of the live queue.",
))
LiveStopped = jobs.JobStopped  # jobs.JobLost when the session was stopped, taken over or recovered


# --- reading ------------------------------------------------------------------------------------
def get_session_for(user, image_id: int, session_id: int, min_role: str = Role.ANNOTATOR) -> LiveSession:
    """The user's own session ``session_id`` on image ``image_id``: 404 for anyone else's (or a stranger),
    403 for a member below ``min_role``."""
    image = get_image_for(user, image_id, Role.VIEWER)
    session = LiveSession.objects.select_related("image", "image__project", "parent_version").filter(
        pk=session_id, image=image, created_by=user).first()
    if session is None:
        raise NotFound("Live session not found.")
    require_role(user, image.project_id, min_role)
    return session


def active_session_for(user, image_id: int) -> LiveSession:
    """The user's queued or running session on the image (404 when none, or not a member)."""
    image = get_image_for(user, image_id, Role.VIEWER)
    session = LiveSession.objects.filter(image=image, created_by=user, status__in=ACTIVE_STATUSES).first()
    if session is None:
        raise NotFound("You have no active live session on this image.")
    return session


def checkpoint_path(session: LiveSession) -> Path | None:
    if not session.checkpoint_name:
        return None
    path = Path(default_storage.path(session.checkpoint_name))
    return path if path.exists() else None


# --- input --------------------------------------------------------------------------------------
def parse_region(value: Any, image: Image) -> dict:
    """``{x, y, width, height}`` inside the image, at most LABSEG_LIVE_MAX_REGION a side (400 otherwise);
    None / missing: the image's top-left corner of at most that size."""
    limit = int(settings.LABSEG_LIVE_MAX_REGION)
    if value is None:
        return {"x": 0, "y": 0, "width": min(image.width, limit), "height": min(image.height, limit)}
    if not isinstance(value, dict):
        raise ValidationError({"region": "expected an object {x, y, width, height} in image pixels"})
    out = {}
    for key in ("x", "y", "width", "height"):
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValidationError({"region": f"region.{key} must be an integer"})
        out[key] = v
    if out["x"] < 0 or out["y"] < 0 or out["width"] < 1 or out["height"] < 1:
        raise ValidationError({"region": "x and y must be >= 0, width and height >= 1"})
    if out["x"] + out["width"] > image.width or out["y"] + out["height"] > image.height:
        raise ValidationError({"region": f"the region must lie inside the image ({image.width}x{image.height})"})
    if out["width"] > limit or out["height"] > limit:
        raise ValidationError({"region": f"the region may be at most {limit} px a side (LABSEG_LIVE_MAX_REGION)"})
    return out


def live_config() -> dict:
    """TrainConfig overrides of live networks trained from scratch (LABSEG_LIVE_CONFIG, JSON)."""
    raw = settings.LABSEG_LIVE_CONFIG
    return json.loads(raw) if raw else {}


def _parent_for(image: Image, parent: Any) -> ModelVersion | None:
    """``parent``: a version id of the image's project, None (from scratch), or "active" (the default)."""
    project = image.project
    if parent == "active":
        return ModelVersion.objects.filter(project=project, is_active=True).first()
    if parent is None:
        return None
    if isinstance(parent, bool) or not isinstance(parent, int):
        raise ValidationError({"parent": "a model version id of this project, or null to start from scratch"})
    version = ModelVersion.objects.filter(pk=parent, project=project).first()
    if version is None:
        raise ValidationError({"parent": f"model version {parent} is not a version of this project"})
    classes = (version.architecture or {}).get("num_classes")
    want = max(2, training.project_num_classes(project))
    if classes is not None and int(classes) != want:
        raise ValidationError({"parent": f"version {version.number} predicts {classes} classes, this project "
                                         f"has {want}: start from scratch (parent null)"})
    channels = (version.architecture or {}).get("in_channels")
    if channels is not None and int(channels) != image.channels:
        raise ValidationError({"parent": f"version {version.number} expects {channels}-channel images, this "
                                         f"image has {image.channels}"})
    return version


# --- the page's requests ------------------------------------------------------------------------
def _end(rows, reason: str) -> int:
    """Active session rows -> cancelled with ``reason`` at once (the worker loses them at its next write)."""
    return rows.filter(status__in=ACTIVE_STATUSES).update(
        status=JobStatus.CANCELLED, stop_reason=reason, cancel_requested=True, finished_at=timezone.now())


def start_session(user, image_id: int, *, parent: Any = "active", region: Any = None) -> LiveSession:
    """A new queued session of ``user`` on the image; the user's active session on it is taken over."""
    image = get_image_for(user, image_id, Role.ANNOTATOR)
    version = _parent_for(image, parent)
    region = parse_region(region, image)
    now = timezone.now()
    failed: list[int] = []
    try:
        with transaction.atomic():
            Image.objects.select_for_update().filter(pk=image.pk).first()  # two starts of one image queue up
            taken = _end(LiveSession.objects.filter(image=image, created_by=user), StopReason.TAKEN_OVER)
            session = LiveSession.objects.create(
                image=image, created_by=user, parent_version=version, region=region, browser_seen_at=now,
                enqueued_at=now)
            jobs.enqueue(LIVE, session.pk, failed)
    except IntegrityError as exc:  # a concurrent start won the unique constraint
        raise Conflict("Another live session of yours on this image started at the same moment; try again.",
                       code="live_conflict") from exc
    if failed:  # the broker is down: the row was failed with a message (jobs.enqueue)
        raise ServiceUnavailable(jobs.enqueue_error(LIVE, ConnectionError("broker")), code="broker_unavailable",
                                 extra={"session": session.pk})
    if taken:
        log.info("live session %s on image %s took over %s session(s)", session.pk, image.pk, taken)
    return session


def _active(session: LiveSession) -> None:
    if session.status not in ACTIVE_STATUSES:
        why = StopReason(session.stop_reason).label if session.stop_reason else session.status
        raise Conflict(f"This live session has ended ({why}); start a new one.", code="live_ended",
                       extra={"state": session.status, "stop_reason": session.stop_reason})


def put_draft(user, image_id: int, session_id: int, *, classes_png: Any = None, instances_png: Any = None,
              region: Any = None) -> LiveSession:
    """The page's heartbeat; with masks also its draft (validated like an annotation save: 400 / 413), at
    most once per LABSEG_LIVE_DRAFT_INTERVAL_MS (faster: 429); with ``region`` the visible region too."""
    session = get_session_for(user, image_id, session_id)
    _active(session)
    image = session.image
    fields: dict = {"browser_seen_at": timezone.now()}
    if region is not None:
        fields["region"] = parse_region(region, image)
    rows = LiveSession.objects.filter(pk=session.pk, status__in=ACTIVE_STATUSES)
    if classes_png not in (None, "") or instances_png not in (None, ""):
        classes, instances = decode_masks(image, classes_png, instances_png)
        now = timezone.now()
        interval = timedelta(milliseconds=int(settings.LABSEG_LIVE_DRAFT_INTERVAL_MS))
        fields.update(
            draft_classes=encode_png(classes) if classes is not None else None,
            draft_instances=encode_png(instances) if instances is not None and instances.any() else None,
            draft_version=F("draft_version") + 1, draft_at=now)
        rows = rows.filter(Q(draft_at__isnull=True) | Q(draft_at__lte=now - interval))
        if not rows.update(**fields):
            session.refresh_from_db()
            _active(session)
            wait = (session.draft_at + interval - now).total_seconds() if session.draft_at else 1.0
            raise Throttled(wait=max(wait, 0.05), detail=(
                f"Drafts are accepted at most every {interval.total_seconds():g} s "
                "(LABSEG_LIVE_DRAFT_INTERVAL_MS); send the newest one again shortly."))
    elif not rows.update(**fields):
        session.refresh_from_db()
        _active(session)
    session.refresh_from_db()
    return session


def set_region(user, image_id: int, session_id: int, region: Any) -> LiveSession:
    """The visible region changed (pan/zoom): the next overlay covers it. Counts as a heartbeat."""
    session = get_session_for(user, image_id, session_id)
    _active(session)
    region = parse_region(region, session.image)
    LiveSession.objects.filter(pk=session.pk, status__in=ACTIVE_STATUSES).update(
        region=region, browser_seen_at=timezone.now())
    session.refresh_from_db()
    return session


def stop_session(user, image_id: int, session_id: int) -> LiveSession:
    """Live off: the session ends at once (idempotent; an ended session stays as it ended)."""
    session = get_session_for(user, image_id, session_id)
    _end(LiveSession.objects.filter(pk=session.pk), StopReason.STOPPED)
    session.refresh_from_db()
    return session


def keep_session(user, image_id: int, session_id: int, *, name: str = "") -> ModelVersion:
    """Save the session's newest checkpoint as a new ModelVersion (parent = the version it started from)
    with the provenance of what that checkpoint had seen; running or ended sessions alike."""
    session = get_session_for(user, image_id, session_id)
    path = checkpoint_path(session)
    if path is None:
        raise Conflict("The live network has not learnt anything yet (no checkpoint): paint a few strokes of "
                       "background and of an object class, wait for the overlay, then keep it.",
                       code="live_nothing_to_keep")
    # lazy: torch only when someone keeps a network
    from labseg.ml.train import load_checkpoint

    try:
        _, checkpoint = load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - a half-written file cannot happen (atomic replace); a bug can
        raise Conflict(f"The live network's checkpoint could not be read ({exc}); try again.",
                       code="live_checkpoint") from exc
    provenance = {**session.checkpoint_provenance, "live_session": session.pk,
                  "parent_version": session.parent_version.number if session.parent_version else None,
                  "code_version": training.code_version()}
    return training.create_version(
        session.image.project, user, checkpoint_path=path, parent=session.parent_version,
        architecture=dict(checkpoint.get("model_config") or {}), config=dict(checkpoint.get("train_config") or {}),
        provenance=provenance, name=name or f"Live on {session.image.original_filename}")


# --- the worker's writes (each conditional on owning the session) -------------------------------------
def claim(session_id: int, worker: str) -> bool:
    return jobs.claim(LIVE, session_id, worker)


def beat(session_id: int, worker: str, **fields) -> None:
    """Heartbeat + fields; raises ``jobs.JobLost`` when the session was stopped, taken over or recovered."""
    jobs.beat(LIVE, session_id, worker, **fields)


def finish(session_id: int, worker: str, reason: str) -> bool:
    return jobs.finish_if_ours(LIVE, session_id, worker, status=JobStatus.CANCELLED, stop_reason=reason)


def fail(session_id: int, error: str, worker: str) -> bool:
    return jobs.fail(LIVE, session_id, error, worker=worker)


def recover_sessions(*, at_worker_start: bool = False) -> dict:
    return jobs.recover(LIVE, at_worker_start=at_worker_start)
