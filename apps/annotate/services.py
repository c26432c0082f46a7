"""Write operations on projects, members, classes, images and annotations (one function per use case).

Permission checks use selectors (404 for non-members, 403 below the role); transactions live here.
Bad input raises DRF ``ValidationError`` (400); a stale annotation version raises ``labseg.api.Conflict``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, models, transaction
from django.db.models import F, Max
from django.utils import timezone
from PIL import Image as PILImage
from rest_framework.exceptions import NotFound, ValidationError

from labseg.api import Conflict, PayloadTooLarge
from labseg.ml import io as mlio

from .masks import MaskError, decode_mask, encode_png
from .models import Annotation, AnnotationRevision, Image, LabelClass, Membership, Project, Role, Split
from .quota import MediaQuota, human_bytes
from .selectors import get_image_for, get_project_for

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256
#: Images with at least this many pixels get their decoded array cached (.npy) for fast region reads.
CACHE_MIN_PIXELS = 2048 * 2048
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
#: Default colours of object classes 2, 3, ...: tertiary hues far from every channel display colour
#: (labseg.ml.io.CHANNEL_COLORS, RGB) so a label never looks like a stain; the browser's new-project form
#: offers the same list (frontend/src/palette.ts; tests/annotate/test_palette.py checks both).
DEFAULT_CLASS_COLORS = ("#ff8000", "#0080ff", "#80ff00", "#8000ff", "#00ff80", "#ff0080", "#ffb080", "#008080")
BACKGROUND_COLOR = "#708090"


# --- projects ----------------------------------------------------------------------------------
def _check_color(color: str) -> str:
    if not isinstance(color, str) or not COLOR_RE.match(color):
        raise ValidationError({"color": f"expected a colour like '#ff0000', got {color!r}"})
    return color.lower()


def _check_class_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({"name": "a class needs a non-empty name"})
    if len(name) > 100:
        raise ValidationError({"name": "at most 100 characters"})
    return name.strip()


@transaction.atomic
def create_project(*, user, name: str, description: str = "", channels: list | None = None,
                   classes: Iterable[dict] | None = None, object_diameter: float | None = None) -> Project:
    """New project owned by ``user``: class 1 'background' automatically, ``classes`` get 2, 3, ..."""
    project = Project.objects.create(name=name, description=description or "", owner=user, channels=channels or [],
                                     object_diameter=object_diameter)
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    LabelClass.objects.create(project=project, index=LabelClass.BACKGROUND, name="background", color=BACKGROUND_COLOR)
    seen = {"background"}
    for i, cls in enumerate(classes or []):
        cname = _check_class_name(cls.get("name"))
        if cname.lower() in seen:
            raise ValidationError({"classes": f"duplicate class name {cname!r}"})
        seen.add(cname.lower())
        color = _check_color(cls.get("color") or DEFAULT_CLASS_COLORS[i % len(DEFAULT_CLASS_COLORS)])
        if i + 2 > 255:
            raise ValidationError({"classes": "at most 254 object classes"})
        LabelClass.objects.create(project=project, index=i + 2, name=cname, color=color)
    return project


@transaction.atomic
def update_project(*, user, project_id: int, **fields) -> Project:
    project = get_project_for(user, project_id, Role.OWNER)
    if "channels" in fields and fields["channels"]:
        have = image_channel_count(project)
        if have is not None and len(fields["channels"]) != have:
            raise ValidationError({"channels": f"the project's images have {have} channel(s): give {have} "
                                               f"name(s), not {len(fields['channels'])}"})
    changed = [key for key in ("name", "description", "channels", "object_diameter") if key in fields]
    for key in changed:
        setattr(project, key, fields[key])
    # only the fields given: an owner saving the object size does not write back a name another owner just changed
    project.save(update_fields=[*changed, "updated_at"])
    return project


def image_channel_count(project: Project) -> int | None:
    """The channel count of the project's images (its first image's; uploads keep them all equal), or None."""
    return project.images.order_by("pk").values_list("channels", flat=True).first()


def expected_channels(project: Project) -> int | None:
    """How many channels an upload to the project must have: its images' count, else the number of channel
    names the project was given, else None (the first upload decides)."""
    have = image_channel_count(project)
    return have if have is not None else (len(project.channels) or None)


def channel_mismatch(project: Project, channels: int, expected: int) -> str:
    """The per-file error for an upload whose channel count is not the project's."""
    names = ", ".join(str(n) for n in project.channels) if len(project.channels) == expected else ""
    return (f"the image has {channels} channel(s) but this project's images have {expected}"
            + (f" ({names})" if names else "") + ": a model is trained on a fixed set of channels. Upload it to a "
            f"project for {channels}-channel images, or convert it first (e.g. in Fiji: Image > Color > "
            f"Split Channels / Merge Channels)")


