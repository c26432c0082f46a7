"""Uploads are checked against the project's channel count at once (training used to fail on a mixed
project, minutes later): a per-file 400 that says what the project expects, the other files kept."""
from __future__ import annotations

import pytest

from apps.annotate.models import Image

from .conftest import nuclei, tiff_bytes, upload

pytestmark = pytest.mark.django_db


def post_files(client, project, files):
    return client.post(f"/api/v1/projects/{project.pk}/images/", {"files": files}, format="multipart")


def tif(channels, seed=0):
    array = nuclei(channels=channels, dtype="uint16", seed=seed)
    array = array if channels > 1 else array[0]
    return tiff_bytes(array, metadata={"axes": "CYX" if channels > 1 else "YX"}, photometric="minisblack")


def test_the_first_image_sets_the_channel_count_and_a_different_one_is_refused(client_for, annotator, project):
    client = client_for(annotator)
    r = post_files(client, project, [upload("a.tif", tif(2, 0)), upload("rgbish.tif", tif(3, 1)),
                                     upload("b.tif", tif(2, 2))])
    assert r.status_code == 207, r.json()
    first, bad, second = r.json()["results"]
    assert first["status"] == 201 and second["status"] == 201
    assert bad["status"] == 400 and bad["code"] == "channel_mismatch"
    assert "3 channel" in bad["error"] and "have 2" in bad["error"]
    assert sorted(Image.objects.filter(project=project).values_list("channels", flat=True)) == [2, 2]
    # a later batch is checked against the stored images
    r = post_files(client, project, [upload("single.tif", tif(1, 3))])
    assert r.status_code == 400 and r.json()["results"][0]["code"] == "channel_mismatch"
    assert Image.objects.filter(project=project).count() == 2


def test_named_channels_of_an_empty_project_set_the_count(client_for, owner, annotator, project):
    r = client_for(owner).patch(f"/api/v1/projects/{project.pk}/", {"channels": ["DAPI", "GFP"]}, format="json")
    assert r.status_code == 200, r.json()
    r = post_files(client_for(annotator), project, [upload("one.tif", tif(1))])
    assert r.status_code == 400
    (res,) = r.json()["results"]
    assert res["code"] == "channel_mismatch" and "(DAPI, GFP)" in res["error"]
    assert post_files(client_for(annotator), project, [upload("two.tif", tif(2))]).status_code == 201


def test_channel_names_must_match_the_images(client_for, owner, annotator, project):
    assert post_files(client_for(annotator), project, [upload("two.tif", tif(2))]).status_code == 201
    r = client_for(owner).patch(f"/api/v1/projects/{project.pk}/", {"channels": ["DAPI"]}, format="json")
    assert r.status_code == 400 and "2 channel" in str(r.json())
    project.refresh_from_db()
    assert project.channels == []
    r = client_for(owner).patch(f"/api/v1/projects/{project.pk}/", {"channels": ["DAPI", "GFP"]}, format="json")
    assert r.status_code == 200 and r.json()["channels"] == ["DAPI", "GFP"]
