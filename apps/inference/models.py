"""Predictions of a model version on an image (overlap-tile inference by a Celery worker)."""
from __future__ import annotations

import uuid

from django.db import models

from apps.annotate.models import Image, Project
from apps.training.models import ModelVersion
from labseg.jobs.models import Job, JobStatus

PredictionStatus = JobStatus  # queued / running / succeeded / failed (cancelled is not offered yet)


def prediction_upload_to(instance: Prediction, filename: str) -> str:
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


class ExportFormat(models.TextChoices):
    TORCHSCRIPT = "torchscript", "TorchScript (.pt)"
    ONNX = "onnx", "ONNX (.onnx)"


def export_upload_to(instance: ModelExport, filename: str) -> str:
    return f"projects/{instance.project_id}/exports/{instance.model_version_id}/{uuid.uuid4().hex}/{filename}"


class ModelExport(Job):
    """A model version exported as TorchScript or ONNX by a worker (a ``labseg.jobs`` job: the web process
    never loads torch for it). One queued or running export per (version, format); a finished one is reused."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_exports")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    file = models.FileField(upload_to=export_upload_to, max_length=500, blank=True)
    filename = models.CharField(max_length=200, blank=True, default="", help_text="the download's file name")

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "format"],
                condition=models.Q(status__in=["queued", "running"]),
                name="modelexport_one_active_per_version_format",
            )
        ]

    def __str__(self) -> str:
        return f"{self.format} export of {self.model_version} ({self.status})"