def delete_project(*, user, project_id: int) -> None:
    """Delete the project, its rows and (after commit) its files."""
    project = get_project_for(user, project_id, Role.OWNER)
    with transaction.atomic():
        files = [_image_files(img) for img in project.images.all()] + [_dependent_files(project)]
        files.append(_weight_cache_files(project.images.values_list("pk", flat=True)))
        project.delete()
        transaction.on_commit(lambda: [_delete_files(f) for f in files])


# --- members -----------------------------------------------------------------------------------
def _check_role(role: Any) -> str:
    if role not in Role.values:
        raise ValidationError({"role": f"role must be one of {', '.join(Role.values)}"})
    return role


def _other_owner_exists(project: Project, user) -> bool:
    return project.memberships.filter(role=Role.OWNER).exclude(user=user).exists()


@transaction.atomic
def find_user(name: str):
    """The user with this username, else the one with this e-mail address (owners invite by either)."""
    User = get_user_model()
    name = name.strip()
    member = User.objects.filter(username=name).first()
    if member is None and "@" in name:
        matches = list(User.objects.filter(email__iexact=name, is_active=True)[:2])
        if len(matches) > 1:
            raise ValidationError({"username": f"several accounts use {name!r}; invite by username"})
        member = matches[0] if matches else None
    if member is None:
        what = "no account uses the e-mail" if "@" in name else "no user named"
        raise ValidationError({"username": f"{what} {name!r}; a staff member can create the account "
                                           "(Projects page, Create an account)"})
    return member


def add_member(*, user, project_id: int, username: str, role: str = Role.ANNOTATOR) -> Membership:
    project = get_project_for(user, project_id, Role.OWNER)
    role = _check_role(role)
    member = find_user(username)
    if project.memberships.filter(user=member).exists():
        raise ValidationError({"username": f"{member.username} is already a member; "
                                           "PATCH the member to change the role"})
    return Membership.objects.create(project=project, user=member, role=role)


def _membership(project: Project, username: str) -> Membership:
    m = project.memberships.select_for_update().select_related("user").filter(user__username=username).first()
    if m is None:
        raise NotFound(f"{username!r} is not a member of this project.")
    return m


@transaction.atomic
def change_member_role(*, user, project_id: int, username: str, role: str) -> Membership:
    project = get_project_for(user, project_id, Role.OWNER)
    role = _check_role(role)
    # Lock the project's owner rows so two owners demoting each other cannot leave none.
    list(project.memberships.select_for_update().filter(role=Role.OWNER))
    m = _membership(project, username)
    if m.role == Role.OWNER and role != Role.OWNER and not _other_owner_exists(project, m.user):
        raise ValidationError({"role": "a project needs at least one owner; make someone else owner first"})
    m.role = role
    m.save(update_fields=["role"])
    return m


@transaction.atomic
def remove_member(*, user, project_id: int, username: str) -> None:
    project = get_project_for(user, project_id, Role.OWNER)
    list(project.memberships.select_for_update().filter(role=Role.OWNER))
    m = _membership(project, username)
    if m.role == Role.OWNER and not _other_owner_exists(project, m.user):
        raise ValidationError({"username": "cannot remove the last owner of a project"})
    m.delete()


