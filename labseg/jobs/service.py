"""Every transition of a background job, written once for all kinds (training runs, predictions, exports).

Lifecycle of a row of any ``JobKind``::

    (create, queued) + enqueue     the task message is sent on commit; a broker error fails the row at once
    claim (worker)     -> running  ONE conditional UPDATE ... WHERE status = 'queued': never run twice
    beat / report      heartbeat (+ progress, status line); JobLost when the row is no longer the
                       worker's, JobStopped("cancelled") when a cancel was asked for
    finish_if_ours     -> succeeded (or cancelled), only while running for this worker
    fail               -> failed (with ``worker``: only while running for it)
    cancel             queued -> cancelled at once; running -> ``cancel_requested`` (the worker stops)
    recover_stale      running without a heartbeat for LABSEG_HEARTBEAT_TIMEOUT s (its worker died):
                       re-queued once (attempt 2), then failed with a message; cancelled if asked to
    recover_lost       queued, its message lost (see below): re-sent once, then failed with a message

**Ownership.** Every write a worker makes after its claim is conditional on ``status = 'running' AND
worker = <its name>`` (``owned``). A worker that stalled past the heartbeat timeout and was recovered
(re-queued, maybe claimed by another worker) therefore changes nothing and stops at its next write.

**Lost messages** (``recover_lost``, from the one beat task every 60 s and on every worker start). The
clock of a queued row counts only while the GPU queue is idle: a row is *overdue* when both its last
enqueue and the newest heartbeat any GPU job wrote (all kinds share the ``gpu`` queue) are older than
``LABSEG_QUEUED_TIMEOUT`` s, so a row waiting behind a long run or a thousand predictions is never
touched. An overdue row is re-sent once (``resends`` 0 -> 1, ``enqueued_at`` = now); overdue again, it
is failed with a message naming the likely cause (no worker for the ``gpu`` queue). On worker start
nothing is failed (that worker may be about to take it): a row already re-sent gets its clock restarted.
A re-send may deliver a job twice; only one delivery wins the conditional claim. Each transition is one
conditional UPDATE on the values read, so two recoverers never act twice on a row.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import ACTIVE_STATUSES, JobStatus

log = logging.getLogger(__name__)


class JobStopped(Exception):
    """Raised at a worker's write to stop its job: ``reason`` is "cancelled", or "lost" (see JobLost)."""

    def __init__(self, reason: str = "cancelled"):
        super().__init__(reason)
        self.reason = reason


class JobLost(JobStopped):
    """The job is no longer running for this worker (recovered as stale, re-queued, claimed elsewhere, or
    deleted): the worker stops and writes nothing more."""

    def __init__(self, message: str = "lost"):
        super().__init__("lost")
        self.args = (message,)


