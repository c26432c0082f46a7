"""``manage.py labseg_demo``: an admin user and a demo project, idempotently (safe to run on every start).

Admin credentials come from LABSEG_ADMIN_USER / LABSEG_ADMIN_PASSWORD; without a password one is
generated once, saved in ``var/admin-password.txt`` and printed. The project "Demo nuclei" gets a
512x512 16-bit image of touching nuclei with a few brush strokes as its annotation, a 2-channel image,
and a validation image with a dense annotation (classes + instances).
"""
from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import tifffile
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand

from apps.annotate import services
from apps.annotate.models import Annotation, Image, Project, Split
from labseg.ml.synthetic import classes_from_instances, make_nuclei, scribbles

PROJECT_NAME = "Demo nuclei"
PROJECT_NAME_2CH = "Demo nuclei, two channels"
SHAPE = (512, 512)


def _tiff(image) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, imagej=True, metadata={"axes": "CYX"})
    return buf.getvalue()


class Command(BaseCommand):
    help = "Create the admin user and the demo project (idempotent)."

    def handle(self, *args, **options):
        admin, password = self._admin()
        # One channel count per project: a U-Net takes a fixed number of input channels, so the
        # 2-channel example lives in a project of its own (a mixed project would fail to predict).
        demos = [
            (PROJECT_NAME, ["DAPI"], [  # (file name, channels, seed, split, annotation)
                ("nuclei_512_16bit.tif", 1, 1, Split.TRAIN, "strokes"),
                ("nuclei_512_validation.tif", 1, 3, Split.VALIDATION, "dense"),
            ]),
            (PROJECT_NAME_2CH, ["DAPI", "membrane"], [
                ("nuclei_512_2ch.tif", 2, 2, Split.TRAIN, "strokes"),
            ]),
        ]
        for project_name, channel_names, specs in demos:
            project = self._project(admin, project_name, channel_names)
            for name, channels, seed, split, kind in specs:
                self._image(project, admin, name, channels, seed, split, kind)
            self.stdout.write(self.style.SUCCESS(
                f"Demo project '{project.name}' (id {project.pk}) has {project.images.count()} images."))
        self.stdout.write(f"Admin user: {admin.username}   password: {password}")

    def _admin(self):
        User = get_user_model()
        username = os.environ.get("LABSEG_ADMIN_USER") or "admin"
        password = os.environ.get("LABSEG_ADMIN_PASSWORD") or None  # empty (compose default) = unset
        pw_file = Path(settings.VAR_DIR) / "admin-password.txt"
        user = User.objects.filter(username=username).first()
        if password is None:
            if pw_file.is_file() and user is not None:
                return user, pw_file.read_text().strip()
            password = secrets.token_urlsafe(12)
            pw_file.parent.mkdir(parents=True, exist_ok=True)
            pw_file.write_text(password + "\n")
            pw_file.chmod(0o600)
        if user is None:
            user = User.objects.create_superuser(username=username, email="", password=password)
        elif not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        return user, password

    def _project(self, admin, name: str, channels: list[str]) -> Project:
        project = Project.objects.filter(name=name, memberships__user=admin).first()
        if project is None:
            project = services.create_project(
                user=admin, name=name, description="Synthetic fluorescence-like nuclei, many touching.",
                channels=channels, classes=[{"name": "nucleus", "color": "#ff0000"}])
        return project

    def _image(self, project, admin, name, channels, seed, split, kind) -> Image:
        image_arr, instances = make_nuclei(SHAPE, seed=seed, dtype="uint16", channels=channels)
        status, results = services.upload_images(user=admin, project_id=project.pk,
                                                 files=[SimpleUploadedFile(name, _tiff(image_arr))])
        image_id = results[0].get("id") or results[0].get("duplicate_of")
        if image_id is None:
            raise RuntimeError(f"demo image {name} was not stored: {results[0]}")
        image = Image.objects.get(pk=image_id)
        if image.split != split:
            image.split = split
            image.save(update_fields=["split"])
        if kind and not Annotation.objects.filter(image=image, version__gt=0).exists():
            if kind == "strokes":
                classes, inst = scribbles(instances, n_strokes=12, seed=seed), None
            else:
                classes, inst = classes_from_instances(instances), instances.astype("uint16")
            services.save_masks(image, user=admin, version=0, classes=classes, instances=inst, strokes=[])
        return image