# --- classes -----------------------------------------------------------------------------------
@transaction.atomic
def add_class(*, user, project_id: int, name: str, color: str | None = None) -> LabelClass:
    project = get_project_for(user, project_id, Role.OWNER)
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise index allocation
    name = _check_class_name(name)
    if project.label_classes.filter(name__iexact=name).exists():
        raise ValidationError({"name": f"the project already has a class named {name!r}"})
    index = (project.label_classes.aggregate(m=Max("index"))["m"] or 1) + 1
    if index > 255:
        raise ValidationError({"name": "a project has at most 255 classes"})
    color = _check_color(color or DEFAULT_CLASS_COLORS[(index - 2) % len(DEFAULT_CLASS_COLORS)])
    return LabelClass.objects.create(project=project, index=index, name=name, color=color)


@transaction.atomic
def update_class(*, user, project_id: int, index: int, name: str | None = None, color: str | None = None) -> LabelClass:
    project = get_project_for(user, project_id, Role.OWNER)
    cls = project.label_classes.select_for_update().filter(index=index).first()
    if cls is None:
        raise NotFound(f"The project has no class {index}.")
    if name is not None:
        name = _check_class_name(name)
        if project.label_classes.filter(name__iexact=name).exclude(pk=cls.pk).exists():
            raise ValidationError({"name": f"the project already has a class named {name!r}"})
        cls.name = name
    if color is not None:
        cls.color = _check_color(color)
    cls.save()
    return cls


# --- images ------------------------------------------------------------------------------------
#: The HTTP status each per-file upload result stands for (the batch answer's own status is
#: 201 / 207 / 400 or 413, see :func:`upload_images`).
UPLOAD_STATUS = {"stored": 201, "empty": 400, "unreadable": 400, "channel_mismatch": 400, "duplicate": 409,
                 "too_large": 413,
                 "quota_exceeded": 413, "storage_error": 507}


@dataclass
class UploadResult:
    filename: str
    id: int | None = None
    error: str | None = None
    code: str | None = None
    duplicate_of: int | None = None
    note: str | None = None

    @property
    def status(self) -> int:
        return UPLOAD_STATUS["stored" if self.id is not None else self.code or "unreadable"]

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"filename": self.filename, "status": self.status}
        if self.id is not None:
            d["id"] = self.id
        if self.note:
            d["note"] = self.note
        if self.error is not None:
            d["error"], d["code"] = self.error, self.code
        if self.duplicate_of is not None:
            d["duplicate_of"] = self.duplicate_of
        return d


def _sha256(f) -> str:
    h = hashlib.sha256()
    f.seek(0)
    for chunk in f.chunks() if hasattr(f, "chunks") else iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


def make_thumbnail(image: np.ndarray, ranges, size: int = THUMBNAIL_SIZE) -> bytes:
    """PNG bytes of a composite rendering whose longer side is at most ``size`` pixels."""
    c, h, w = image.shape
    step = max(1, int(np.ceil(max(h, w) / (size * 2))))  # stride first (cheap), then a good resize
    small = image[:, ::step, ::step]
    rgb = mlio.composite_rgb(small, ranges)
    pil = PILImage.fromarray(rgb)
    pil.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _display_name(name: str) -> str:
    """The name shown for an upload (kept in the database only; storage uses ``safe_file_name``): its base
    name without control characters (PostgreSQL refuses NUL), at most 255 characters."""
    name = os.path.basename((name or "").replace("\\", "/"))
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "upload"


def _decode_upload(img: Image, f, header: mlio.ImageHeader) -> np.ndarray:
    """The pixels of the upload whose original ``img.file`` was just stored, for its statistics and thumbnail.

    A large TIFF is never decoded whole: it is memory-mapped in place (uncompressed) or decoded tile by tile
    into its ``.npy`` cache, which is then mapped. Small TIFFs are decoded in memory; PNG/JPEG too (Pillow
    caps them), with the cache written from that array as before."""
    big = header.shape[1] * header.shape[2] >= CACHE_MIN_PIXELS
    try:
        path = img.file.path
    except NotImplementedError:  # remote storage: no local file to map, no cache
        f.seek(0)
        return mlio.read_image(f)
    if header.format == "tiff":
        return mlio.open_array(path, cache_path=cache_name(path)) if big else mlio.read_image(path)
    pixels = mlio.read_image(path)
    if big:
        mlio.write_cache(path, pixels, cache_name(path))
    return pixels


def _expected_cache_bytes(header: mlio.ImageHeader) -> int:
    """Bytes the decoded-array cache of an upload will take on disk (0 when none is written)."""
    big = header.shape[1] * header.shape[2] >= CACHE_MIN_PIXELS
    return header.nbytes + 128 if big and not header.mappable else 0  # 128: the .npy header


def _store_one(project: Project, user, f, limit: int, quota: MediaQuota, channels: list) -> UploadResult:
    """Validate, read and store one uploaded file; never raises for bad input (a per-file error).

    ``channels``: a one-item list holding the channel count uploads must have (None: this file decides it)."""
    name = _display_name(getattr(f, "name", "upload"))
    size = getattr(f, "size", None) or 0
    if size == 0:
        return UploadResult(name, error="the file is empty", code="empty")
    if size > limit:
        return UploadResult(name, error=f"the file is {size} bytes, more than the limit of {limit} bytes per file "
                                        f"(LABSEG_MAX_UPLOAD_BYTES)", code="too_large")
    checksum = _sha256(f)
    dup = project.images.filter(checksum=checksum).values_list("id", flat=True).first()
    if dup is not None:
        return UploadResult(name, error=f"duplicate of image {dup} already in the project", code="duplicate",
                            duplicate_of=dup)
    try:  # the header only: sizes and limits are decided before a pixel is decoded or a byte stored
        header = mlio.read_header(f, max_pixels=int(settings.LABSEG_MAX_IMAGE_PIXELS))
    except mlio.ImageTooLargeError as exc:
        return UploadResult(name, error=f"{exc} (LABSEG_MAX_IMAGE_PIXELS)", code="too_large")
    except mlio.ImageReadError as exc:
        return UploadResult(name, error=str(exc), code="unreadable")
    if channels[0] is not None and header.shape[0] != channels[0]:
        return UploadResult(name, error=channel_mismatch(project, header.shape[0], channels[0]),
                            code="channel_mismatch")
    cache_bytes = _expected_cache_bytes(header)
    what = f"the original {human_bytes(size)}"
    what += f" + its decoded cache {human_bytes(cache_bytes)}" if cache_bytes else ""
    refusal = quota.refusal(size + cache_bytes, what)
    if refusal:
        return UploadResult(name, error=refusal, code="quota_exceeded")
    c, h, w = header.shape
    img = Image(project=project, original_filename=name, checksum=checksum, size_bytes=size, width=w, height=h,
                channels=c, dtype=header.dtype.name, uploaded_by=user)
    try:
        f.seek(0)
        img.file.save(name, f, save=False)  # copies the original bytes unchanged
        pixels = _decode_upload(img, f, header)
        if pixels.shape != header.shape:
            raise mlio.ImageReadError(f"the image decodes to {pixels.shape}, its header says {header.shape}")
        img.display_range = mlio.display_range(pixels)  # a strided sample of a big image: bounded memory
        thumb = make_thumbnail(pixels, img.display_range)
        img.dtype = pixels.dtype.name
        del pixels  # one decoded image (or one mapped cache) at a time
        img.thumbnail.save("thumb.png", ContentFile(thumb), save=False)
        with transaction.atomic():
            img.save()
    except IntegrityError:  # the same file arrived concurrently
        _delete_files(_unsaved_files(img))
        dup = project.images.filter(checksum=checksum).values_list("id", flat=True).first()
        return UploadResult(name, error=f"duplicate of image {dup} already in the project", code="duplicate",
                            duplicate_of=dup)
    except mlio.ImageTooLargeError as exc:  # Pillow's decompression-bomb check while decoding
        _delete_files(_unsaved_files(img))
        return UploadResult(name, error=str(exc), code="too_large")
    except mlio.ImageReadError as exc:  # a header that promised more than the data holds (truncated, corrupt)
        _delete_files(_unsaved_files(img))
        return UploadResult(name, error=str(exc), code="unreadable")
    except MemoryError:
        _delete_files(_unsaved_files(img))
        return UploadResult(name, error="the image is too large to decode on this server", code="too_large")
    except OSError as exc:  # the disk is full (or not writable): nothing of this file is kept
        _delete_files(_unsaved_files(img))
        log.error("upload of %r not stored: %s", name, exc)
        return UploadResult(name, error=f"the server could not store the file: {exc.strerror or exc}",
                            code="storage_error")
    except BaseException:
        _delete_files(_unsaved_files(img))
        raise
    quota.add(size + cache_bytes + len(thumb))
    note = None
    if header.planes:
        stack = ", ".join(f"{axis}={n}" for axis, n in header.planes.items())
        note = f"a stack ({stack}): only the first plane is used"
    return UploadResult(name, id=img.pk, note=note)


