"""Queued jobs (training runs, predictions) whose broker message was lost: re-sent once, then failed.

A job row is ``queued`` from the moment its message is sent (``enqueued_at``) until a worker claims it
with one conditional ``UPDATE ... WHERE status = 'queued'``. If the message never reaches a worker (Redis
restarted without persistence, a queue purged, no worker for the ``gpu`` queue) the row would stay
queued forever, and a queued training run blocks its project's next run (409).

Rule (``recover_lost``, called by the apps' beat task every 60 s and on every worker start):

* The clock of a queued row counts only while the GPU queue is idle: a row is **overdue** when both its
  last enqueue and the newest heartbeat any GPU job wrote (a claim, a progress write, a finish; training
  runs and predictions share the ``gpu`` queue) are older than ``LABSEG_QUEUED_TIMEOUT`` seconds. A
  row waiting behind a long training run or a thousand predictions is therefore never touched: while
  a worker works, heartbeats are seconds old; the clock starts when the last of them stops.
* An overdue row is **re-sent once** (``resends`` 0 -> 1, ``enqueued_at`` = now): a lost message
  costs one timeout. If it is overdue again, it is **failed** with a message that names the likely
  cause (no worker for the ``gpu`` queue). A broker error during the re-send fails it at once.
* On worker start nothing is failed (the starting worker may be about to take it): an overdue row is
  re-sent if it was not yet, else its clock restarts.

A re-send can deliver a job twice (the original message may only have been slow). That is safe:
only one delivery wins the conditional claim, the other finds the row no longer queued and does
nothing. Each transition here is itself one conditional UPDATE (on status, resends and the old
timestamp), so two recoverers running at once never re-send or fail a row twice.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

log = logging.getLogger(__name__)


def gpu_last_active() -> datetime | None:
    """The newest heartbeat of any GPU job (training run or prediction, whatever its status now)."""
    from apps.inference.models import Prediction
    from apps.training.models import TrainingRun

    stamps = [m.objects.aggregate(m=Max("heartbeat_at"))["m"] for m in (TrainingRun, Prediction)]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{round(seconds / 60)} minutes"
    return f"{int(seconds)} seconds"


def unclaimed_error(kind: str, timeout_s: float, again: str) -> str:
    return (f"No worker took this {kind} within {_duration(2 * timeout_s)} (its message was sent twice, and no GPU "
            f"job ran meanwhile). Is a worker for the gpu queue running? Ask your administrator to start one "
            f"(celery -A labseg worker -Q gpu), then {again}.")


def recover_lost(model: type[models.Model], *, send: Callable[[int], None], fail_fields: dict,
                 resend_fields: dict | None = None, timeout_s: float | None = None, at_worker_start: bool = False,
                 now: datetime | None = None) -> dict[str, list[int]]:
    """Re-send or fail the overdue queued rows of ``model`` (see the module docstring).

    ``send(pk)`` enqueues the job on commit (and fails the row itself if the broker is unreachable);
    ``fail_fields`` / ``resend_fields`` are the extra columns written on failure / re-send.
    Returns ``{"resent": [...], "failed": [...], "restarted": [...]}``.
    """
    timeout_s = settings.LABSEG_QUEUED_TIMEOUT if timeout_s is None else timeout_s
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=timeout_s)
    out: dict[str, list[int]] = {"resent": [], "failed": [], "restarted": []}
    last_active = gpu_last_active()
    if last_active is not None and last_active >= cutoff:
        return out  # a GPU worker was busy within the timeout: the queue moves, nothing is overdue
    overdue = Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff)
    queued = model._default_manager.filter(overdue, status="queued")
    for pk, resends in list(queued.values_list("pk", "resends")):
        same = model._default_manager.filter(overdue, pk=pk, status="queued", resends=resends)
        if resends < 1:
            with transaction.atomic():
                if same.update(resends=F("resends") + 1, enqueued_at=now, **(resend_fields or {})):
                    send(pk)  # on commit; a broker error fails the row with a message
                    out["resent"].append(pk)
        elif at_worker_start:
            if same.update(enqueued_at=now):
                out["restarted"].append(pk)
        elif same.update(status="failed", finished_at=now, **fail_fields):
            out["failed"].append(pk)
    if any(out.values()):
        log.warning("queued %s without a worker: %s", model._meta.verbose_name_plural, out)
    return out
