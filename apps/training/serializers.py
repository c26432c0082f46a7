"""Serializers of training runs, model versions and metric scores (read shapes + request bodies)."""
from __future__ import annotations

from rest_framework import serializers

from .models import MetricScore, ModelVersion, ScoreMethod, TrainingRun
from .selectors import baseline_comparison


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField(help_text="Id of the version this run produced, if any")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="null when the user was deleted")
    is_active = serializers.BooleanField(read_only=True, help_text="queued or running")

    class Meta:
        model = TrainingRun
        fields = [
            "id", "project", "parent_version", "config", "status", "is_active", "step", "total_steps",
            "progress", "loss_curve", "rounds", "elapsed_seconds", "eta_seconds", "message", "error",
            "cancel_requested", "worker", "attempts", "heartbeat_at", "created_by", "created_at",
            "started_at", "finished_at", "model_version",
        ]
        read_only_fields = fields

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.pk if version is not None else None


class StartRunSerializer(serializers.Serializer):
    parent_version = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="Version to fine-tune from (default: the project's active version; none: from scratch)",
    )
    from_scratch = serializers.BooleanField(
        required=False, default=False, help_text="Start from fresh weights even when a version is active",
    )
    config = serializers.JSONField(
        required=False, default=dict,
        help_text="Overrides of labseg.ml.train.TrainConfig, e.g. {\"steps\": 500, \"max_seconds\": 600}",
    )


class MetricScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricScore
        fields = ["id", "image", "split", "name", "value", "method", "details"]
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    run_status = serializers.CharField(source="run.status", read_only=True, default=None, allow_null=True,
                                       help_text="null for an uploaded version (no run)")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="null when no user is recorded (a command, a deleted user)")
    metrics = serializers.SerializerMethodField(help_text="The U-Net's aggregate scores (image null) by metric name")
    comparison = serializers.SerializerMethodField(
        help_text="The U-Net against the baselines on the same held-out images (see the metrics endpoint)")
    baselines = serializers.SerializerMethodField(
        help_text="The same aggregates of the baselines fitted by the same run on the same labels and images: "
                  "{method: {metric: value}}")
    lineage = serializers.SerializerMethodField(help_text="Ancestor version numbers, nearest first")
    checkpoint_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id", "project", "number", "name", "run", "run_status", "parent", "lineage", "architecture",
            "config", "provenance", "is_active", "metrics", "baselines", "comparison", "checkpoint_url", "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_metrics(self, version: ModelVersion) -> dict[str, float]:
        return {s.name: s.value for s in version.metric_scores.all()
                if s.image_id is None and s.method == ScoreMethod.UNET}

    def get_baselines(self, version: ModelVersion) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for s in version.metric_scores.all():
            if s.image_id is None and s.method != ScoreMethod.UNET:
                out.setdefault(s.method, {})[s.name] = s.value
        return out

    def get_comparison(self, version: ModelVersion) -> dict | None:
        return baseline_comparison(version, rows=version.metric_scores.all())["comparison"]

    def get_lineage(self, version: ModelVersion) -> list[int]:
        # one query per project for the whole list (was one per ancestor of every version)
        key = f"lineage-index-{version.project_id}"
        index = self.context.get(key)
        if index is None:
            index = {pk: (parent_id, number) for pk, parent_id, number in ModelVersion.objects.filter(
                project_id=version.project_id).values_list("pk", "parent_id", "number")}
            self.context[key] = index
        chain, seen, parent_id = [], {version.pk}, version.parent_id
        while parent_id is not None and parent_id not in seen and parent_id in index:
            seen.add(parent_id)
            parent_id, number = index[parent_id]
            chain.append(number)
        return chain

    def get_checkpoint_url(self, version: ModelVersion) -> str:
        return f"/api/v1/model-versions/{version.pk}/checkpoint"


class ModelVersionDetailSerializer(ModelVersionSerializer):
    scores = MetricScoreSerializer(source="metric_scores", many=True, read_only=True)

    class Meta(ModelVersionSerializer.Meta):
        fields = ModelVersionSerializer.Meta.fields + ["scores"]
        read_only_fields = fields


class UploadCheckpointSerializer(serializers.Serializer):
    checkpoint = serializers.FileField(help_text="A checkpoint written by labseg.ml.train.save_checkpoint (.pt)")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
