"""The abstract job row that every background job model extends (see ``labseg.jobs.service``)."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """A unit of background work, claimed by one worker with one conditional UPDATE (queued -> running).

    The worker that claimed it writes its name into ``worker``; every later write of that worker is
    conditional on ``status = running AND worker = <its name>``, so a worker that lost the job (recovered as
    stale, re-queued, claimed elsewhere) changes nothing and stops at its next write.
    """

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    error = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="times a worker claimed it")
    # indexed: the newest heartbeat of any GPU job tells the lost-message check whether the queue moves
    heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="when its message was last sent")
    resends = models.PositiveSmallIntegerField(
        default=0, help_text="times its message was sent again because no worker took it (at most 1 per queueing)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES
