"""Predictions of a model version on an image (overlap-tile inference by a Celery worker)."""
from __future__ import annotations

import uuid

from django.db import models

from apps.annotate.models import Image
from apps.training.models import ModelVersion
from labseg.jobs.models import Job, JobStatus


PredictionStatus = JobStatus  # queued / running / succeeded / failed (cancelled is not offered yet)


def prediction_upload_to(instance: "Prediction", filename: str) -> str:
    return f"projects/{instance.image.project_id}/predictions/{instance.model_version_id}/{uuid.uuid4().hex}/{filename}"


class Prediction(Job):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    classes_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    instances_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    probability_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    uncertainty_file = models.FileField(upload_to=prediction_upload_to, max_length=500, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="pixels per class, number of instances")
    mean_uncertainty = models.FloatField(
        null=True, blank=True, db_index=True, help_text="mean of the TTA uncertainty map (0..1), for active learning"
    )

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"],
                condition=models.Q(status__in=["queued", "running"]),
                name="prediction_one_active_per_image_version",
            )
        ]

    def __str__(self) -> str:
        return f"prediction of {self.image} by {self.model_version} ({self.status})"
