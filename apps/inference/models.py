"""Predictions of a model version on an image (overlap-tile inference by a Celery worker)."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from apps.annotate.models import Image
from apps.training.models import ModelVersion


class PredictionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


def prediction_upload_to(instance: "Prediction", filename: str) -> str:
    return f"projects/{instance.image.project_id}/predictions/{instance.model_version_id}/{uuid.uuid4().hex}/{filename}"


class Prediction(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    status = models.CharField(
        max_length=16, choices=PredictionStatus.choices, default=PredictionStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    classes_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    instances_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    probability_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    uncertainty_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="pixels per class, number of instances")
    mean_uncertainty = models.FloatField(
        null=True, blank=True, db_index=True, help_text="mean of the TTA uncertainty map (0..1), for active learning"
    )
    worker = models.CharField(max_length=200, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="times a worker claimed it")
    error = models.TextField(blank=True, default="")
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
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"],
                condition=models.Q(status__in=["queued", "running"]),
                name="prediction_one_active_per_image_version",
            )
        ]

    def __str__(self) -> str:
        return f"prediction of {self.image} by {self.model_version} ({self.status})"
