"""Fixtures for the annotate tests: images written with tifffile/PIL, stored through the upload service."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

# tiff_bytes and nuclei live in tests/helpers.py; the annotate tests import them from here
from tests.helpers import nuclei, tiff_bytes


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Each test writes its files under its own temporary MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"
    # Personas are created per test: a fast hasher keeps the role x endpoint table cheap on 2 cores.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.fixture
def stored_image(project, owner):
    """An image (2 channels, uint16, 64x80) stored in ``project`` through the upload service."""
    from apps.annotate import services
    from apps.annotate.models import Image

    array = nuclei(channels=2)
    status, results = services.upload_images(
        user=owner, project_id=project.pk, files=[upload("cells.tif", tiff_bytes(array, metadata={"axes": "CYX"}))])
    assert status == 201, results
    img = Image.objects.get(pk=results[0]["id"])
    img._array = array  # the pixels the test wrote, for comparisons
    return img
