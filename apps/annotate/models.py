"""Projects, members, label classes, images and their brush annotations.

Invariants live here (fat models); write operations with transactions live in services.py.
"""
from __future__ import annotations

import posixpath
import re
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.text import slugify

from labseg.ml.config_bounds import OBJECT_DIAMETER_BOUNDS


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    ANNOTATOR = "annotator", "Annotator"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.VIEWER: 0, Role.ANNOTATOR: 1, Role.OWNER: 2}
#: Bounds of a project's object diameter (px), the ML core's (also the command line's ``--object-diameter``).
OBJECT_DIAMETER_MIN, OBJECT_DIAMETER_MAX = OBJECT_DIAMETER_BOUNDS


class Project(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects")
    channels = models.JSONField(default=list, blank=True, help_text="Channel names, e.g. ['DAPI', 'GFP'].")
    object_diameter = models.FloatField(
        null=True, blank=True,
        validators=[MinValueValidator(OBJECT_DIAMETER_MIN), MaxValueValidator(OBJECT_DIAMETER_MAX)],
        help_text="The typical object's width in pixels across its narrowest part (a round nucleus: its diameter; a "
                  "rod: its width). Empty: estimated from the objects painted whole, else from each prediction. "
                  "Sets where touching objects are split and the size of the training crops.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [  # also for writes that skip the API's validation (the shell, a migration, a script)
            models.CheckConstraint(
                condition=models.Q(object_diameter__isnull=True)
                | models.Q(object_diameter__gte=OBJECT_DIAMETER_MIN, object_diameter__lte=OBJECT_DIAMETER_MAX),
                name="project_object_diameter_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def role_of(self, user) -> str | None:
        """The user's role in this project, or None for a non-member."""
        if user is None or not user.is_authenticated:
            return None
        m = self.memberships.filter(user=user).only("role").first()
        return m.role if m else None

    def class_indices(self) -> set[int]:
        return set(self.label_classes.values_list("index", flat=True))


class LabelClass(models.Model):
    """Index 1 is background (created with the project); 2.. are object classes; 0 means unlabelled."""

    BACKGROUND = 1
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_classes")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=9, default="#00ff00", help_text="#rrggbb")

    class Meta:
        ordering = ["project", "index"]
        constraints = [
            models.UniqueConstraint(fields=["project", "index"], name="labelclass_unique_index"),
            models.CheckConstraint(condition=models.Q(index__gte=1, index__lte=255), name="labelclass_index_range"),
        ]

    def __str__(self) -> str:
        return f"{self.index}: {self.name}"


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user__username"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    def has_at_least(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


#: Longest slug kept from an uploaded file's name in its storage name (the full name stays in the database).
STORED_STEM_CHARS = 60


def safe_file_name(filename: str, max_stem: int = STORED_STEM_CHARS) -> str:
    """A short, ASCII, filesystem-safe version of an uploaded file's name for storage: the slug of its
    stem, truncated, plus its (sanitised) extension, e.g. ``"Zellkern Ü 1.TIF"`` -> ``"zellkern-u-1.tif"``.

    Users send names of any length and script (a name over 255 UTF-8 bytes cannot be a file name at all,
    and derived names such as the ``.cache.npy`` beside it must fit too); storage paths also get a
    random directory, so two uploads with the same name never collide."""
    stem, ext = posixpath.splitext(posixpath.basename((filename or "").replace("\\", "/")))
    stem = slugify(stem)[:max_stem].strip("-_") or "file"
    ext = re.sub(r"[^a-z0-9]", "", ext.lower())[:10]
    return f"{stem}.{ext}" if ext else stem


def image_upload_to(instance: Image, filename: str) -> str:
    return f"projects/{instance.project_id}/images/{uuid.uuid4().hex}/{safe_file_name(filename)}"


def thumbnail_upload_to(instance: Image, filename: str) -> str:
    return f"projects/{instance.project_id}/thumbnails/{uuid.uuid4().hex}.png"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=image_upload_to, max_length=500, help_text="The original, byte for byte.")
    original_filename = models.CharField(max_length=255)
    checksum = models.CharField(max_length=64, help_text="sha256 of the original file")
    size_bytes = models.BigIntegerField(default=0)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField(default=1)
    dtype = models.CharField(max_length=16, help_text="numpy dtype of the pixel data, e.g. uint8, uint16")
    display_range = models.JSONField(default=list, help_text="[[min, max], ...] per channel for display")
    thumbnail = models.FileField(upload_to=thumbnail_upload_to, max_length=500, blank=True)
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TRAIN)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "checksum"], name="image_unique_checksum")]
        indexes = [models.Index(fields=["project", "split"])]

    def __str__(self) -> str:
        return self.original_filename


class Annotation(models.Model):
    """The current annotation of one image.

    Masks are stored as PNG bytes in the row, so a mask and its ``version`` change in one UPDATE:
    classes 8-bit grey (0 unlabelled, 1 background, 2.. classes), instances 16-bit grey (0 none,
    1.. object ids; stored as uint32 .npy.zlib when ids exceed 65535, see masks.py).
    ``version`` increments on every save; a save based on a stale version is refused (409).
    """

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="annotation")
    classes_png = models.BinaryField(null=True, blank=True)
    instances_png = models.BinaryField(null=True, blank=True)
    strokes = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(default=0)
    labelled_pixels = models.BigIntegerField(default=0, help_text="pixels with class > 0")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"annotation of {self.image} v{self.version}"


class AnnotationRevision(models.Model):
    """A superseded state of an annotation, kept when a save overwrites it (history; never lose data).

    One row per overwritten version: restoring one is saving its masks again as a new version.
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="annotation_revisions")
    version = models.PositiveIntegerField()
    classes_png = models.BinaryField(null=True, blank=True)
    instances_png = models.BinaryField(null=True, blank=True)
    strokes = models.JSONField(default=list, blank=True)
    labelled_pixels = models.BigIntegerField(default=0)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(help_text="when this version was saved")
    superseded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "-version"]
        constraints = [models.UniqueConstraint(fields=["image", "version"], name="revision_unique_version")]

    def __str__(self) -> str:
        return f"{self.image} v{self.version}"