def upload_images(*, user, project_id: int, files: list) -> tuple[int, list[dict]]:
    """Store each file (byte for byte) with metadata + thumbnail -> (HTTP status, per-file results).

    201 all stored; 207 some stored, the others reported; none stored: 413 when every file was over a
    size limit or the media quota, else 400. Every result carries the ``status`` of its own outcome (201,
    400, 409 duplicate, 413 too large / over the quota, 507 not writable). Duplicates (same sha256 in the
    project) are reported with ``duplicate_of`` and not stored twice. Files are handled one at a time, each
    in its own transaction, so a bad file never loses the good ones, and a refused file leaves nothing on disk.
    """
    project = get_project_for(user, project_id, Role.ANNOTATOR)
    if not files:
        raise ValidationError({"files": "send one or more files in the multipart field 'files'"})
    limit = int(settings.LABSEG_MAX_UPLOAD_BYTES)
    quota = MediaQuota()
    channels = [expected_channels(project)]
    results = []
    for f in files:
        results.append(_store_one(project, user, f, limit, quota, channels))
        if results[-1].id is not None and channels[0] is None:
            channels[0] = expected_channels(project)  # the first stored image sets the count for the rest
    stored = sum(r.id is not None for r in results)
    if stored:
        status = 201 if stored == len(results) else 207
    else:
        status = 413 if all(r.status == 413 for r in results) else 400
    return status, [r.as_dict() for r in results]


def _unsaved_files(img: Image) -> list[str]:
    """Storage names of what a failed upload wrote before its row was saved: the original, its cache, the
    thumbnail (no other rows can point at it yet)."""
    names = [n for n in (img.file.name, img.thumbnail.name) if n]
    return names + [cache_name(img.file.name)] if img.file.name else names


def _image_files(img: Image) -> list[str]:
    """Storage names of the files belonging to an image (original, thumbnail, region cache) and to the
    rows that go with it (predictions' maps, with their region caches)."""
    names = [n for n in (img.file.name, img.thumbnail.name) if n]
    if img.file.name:
        names.append(cache_name(img.file.name))
    return names + _dependent_files(img)


def _dependent_files(obj: models.Model) -> list[str]:
    """Storage names in the FileFields of rows that point at ``obj`` and are deleted with it (cascade),
    plus their region caches; apps that add such rows (predictions, model versions) need no hook here."""
    names: list[str] = []
    for rel in obj._meta.related_objects:
        if not (rel.one_to_many or rel.one_to_one) or rel.on_delete is not models.CASCADE:
            continue
        fields = [f.name for f in rel.related_model._meta.concrete_fields if isinstance(f, models.FileField)]
        if not fields:
            continue
        for row in rel.related_model._base_manager.filter(**{rel.field.name: obj}).values_list(*fields):
            for name in row:
                if name:
                    names += [name, cache_name(name)]
    return names


