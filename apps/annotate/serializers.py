"""Request/response shapes of the annotate API (also the OpenAPI schema)."""
from __future__ import annotations

import base64

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from labseg import api

from .models import (
    OBJECT_DIAMETER_MAX,
    OBJECT_DIAMETER_MIN,
    Annotation,
    AnnotationRevision,
    Image,
    LabelClass,
    Membership,
    Project,
    Role,
    Split,
)


class LabelClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelClass
        fields = ["index", "name", "color"]
        read_only_fields = fields


class ClassInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="#rrggbb")


class ClassUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="#rrggbb")


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    classes = LabelClassSerializer(source="label_classes", many=True, read_only=True)
    my_role = serializers.SerializerMethodField()
    image_count = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "channels", "object_diameter", "owner", "classes", "my_role",
                  "image_count", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "nullable": True, "description": "owner, annotator or viewer"})
    def get_my_role(self, obj) -> str | None:
        role = getattr(obj, "my_role", None)
        if role is None and "request" in self.context:
            role = obj.role_of(self.context["request"].user)
        return role

    def get_image_count(self, obj) -> int:
        count = getattr(obj, "image_count", None)
        return obj.images.count() if count is None else count


def object_diameter_field() -> serializers.FloatField:
    return serializers.FloatField(
        required=False, allow_null=True, min_value=OBJECT_DIAMETER_MIN, max_value=OBJECT_DIAMETER_MAX,
        help_text="The typical object's width in px across its narrowest part (a round nucleus: its diameter; a "
                  "rod: its width); null: estimated from the objects painted whole, else from each prediction. Sets "
                  "where touching objects are split and the training crop size.")


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    channels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    classes = ClassInputSerializer(many=True, required=False, default=list,
                                   help_text="Object classes; they get indices 2, 3, ... (1 is background).")
    object_diameter = object_diameter_field()


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    channels = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    object_diameter = object_diameter_field()


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    user_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "user_id", "role", "created_at"]
        read_only_fields = fields


class MemberCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=254, help_text="The user's username or e-mail address")
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ImageSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True, allow_null=True, default=None)
    has_annotation = serializers.SerializerMethodField()
    annotation_version = serializers.SerializerMethodField()
    labelled_pixels = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField()
    display_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "project", "original_filename", "checksum", "size_bytes", "width", "height", "channels",
                  "dtype", "display_range", "split", "uploaded_by", "created_at", "has_annotation",
                  "annotation_version", "labelled_pixels", "file_url", "display_url", "thumbnail_url"]
        read_only_fields = fields

    def _annotation(self, obj) -> Annotation | None:
        try:
            return obj.annotation
        except Annotation.DoesNotExist:
            return None

    def get_annotation_version(self, obj) -> int:
        if hasattr(obj, "annotation_version"):
            return obj.annotation_version
        ann = self._annotation(obj)
        return ann.version if ann else 0

    def get_has_annotation(self, obj) -> bool:
        return self.get_annotation_version(obj) > 0

    def get_labelled_pixels(self, obj) -> int:
        if hasattr(obj, "labelled_pixels"):
            return obj.labelled_pixels
        ann = self._annotation(obj)
        return ann.labelled_pixels if ann else 0

    def get_file_url(self, obj) -> str:
        return reverse("annotate:image-file", args=[obj.pk])

    def get_display_url(self, obj) -> str:
        return reverse("annotate:image-display", args=[obj.pk])

    def get_thumbnail_url(self, obj) -> str:
        return reverse("annotate:image-thumbnail", args=[obj.pk])


class ImagePageSerializer(serializers.Serializer):
    """One page of a project's images (``?page=``, ``?page_size=``)."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ImageSerializer(many=True)


class ImageUpdateSerializer(serializers.Serializer):
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    display_range = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2),
        required=False, help_text="[[lo, hi], ...] one pair per channel")


class UploadRequestSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), help_text="Repeat the field once per file.")


class UploadResultSerializer(serializers.Serializer):
    filename = serializers.CharField()
    status = serializers.ChoiceField(
        choices=[201, 400, 409, 413, 507],
        help_text="this file's outcome as an HTTP status: 201 stored; 400 empty, unreadable or another channel "
                  "count than the project's images; 409 duplicate; "
                  "413 over a size limit or the media quota; 507 the server could not write it")
    id = serializers.IntegerField(required=False, help_text="set when stored")
    error = serializers.CharField(required=False, help_text="set when not stored")
    code = serializers.ChoiceField(choices=["empty", "too_large", "quota_exceeded", "duplicate", "unreadable",
                                            "channel_mismatch", "storage_error"], required=False)
    duplicate_of = serializers.IntegerField(required=False)
    note = serializers.CharField(required=False, help_text="e.g. only the first plane of a Z/T stack is used")


class UploadResponseSerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = UploadResultSerializer(many=True)


def _b64(data) -> str | None:
    return base64.b64encode(bytes(data)).decode("ascii") if data else None


class _MaskFieldsMixin(serializers.Serializer):
    classes_png = serializers.SerializerMethodField(help_text="base64 8-bit grey PNG (class index); null when empty")
    instances_png = serializers.SerializerMethodField(help_text="base64 16-bit grey PNG (instance id); null when empty")
    updated_by = serializers.SerializerMethodField()

    def get_classes_png(self, obj) -> str | None:
        return _b64(obj.classes_png)

    def get_instances_png(self, obj) -> str | None:
        return _b64(obj.instances_png)

    def get_updated_by(self, obj) -> str | None:
        return obj.updated_by.username if obj.updated_by_id else None


class AnnotationSerializer(_MaskFieldsMixin, serializers.ModelSerializer):
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="null: never annotated")

    class Meta:
        model = Annotation
        fields = ["version", "classes_png", "instances_png", "strokes", "labelled_pixels", "updated_by", "updated_at"]
        read_only_fields = fields


class AnnotationPutSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=0, help_text="the version this save is based on")
    classes_png = serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    instances_png = serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    strokes = serializers.ListField(child=serializers.DictField(), required=False, allow_empty=True)


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    current_version = serializers.IntegerField()
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class RevisionSerializer(serializers.ModelSerializer):
    updated_by = serializers.SerializerMethodField()

    class Meta:
        model = AnnotationRevision
        fields = ["version", "labelled_pixels", "updated_by", "updated_at", "superseded_at"]
        read_only_fields = fields

    def get_updated_by(self, obj) -> str | None:
        return obj.updated_by.username if obj.updated_by_id else None


class RevisionDetailSerializer(_MaskFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = AnnotationRevision
        fields = ["version", "classes_png", "instances_png", "strokes", "labelled_pixels", "updated_by",
                  "updated_at", "superseded_at"]
        read_only_fields = fields


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField()


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    is_staff = serializers.BooleanField()


ErrorSerializer = api.ErrorSerializer  # the shared error body (labseg.api), named here for the schemas