@dataclass(frozen=True)
class JobKind:
    """What differs between job kinds; everything else is this module's."""

    name: str  # "training", "prediction", "export": the key in KINDS and in the recovery report
    model: type[models.Model]  # a concrete subclass of labseg.jobs.models.Job
    task: str  # dotted path of the Celery task taking the row's id (``.delay(pk)`` is sent on commit)
    noun: str  # "training run": what users read in messages
    queue_noun: str  # "training": "The training queue could not be reached"
    again: str  # "start the run again": what the user does after a failure we cannot fix
    crash_advice: str = "Ask your administrator to check the GPU worker."
    max_attempts: int = 2  # the first claim, and once more after its worker died
    status_line: bool = False  # the model has a ``message`` column (a line saying what the job does now)
    queue: str = "gpu"  # the Celery queue its task goes to: the lost-message check looks at that queue's jobs

    @property
    def objects(self):
        return self.model._default_manager

    def line(self, text: str) -> dict:
        """``{"message": text}`` for kinds with a status line, else nothing."""
        return {"message": text[:500]} if self.status_line else {}


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add a kind to the recovery beat (idempotent; an app registers its kinds when it is ready)."""
    KINDS[kind.name] = kind
    return kind


# --- sending ----------------------------------------------------------------------------------
def enqueue_error(kind: JobKind, exc: Exception) -> str:
    return (f"The {kind.queue_noun} queue could not be reached ({type(exc).__name__}). Ask your administrator "
            f"to check the broker (Redis), then {kind.again}.")


def enqueue(kind: JobKind, pk: int, failed: list[int] | None = None) -> None:
    """Send the task once the row is committed. If the broker cannot be reached the row is failed with a
    message at once (a queued row no message will ever claim would stay queued) and ``pk`` is appended to
    ``failed`` so that the caller can answer 503."""

    def send() -> None:
        try:
            import_string(kind.task).delay(pk)
        except Exception as exc:  # noqa: BLE001 - kombu/redis raise many kinds of connection errors
            log.exception("could not enqueue %s %s", kind.noun, pk)
            fail(kind, pk, enqueue_error(kind, exc))
            if failed is not None:
                failed.append(pk)

    transaction.on_commit(send)


# --- the worker's writes --------------------------------------------------------------------------
def owned(kind: JobKind, pk: int, worker: str):
    """The row while it is running for ``worker``: the filter of every write a worker makes."""
    return kind.objects.filter(pk=pk, status=JobStatus.RUNNING, worker=worker[:200])


def claim(kind: JobKind, pk: int, worker: str, **fields) -> bool:
    """queued -> running for ``worker`` with ONE conditional UPDATE; False when anyone else had it (or it was
    cancelled, finished or deleted): a redelivered message can never run a job twice."""
    now = timezone.now()
    return 1 == kind.objects.filter(pk=pk, status=JobStatus.QUEUED, cancel_requested=False).update(
        status=JobStatus.RUNNING, worker=worker[:200], started_at=now, heartbeat_at=now, progress=0.0,
        attempts=F("attempts") + 1, error="", **fields)


def beat(kind: JobKind, pk: int, worker: str, **fields) -> None:
    """Heartbeat (plus ``fields``); ``JobLost`` when the job is no longer ``worker``'s, ``JobStopped`` when a
    cancel was asked for (the caller ends it with ``finish_if_ours(..., status=CANCELLED)``)."""
    rows = owned(kind, pk, worker)
    if not rows.update(heartbeat_at=timezone.now(), **fields):
        raise JobLost(f"{kind.noun} {pk} is no longer running for {worker}")
    if rows.filter(cancel_requested=True).exists():
        raise JobStopped("cancelled")


def report(kind: JobKind, pk: int, worker: str, progress: float, **fields) -> None:
    """``beat`` with the progress (clamped to 0..1)."""
    beat(kind, pk, worker, progress=max(0.0, min(1.0, float(progress))), **fields)


def touch(kind: JobKind, pk: int, worker: str) -> bool:
    """Heartbeat only, from a helper thread: False (never an exception) when the job is no longer ours."""
    return bool(owned(kind, pk, worker).update(heartbeat_at=timezone.now()))


def lock_if_ours(kind: JobKind, pk: int, worker: str):
    """The row locked (SELECT ... FOR UPDATE) while it runs for ``worker``, else None. Inside a transaction:
    for a final write that creates other rows (a model version) only if the job is still ours."""
    return owned(kind, pk, worker).select_for_update().first()


def finish_if_ours(kind: JobKind, pk: int, worker: str, status: str = JobStatus.SUCCEEDED, **fields) -> bool:
    """running -> ``status`` (succeeded, or cancelled on a cancel) only while the job runs for ``worker``."""
    now = timezone.now()
    if status == JobStatus.SUCCEEDED:
        fields = {"progress": 1.0, "error": "", **fields}
    return bool(owned(kind, pk, worker).update(status=status, finished_at=now, heartbeat_at=now, **fields))


def fail(kind: JobKind, pk: int, error: str, worker: str | None = None, **fields) -> bool:
    """-> failed with a message a user can read. With ``worker`` (the task's own failure) only while the job
    runs for it: a worker that lost its job must not fail the next attempt. Without, any active job."""
    rows = (owned(kind, pk, worker) if worker is not None
            else kind.objects.filter(pk=pk, status__in=ACTIVE_STATUSES))
    return bool(rows.update(status=JobStatus.FAILED, error=error[:5000], finished_at=timezone.now(),
                            **kind.line("Failed"), **fields))


def cancel(kind: JobKind, pk: int) -> None:
    """A queued job ends at once; a running one gets ``cancel_requested`` and stops at its next beat."""
    kind.objects.filter(pk=pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, cancel_requested=True, finished_at=timezone.now(),
        **kind.line("Cancelled before it started"))
    kind.objects.filter(pk=pk, status=JobStatus.RUNNING).update(cancel_requested=True, **kind.line("Cancelling..."))


# --- recovery ---------------------------------------------------------------------------------------
def recover_stale(kind: JobKind, timeout_s: float | None = None) -> dict[str, list[int]]:
    """Running jobs whose worker died (no heartbeat for ``LABSEG_HEARTBEAT_TIMEOUT`` s) are never left running.

    A job that died on an attempt before ``max_attempts`` is **re-queued** (a restarted worker or a lost
    machine should not cost the lab its job); one that died on its last attempt is **failed** with a
    message (a job that kills its worker twice, e.g. out of host memory, would only do it again); one with
    ``cancel_requested`` is **cancelled**. Each change is conditional on the heartbeat read, so two
    recoverers never act twice and a live worker's final write is never overwritten.
    """
    timeout_s = settings.LABSEG_HEARTBEAT_TIMEOUT if timeout_s is None else timeout_s
    cutoff = timezone.now() - timedelta(seconds=timeout_s)
    out: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": []}
    stale = kind.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
    for pk, worker, attempts, cancelled, beat_at in list(
            stale.values_list("pk", "worker", "attempts", "cancel_requested", "heartbeat_at")):
        same = kind.objects.filter(pk=pk, status=JobStatus.RUNNING, heartbeat_at=beat_at)
        lost = f"The worker running this {kind.noun} ({worker}) stopped responding for more than {int(timeout_s)} s"
        now = timezone.now()
        if cancelled:
            if same.update(status=JobStatus.CANCELLED, finished_at=now, **kind.line("Cancelled")):
                out["cancelled"].append(pk)
        elif attempts < kind.max_attempts:
            with transaction.atomic():
                if same.update(status=JobStatus.QUEUED, worker="", progress=0.0, enqueued_at=now, resends=0,
                               **kind.line(f"{lost}; restarted automatically.")):
                    enqueue(kind, pk)
                    out["requeued"].append(pk)
        elif same.update(status=JobStatus.FAILED, finished_at=now, **kind.line("Failed"),
                         error=f"{lost}, twice. The worker process probably crashed (for example it ran out of "
                               f"memory). {kind.crash_advice}"):
            out["failed"].append(pk)
    if any(out.values()):
        log.warning("recovered stale %s: %s", kind.model._meta.verbose_name_plural, out)
    return out


def gpu_last_active(queue: str = "gpu") -> datetime | None:
    """The newest heartbeat of any job of any registered kind on ``queue`` (whatever its status now); a
    live session beating on the ``live`` queue says nothing about whether the ``gpu`` queue moves."""
    stamps = [k.objects.aggregate(m=Max("heartbeat_at"))["m"] for k in KINDS.values() if k.queue == queue]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def _duration(seconds: float) -> str:
    return f"{round(seconds / 60)} minutes" if seconds >= 120 else f"{int(seconds)} seconds"


def unclaimed_error(kind: JobKind, timeout_s: float) -> str:
    return (f"No worker took this {kind.noun} within {_duration(2 * timeout_s)} (its message was sent twice, and "
            f"no GPU job ran meanwhile). Is a worker for the gpu queue running? Ask your administrator to start "
            f"one (celery -A labseg worker -Q gpu), then {kind.again}.")


def recover_lost(kind: JobKind, timeout_s: float | None = None, *, at_worker_start: bool = False,
                 now: datetime | None = None) -> dict[str, list[int]]:
    """Re-send or fail the overdue queued jobs of ``kind`` (see the module docstring). A queued job with
    ``cancel_requested`` (a cancel that raced a re-queue) can never be claimed: it is cancelled."""
    timeout_s = settings.LABSEG_QUEUED_TIMEOUT if timeout_s is None else timeout_s
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=timeout_s)
    out: dict[str, list[int]] = {"resent": [], "failed": [], "restarted": [], "cancelled": []}
    for pk in list(kind.objects.filter(status=JobStatus.QUEUED, cancel_requested=True).values_list("pk", flat=True)):
        if kind.objects.filter(pk=pk, status=JobStatus.QUEUED).update(
                status=JobStatus.CANCELLED, finished_at=now, **kind.line("Cancelled before it started")):
            out["cancelled"].append(pk)
    last_active = gpu_last_active(kind.queue)
    if last_active is not None and last_active >= cutoff:
        return out  # a GPU worker was busy within the timeout: the queue moves, nothing is overdue
    overdue = Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff)
    queued = kind.objects.filter(overdue, status=JobStatus.QUEUED)
    for pk, resends in list(queued.values_list("pk", "resends")):
        same = kind.objects.filter(overdue, pk=pk, status=JobStatus.QUEUED, resends=resends)
        if resends < 1:
            with transaction.atomic():
                if same.update(resends=F("resends") + 1, enqueued_at=now, **kind.line(
                        "Waiting for a GPU worker (the job was sent again: no worker had taken it)")):
                    enqueue(kind, pk)  # on commit; a broker error fails the row with a message
                    out["resent"].append(pk)
        elif at_worker_start:
            if same.update(enqueued_at=now):
                out["restarted"].append(pk)
        elif same.update(status=JobStatus.FAILED, finished_at=now, error=unclaimed_error(kind, timeout_s),
                         **kind.line("Failed")):
            out["failed"].append(pk)
    if any(out.values()):
        log.warning("queued %s without a worker: %s", kind.model._meta.verbose_name_plural, out)
    return out


def recover(kind: JobKind, *, at_worker_start: bool = False) -> dict[str, dict[str, list[int]]]:
    """Both recoveries of one kind: jobs whose worker died, and jobs no worker received."""
    return {"stale": recover_stale(kind), "lost": recover_lost(kind, at_worker_start=at_worker_start)}


def recover_all(*, at_worker_start: bool = False) -> dict[str, dict[str, dict[str, list[int]]]]:
    """Every registered kind (the beat task and worker start). A kind whose recovery fails (the database
    restarting) does not keep the others from theirs; the first error is raised afterwards, so that the
    task shows it and a caller may retry (every step is a conditional UPDATE: running it again is safe)."""
    out, errors = {}, []
    for name, kind in list(KINDS.items()):
        try:
            out[name] = recover(kind, at_worker_start=at_worker_start)
        except Exception as exc:  # noqa: BLE001
            log.exception("recovery of %s jobs failed", name)
            errors.append(exc)
    if errors:
        raise errors[0]
    return out