WEIGHT_CACHE_DIR = "cache/weights"
_WEIGHT_CACHE_NAME = re.compile(r"ann(\d+)-v")


def _weight_cache_files(image_ids: Iterable[int]) -> list[str]:
    """Storage names of the training weight-map caches of these images' annotations (every version, and
    torn temporary files): ``cache/weights/ann<annotation id>-v<version>-<digest>.npy``, as written by
    ``apps.annotate.weight_maps``. One listing of the folder, whatever the image count."""
    rows = Annotation.objects.filter(image_id__in=list(image_ids)).values_list("pk", flat=True)
    annotations = {str(pk) for pk in rows}
    if not annotations:
        return []
    try:
        with os.scandir(os.path.join(settings.MEDIA_ROOT, WEIGHT_CACHE_DIR)) as entries:
            return [f"{WEIGHT_CACHE_DIR}/{e.name}" for e in entries
                    if (m := _WEIGHT_CACHE_NAME.match(e.name)) and m.group(1) in annotations]
    except OSError:  # no cache folder yet (or not readable): nothing to delete
        return []


def _delete_files(names: list[str]) -> None:
    """Delete media files no committed row references; waits while a backup pins its snapshot's files."""
    from django.core.files.storage import default_storage

    from labseg.backup import deleting_files

    if not names:
        return
    with deleting_files():
        for n in names:
            try:
                if default_storage.exists(n):
                    default_storage.delete(n)
            except OSError as exc:  # a file left behind is better than a failed delete of the row
                log.warning("could not delete %s: %s", n, exc)


def cache_name(file_name: str) -> str:
    """Storage name of the decoded-array cache (.npy) next to an original."""
    return file_name + ".cache.npy"


@transaction.atomic
def update_image(*, user, image_id: int, split: str | None = None, display_range: list | None = None) -> Image:
    image = get_image_for(user, image_id, Role.ANNOTATOR)
    if split is not None:
        if split not in Split.values:
            raise ValidationError({"split": f"split must be one of {', '.join(Split.values)}"})
        image.split = split
    if display_range is not None:
        ok = (isinstance(display_range, list) and len(display_range) == image.channels and all(
            isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r) and r[1] > r[0]
            for r in display_range))
        if not ok:
            raise ValidationError({"display_range": f"expected {image.channels} pairs [lo, hi] with hi > lo"})
        image.display_range = [[float(a), float(b)] for a, b in display_range]
    image.save(update_fields=["split", "display_range"])
    if display_range is not None:
        _refresh_thumbnail(image)
    return image


def ensure_thumbnail(image: Image) -> bool:
    """Render the thumbnail when the image has none or its file is gone (images stored by scripts or an
    interrupted upload); True when one is there afterwards."""
    from django.core.files.storage import default_storage

    if image.thumbnail and default_storage.exists(image.thumbnail.name):
        return True
    _refresh_thumbnail(image)
    return bool(image.thumbnail) and default_storage.exists(image.thumbnail.name)


def _refresh_thumbnail(image: Image) -> None:
    """Re-render the thumbnail with the image's current display range (a failure keeps the old one)."""
    try:
        png = make_thumbnail(image_array(image), image.display_range)  # strided: reads few pixels of a memmap
    except (mlio.ImageReadError, OSError, ValueError) as exc:
        log.warning("thumbnail of image %s not refreshed: %s", image.pk, exc)
        return
    old = image.thumbnail.name
    image.thumbnail.save("thumb.png", ContentFile(png), save=False)
    image.save(update_fields=["thumbnail"])
    if old:
        transaction.on_commit(lambda: _delete_files([old]))


