"""``manage.py labseg_demo`` creates the admin and the demo project once, and is safe to run again."""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command

from apps.annotate.masks import annotation_arrays
from apps.annotate.models import Image, Project


@pytest.mark.django_db
def test_demo_command_is_idempotent_and_prints_the_password(settings, tmp_path, monkeypatch, django_user_model):
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.delenv("LABSEG_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("LABSEG_ADMIN_USER", raising=False)
    out = io.StringIO()
    call_command("labseg_demo", stdout=out)
    password = (tmp_path / "var" / "admin-password.txt").read_text().strip()
    assert password and password in out.getvalue()
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    project = Project.objects.get(name="Demo nuclei")
    images = {i.original_filename: i for i in project.images.all()}
    assert len(images) == 2
    # every project has one channel count, so a model trained on it can predict all its images
    assert {i.channels for i in project.images.all()} == {1}
    two = Project.objects.get(name="Demo nuclei, two channels")
    assert [(i.original_filename, i.channels) for i in two.images.all()] == [("nuclei_512_2ch.tif", 2)]
    assert (annotation_arrays(two.images.get().annotation)[0] > 0).any()
    main = images["nuclei_512_16bit.tif"]
    assert (main.width, main.height, main.dtype, main.channels) == (512, 512, "uint16", 1)
    classes, _ = annotation_arrays(main.annotation)
    assert 0 < (classes > 0).mean() < 0.5 and set(np.unique(classes)) <= {0, 1, 2}  # sparse strokes
    val = images["nuclei_512_validation.tif"]
    vclasses, vinst = annotation_arrays(val.annotation)
    assert val.split == "validation" and (vclasses > 0).all() and vinst.max() > 5  # dense, with instances

    call_command("labseg_demo", stdout=io.StringIO())  # again: nothing duplicated, same password
    assert Project.objects.filter(name__startswith="Demo nuclei").count() == 2 and Image.objects.count() == 3
    assert main.annotation.__class__.objects.get(pk=main.annotation.pk).version == 1
    assert (tmp_path / "var" / "admin-password.txt").read_text().strip() == password


@pytest.mark.django_db
def test_demo_command_takes_credentials_from_the_environment(settings, tmp_path, monkeypatch, django_user_model):
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.setenv("LABSEG_ADMIN_USER", "pi")
    monkeypatch.setenv("LABSEG_ADMIN_PASSWORD", "s3cret-pass")
    call_command("labseg_demo", stdout=io.StringIO())
    assert django_user_model.objects.get(username="pi").check_password("s3cret-pass")
    assert not (tmp_path / "var" / "admin-password.txt").exists()
