"""Weight-map cache files (MEDIA_ROOT/cache/weights/ann<id>-v<version>-<digest>.npy) go with their image or
project: deleting either removes them (every version, torn temporary files too), and nothing else's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from apps.annotate.models import Annotation
from apps.inference.services import weight_map_of

from .conftest import add_image

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_media_root(settings, tmp_path):
    """Annotation ids repeat across test runs (sequences are reset), so files another test left in the shared
    MEDIA_ROOT would carry the same names: each test gets its own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


def cache_files(image) -> list[Path]:
    """The real cache file of the image's current annotation (written by the training pipeline's
    ``cached_weight_map``), plus an older version's and a torn temporary one next to it."""
    weight_map_of(image)
    ann = Annotation.objects.get(image=image)
    folder = Path(settings.MEDIA_ROOT) / "cache" / "weights"
    real = sorted(folder.glob(f"ann{ann.pk}-v{ann.version}-*.npy"))
    assert len(real) == 1
    older = folder / f"ann{ann.pk}-v{ann.version - 1}-0123456789abcdef.npy"
    torn = folder / f"ann{ann.pk}-v{ann.version}-0123456789abcdef.12345.tmp.npy"
    for p in (older, torn):
        np.save(p, np.zeros((2, 2), np.float32))
    return [*real, older, torn]


def test_deleting_an_image_removes_its_weight_caches_only(client_for, owner, project,
                                                          django_capture_on_commit_callbacks):
    image, other = add_image(project, seed=1), add_image(project, seed=2)
    gone, kept = cache_files(image), cache_files(other)
    ann = Annotation.objects.get(image=image)
    lookalike = gone[0].parent / f"ann{ann.pk}0-v1-0123456789abcdef.npy"  # another annotation's id prefix
    np.save(lookalike, np.zeros((1, 1), np.float32))
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).delete(f"/api/v1/images/{image.pk}/")
    assert r.status_code == 204
    assert not any(p.exists() for p in gone)
    assert all(p.is_file() for p in kept) and lookalike.is_file()


def test_deleting_a_project_removes_the_weight_caches_of_all_its_images(client_for, owner, project,
                                                                       django_capture_on_commit_callbacks):
    files = cache_files(add_image(project, seed=3)) + cache_files(add_image(project, seed=4))
    assert all(p.is_file() for p in files)
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).delete(f"/api/v1/projects/{project.pk}/")
    assert r.status_code == 204
    assert not any(p.exists() for p in files)


def test_a_rolled_back_delete_keeps_the_caches(owner, project, monkeypatch):
    from apps.annotate import services

    image = add_image(project, seed=5)
    files = cache_files(image)
    monkeypatch.setattr("apps.annotate.models.Image.delete", lambda self: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        services.delete_image(user=owner, image_id=image.pk)
    assert all(p.is_file() for p in files)