def delete_image(*, user, image_id: int) -> None:
    image = get_image_for(user, image_id, Role.OWNER)
    files = _image_files(image) + _weight_cache_files([image.pk])
    with transaction.atomic():
        image.delete()
        transaction.on_commit(lambda: _delete_files(files))


def image_array(image: Image) -> np.ndarray:
    """The image's pixels (C, H, W), memory-mapped where possible (see ``labseg.ml.io.open_array``)."""
    try:
        path = image.file.path
    except NotImplementedError:  # remote storage: decode from the stream
        with image.file.open("rb") as fh:
            return mlio.read_image(fh)
    big = image.width * image.height >= CACHE_MIN_PIXELS
    return mlio.open_array(path, cache_path=cache_name(path) if big else None)


# --- annotations -------------------------------------------------------------------------------
def _b64_mask(value: Any, field: str, expected_size: tuple[int, int]) -> np.ndarray | None:
    """A base64 mask (grey PNG, or the ``LSNPYZ1`` compressed .npy) of an image of ``expected_size`` (w, h).

    The size in the PNG / .npy header is checked before any pixel is decompressed: a wrong size is a 400,
    one over ``LABSEG_MAX_MASK_PIXELS`` (or a zlib stream longer than its header says) a 413.
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValidationError({field: "expected a base64-encoded PNG string or null"})
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError({field: "not valid base64"}) from exc
    w, h = expected_size
    try:
        return decode_mask(raw, expected_shape=(h, w), max_pixels=int(settings.LABSEG_MAX_MASK_PIXELS))
    except MaskError as exc:
        if exc.too_large:
            raise PayloadTooLarge({field: str(exc)}) from exc
        raise ValidationError({field: str(exc)}) from exc
    except PILImage.DecompressionBombError as exc:
        raise PayloadTooLarge({field: f"the mask is too large to decode: {exc}"}) from exc
    except Exception as exc:  # PIL raises many types on garbage
        raise ValidationError({field: f"not a readable grey PNG mask: {exc}"}) from exc


def _check_masks(image: Image, classes: np.ndarray | None,
                 instances: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Masks of the image's size whose class indices are the project's (400 otherwise)."""
    for field, arr in (("classes_png", classes), ("instances_png", instances)):
        if arr is not None and arr.shape != (image.height, image.width):
            raise ValidationError({field: f"mask is {arr.shape[1]}x{arr.shape[0]} but the image is "
                                          f"{image.width}x{image.height}"})
    if classes is not None:
        present = set(np.unique(classes).tolist())
        allowed = {0} | image.project.class_indices()
        unknown = sorted(present - allowed)
        if unknown:
            raise ValidationError({"classes_png": f"class indices {unknown} are not classes of this project "
                                                  f"(allowed: {sorted(allowed)})"})
        classes = classes.astype(np.uint8)
    return classes, instances


