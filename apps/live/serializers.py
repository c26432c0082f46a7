from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from .models import LiveSession


class RegionSerializer(serializers.Serializer):
    """The visible region in image pixels (at most LABSEG_LIVE_MAX_REGION a side, inside the image)."""

    x = serializers.IntegerField(min_value=0)
    y = serializers.IntegerField(min_value=0)
    width = serializers.IntegerField(min_value=1)
    height = serializers.IntegerField(min_value=1)


class LiveStartSerializer(serializers.Serializer):
    parent = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="Model version to warm-start from; omitted: the project's active version (if any); null: from "
                  "scratch")
    region = RegionSerializer(required=False, help_text="Visible region (default: the top-left corner of the image)")


class LiveDraftSerializer(serializers.Serializer):
    classes_png = serializers.CharField(
        required=False, allow_null=True, allow_blank=True,
        help_text="The page's unsaved class mask, encoded as in annotation saves (base64 8-bit grey PNG); "
                  "omitted: a heartbeat only")
    instances_png = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                          help_text="Unsaved instance mask (base64 16-bit PNG or LSNPYZ1)")
    region = RegionSerializer(required=False, help_text="The visible region, if it changed")


class LiveRegionSerializer(serializers.Serializer):
    region = RegionSerializer()


class LiveKeepSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="",
                                 help_text="Name of the new model version")


class LiveSessionSerializer(serializers.ModelSerializer):
    state = serializers.CharField(source="status", help_text="queued / running / cancelled (ended) / failed")
    image = serializers.IntegerField(source="image_id")
    parent = serializers.IntegerField(source="parent_version_id", allow_null=True)
    overlay_age_s = serializers.SerializerMethodField(help_text="seconds since the newest overlay (null: none yet)")
    overlay_url = serializers.SerializerMethodField(help_text="the newest overlay PNG (null: none yet)")
    heartbeat_timeout_s = serializers.SerializerMethodField(
        help_text="the session stops this long after the page's last heartbeat (PUT draft)")

    class Meta:
        model = LiveSession
        fields = ["id", "image", "state", "stop_reason", "error", "parent", "step", "loss", "region",
                  "draft_version", "overlay_step", "overlay_draft_version", "overlay_region", "overlay_at",
                  "overlay_age_s", "overlay_url", "checkpoint_step", "browser_seen_at", "heartbeat_timeout_s",
                  "created_at", "started_at", "finished_at"]
        read_only_fields = fields

    def get_overlay_age_s(self, obj: LiveSession) -> float | None:
        return None if obj.overlay_at is None else round((timezone.now() - obj.overlay_at).total_seconds(), 3)

    def get_overlay_url(self, obj: LiveSession) -> str | None:
        if obj.overlay_at is None:
            return None
        return f"/api/v1/images/{obj.image_id}/live/{obj.pk}/overlay.png?step={obj.overlay_step}"

    def get_heartbeat_timeout_s(self, obj: LiveSession) -> int:
        return int(settings.LABSEG_LIVE_HEARTBEAT_TIMEOUT)
