"""Live training sessions (issue 13): a U-Net that learns while the lab paints, one per user and image.

A session is a ``labseg.jobs`` job (claimed with one conditional UPDATE, worker heartbeats, recovery of a
dead worker). Besides the worker's heartbeat (``heartbeat_at``) it has the **browser's** heartbeat
(``browser_seen_at``): the worker stops the session when the page has not been heard from for
``LABSEG_LIVE_HEARTBEAT_TIMEOUT`` s. The page's unsaved draft and the newest overlay live on the row;
the network's latest checkpoint is a file (``checkpoint_name`` in the media storage) that *Keep* copies
into a new ``ModelVersion``.

Depends on annotate (images, masks) and training (model versions); neither knows this app.
"""
from __future__ import annotations

from django.db import models

from apps.annotate.models import Image
from apps.training.models import ModelVersion
from labseg.jobs.models import Job


class StopReason(models.TextChoices):
    NONE = "", "Running"
    STOPPED = "stopped", "Stopped by the user"
    TAKEN_OVER = "taken_over", "Taken over by a newer session (another tab)"
    BROWSER_GONE = "browser_gone", "The page stopped sending heartbeats"
    TIME_LIMIT = "time_limit", "Reached LABSEG_LIVE_MAX_SECONDS"


class LiveSession(Job):
    """One user's live training on one image. ``status`` is the session's state (queued / running /
    cancelled when stopped / failed); ``created_by`` is the owner of the session."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="live_sessions")
    parent_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="live_sessions")
    stop_reason = models.CharField(max_length=16, choices=StopReason.choices, blank=True, default="")
    step = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    region = models.JSONField(default=dict, blank=True, help_text="{x, y, width, height} of the visible region")
    browser_seen_at = models.DateTimeField(null=True, blank=True, help_text="the page's last heartbeat")
    # the page's unsaved draft (mask bytes as an annotation save stores them: PNG / LSNPYZ1)
    draft_classes = models.BinaryField(null=True, blank=True)
    draft_instances = models.BinaryField(null=True, blank=True)
    draft_version = models.PositiveIntegerField(default=0, help_text="+1 on every draft upload")
    draft_at = models.DateTimeField(null=True, blank=True)
    # the newest overlay the worker wrote
    overlay_png = models.BinaryField(null=True, blank=True)
    overlay_region = models.JSONField(default=dict, blank=True)
    overlay_step = models.PositiveIntegerField(default=0)
    overlay_draft_version = models.PositiveIntegerField(default=0, help_text="the newest draft trained on before it")
    overlay_at = models.DateTimeField(null=True, blank=True)
    # the newest checkpoint of the network (what Keep saves) and what it had seen
    checkpoint_name = models.CharField(max_length=500, blank=True, default="")
    checkpoint_step = models.PositiveIntegerField(default=0)
    checkpoint_provenance = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        constraints = [
            # One active session per user and image; a new one takes over (the old one is stopped first).
            models.UniqueConstraint(fields=["created_by", "image"],
                                    condition=models.Q(status__in=["queued", "running"]),
                                    name="livesession_one_active_per_user_image"),
        ]

    def __str__(self) -> str:
        return f"live session {self.pk} on image {self.image_id} ({self.status})"