def decode_masks(image: Image, classes_png: Any, instances_png: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Base64 masks checked exactly as an annotation save checks them (size, class indices, limits: 400/413),
    without saving anything: for callers that hold unsaved drafts (live training)."""
    size = (image.width, image.height)
    return _check_masks(image, _b64_mask(classes_png, "classes_png", size),
                        _b64_mask(instances_png, "instances_png", size))


def _validate_strokes(strokes: Any) -> list:
    if strokes is None:
        return []
    if not isinstance(strokes, list) or not all(isinstance(s, dict) for s in strokes):
        raise ValidationError({"strokes": "expected a list of stroke objects"})
    return strokes


def save_annotation(*, user, image_id: int, version: Any, classes_png: Any = None, instances_png: Any = None,
                    strokes: Any = None) -> Annotation:
    """Save the masks as a new version, if ``version`` is still the current one (else 409, nothing written).

    The overwritten state is kept as an ``AnnotationRevision``. The version check is one conditional
    UPDATE (``WHERE id = ? AND version = ?``) under a row lock, so of two saves based on the same
    version exactly one wins.
    """
    image = get_image_for(user, image_id, Role.ANNOTATOR)
    return save_annotation_for(image, user=user, version=version, classes_png=classes_png,
                               instances_png=instances_png, strokes=strokes)


def save_annotation_for(image: Image, *, user, version: Any, classes_png: Any = None, instances_png: Any = None,
                        strokes: Any = None) -> Annotation:
    """:func:`save_annotation` without the permission check (admin actions): the masks as base64 (the API's
    encoding, decoded here with the size checks made before any pixel is decompressed)."""
    size = (image.width, image.height)
    return save_masks(image, user=user, version=version, classes=_b64_mask(classes_png, "classes_png", size),
                      instances=_b64_mask(instances_png, "instances_png", size), strokes=strokes)


def save_masks(image: Image, *, user, version: Any, classes: np.ndarray | None = None,
               instances: np.ndarray | None = None, strokes: Any = None) -> Annotation:
    """Save mask arrays (class uint8, instance ids) as the image's next annotation version (409 when
    ``version`` is stale); no permission check: internal callers (accepting a prediction, restoring a
    revision, the demo command) check it themselves and hand over arrays, never base64."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValidationError({"version": "the version this save is based on (an integer >= 0) is required"})
    classes, instances = _check_masks(image, classes, instances)
    strokes = _validate_strokes(strokes)
    classes_bytes = encode_png(classes) if classes is not None and classes.any() else None
    instances_bytes = encode_png(instances) if instances is not None and instances.any() else None
    labelled = int(np.count_nonzero(classes)) if classes is not None else 0
    with transaction.atomic():
        Annotation.objects.get_or_create(image=image)
        current = Annotation.objects.select_for_update().get(image=image)
        if current.version != version:
            raise _stale(current, version)
        if current.version > 0:
            AnnotationRevision.objects.create(
                image=image, version=current.version, classes_png=current.classes_png,
                instances_png=current.instances_png, strokes=current.strokes,
                labelled_pixels=current.labelled_pixels, updated_by_id=current.updated_by_id,
                updated_at=current.updated_at)
        now = timezone.now()
        updated = Annotation.objects.filter(pk=current.pk, version=version).update(
            classes_png=classes_bytes, instances_png=instances_bytes, strokes=strokes, labelled_pixels=labelled,
            updated_by=user, updated_at=now, version=F("version") + 1)
        if updated != 1:  # only possible without row locks (SQLite): still exactly one winner
            raise _stale(Annotation.objects.get(pk=current.pk), version)
    return Annotation.objects.select_related("updated_by").get(pk=current.pk)


def _stale(current: Annotation, version: int) -> Conflict:
    return Conflict(
        f"The annotation changed since version {version}: it is now version {current.version}. "
        f"Reload it, merge your changes and save again with version {current.version}.",
        code="stale_version",
        extra={"current_version": current.version,
               "updated_by": current.updated_by.username if current.updated_by_id else None,
               "updated_at": current.updated_at.isoformat() if current.updated_at else None},
    )


def restore_revision(*, user, image_id: int, version: int, check_role: bool = True) -> Annotation:
    """Save an old version's masks again as the newest version (the current one goes to history).

    ``check_role=False`` is for the admin (staff who may not be members).
    """
    image = get_image_for(user, image_id, Role.ANNOTATOR) if check_role else Image.objects.get(pk=image_id)
    rev = AnnotationRevision.objects.filter(image=image, version=version).first()
    if rev is None:
        raise NotFound(f"No saved version {version} in this image's history.")
    current = Annotation.objects.filter(image=image).values_list("version", flat=True).first() or 0
    shape = (image.height, image.width)
    classes, instances = (decode_mask(bytes(data), expected_shape=shape) if data else None
                          for data in (rev.classes_png, rev.instances_png))
    return save_masks(image, user=user, version=current, classes=classes, instances=instances, strokes=rev.strokes)
