"""Training runs and the model versions they produce.

A run is a ``labseg.jobs`` job: claimed by a worker with one conditional UPDATE (queued -> running); the
worker writes progress and a heartbeat every few seconds; a run with a stale heartbeat is recovered.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from apps.annotate.models import Image, Project
from labseg.jobs.models import ACTIVE_STATUSES, Job, JobStatus

RunStatus = JobStatus  # queued / running / succeeded / failed / cancelled
ACTIVE_RUN_STATUSES = ACTIVE_STATUSES


class TrainingRun(Job):
    """A training job (``labseg.jobs``: claimed with one conditional UPDATE, heartbeats, recovery)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    parent_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_runs"
    )
    config = models.JSONField(default=dict, blank=True, help_text="Overrides of labseg.ml.train.TrainConfig")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss_curve = models.JSONField(default=list, blank=True, help_text="[[step, loss], ...]")
    rounds = models.JSONField(
        default=list, blank=True,
        help_text="Training rounds (self-training adds rounds): [{round, of, start_step, end_step, validation: "
                  "{split, images, scores: {metric: mean}} | null}, ...]")
    elapsed_seconds = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True, default="", help_text="What the run is doing now")

    class Meta(Job.Meta):
        constraints = [
            # At most one queued-or-running run per project, enforced by the database.
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(status__in=["queued", "running"]),
                name="trainingrun_one_active_per_project",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.project} ({self.status})"


def checkpoint_upload_to(instance: ModelVersion, filename: str) -> str:
    return f"projects/{instance.project_id}/models/{uuid.uuid4().hex}/{filename}"


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField(help_text="1, 2, ... within the project")
    name = models.CharField(max_length=200, blank=True, default="")
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    checkpoint = models.FileField(upload_to=checkpoint_upload_to, max_length=500)
    architecture = models.JSONField(default=dict, blank=True, help_text="UNet kwargs: in_channels, num_classes, ...")
    config = models.JSONField(default=dict, blank=True, help_text="The full TrainConfig used")
    provenance = models.JSONField(
        default=dict, blank=True, help_text="images + annotation versions, code version, seed, device, duration"
    )
    is_active = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="modelversion_unique_number"),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(is_active=True), name="modelversion_one_active_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}" + (f" ({self.name})" if self.name else "")


class ScoreMethod(models.TextChoices):
    """Who made the segmentation a score is of: the version's U-Net, or a baseline fitted by the same
    training run on the same labels and scored on the same images (see ``labseg.ml.baselines``)."""

    UNET = "unet", "U-Net"
    THRESHOLD = "threshold", "Threshold (Otsu on the painted contrast)"
    FOREST = "forest", "Random forest (ilastik-style)"


class MetricScore(models.Model):
    """One metric value of a model version, on one image or aggregated over a split (image null).

    ``method`` is ``unet`` for the version itself; the baselines of its training run are stored beside
    it with their method named, so the lab sees the U-Net next to what a threshold or a forest gets."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="metric_scores")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="metric_scores")
    split = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=64, help_text="e.g. pixel_error, rand_error, adapted_rand_error, f1@0.5")
    value = models.FloatField()
    method = models.CharField(max_length=16, choices=ScoreMethod.choices, default=ScoreMethod.UNET, db_index=True)
    details = models.JSONField(default=dict, blank=True, help_text="e.g. tp/fp/fn, splits/merges")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_version", "name", "image_id"]
        indexes = [models.Index(fields=["model_version", "name"])]

    def __str__(self) -> str:
        return f"{self.name}={self.value:.4g}"
