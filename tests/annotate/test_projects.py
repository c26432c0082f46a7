"""Projects, members and classes: creation rules, last-owner protection, class indices."""
from __future__ import annotations

import pytest

from apps.annotate.models import LabelClass, Membership, Project, Role

pytestmark = pytest.mark.django_db


def test_create_project_gives_background_1_and_classes_from_2(client_for, stranger):
    r = client_for(stranger).post("/api/v1/projects/", {
        "name": "Mito", "classes": [{"name": "nucleus", "color": "#FF0000"}, {"name": "mitochondrion"}]},
        format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert [(c["index"], c["name"]) for c in body["classes"]] == [(1, "background"), (2, "nucleus"),
                                                                   (3, "mitochondrion")]
    assert body["classes"][1]["color"] == "#ff0000" and body["my_role"] == "owner" and body["image_count"] == 0
    assert Membership.objects.get(project_id=body["id"], user=stranger).role == Role.OWNER


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "x", "classes": [{"name": "a", "color": "red"}]},
                                     {"name": "x", "classes": [{"name": "a"}, {"name": "A"}]},
                                     {"name": "x", "classes": "nucleus"}])
def test_bad_project_input_is_400_and_creates_nothing(client_for, stranger, payload):
    r = client_for(stranger).post("/api/v1/projects/", payload, format="json")
    assert r.status_code == 400 and r.json()["detail"]
    assert not Project.objects.filter(owner=stranger).exists()


def test_owner_cannot_remove_or_demote_the_last_owner(client_for, owner, project):
    c = client_for(owner)
    r = c.delete(f"/api/v1/projects/{project.pk}/members/{owner.username}/")
    assert r.status_code == 400 and "last owner" in r.json()["detail"]
    r = c.patch(f"/api/v1/projects/{project.pk}/members/{owner.username}/", {"role": "viewer"}, format="json")
    assert r.status_code == 400 and "at least one owner" in r.json()["detail"]
    assert project.role_of(owner) == Role.OWNER
    # With a second owner, the first may step down.
    assert c.patch(f"/api/v1/projects/{project.pk}/members/anna_annotator/", {"role": "owner"},
                   format="json").status_code == 200
    assert c.delete(f"/api/v1/projects/{project.pk}/members/{owner.username}/").status_code == 204
    assert project.role_of(owner) is None


def test_member_add_errors_are_clear(client_for, owner, project, make_user):
    c = client_for(owner)
    assert c.post(f"/api/v1/projects/{project.pk}/members/", {"username": "ghost"}, format="json").status_code == 400
    r = c.post(f"/api/v1/projects/{project.pk}/members/", {"username": "victor_viewer"}, format="json")
    assert r.status_code == 400 and "already a member" in r.json()["detail"]
    make_user("bob")
    assert c.post(f"/api/v1/projects/{project.pk}/members/", {"username": "bob", "role": "boss"},
                  format="json").status_code == 400
    r = c.post(f"/api/v1/projects/{project.pk}/members/", {"username": "bob"}, format="json")
    assert r.status_code == 201 and r.json()["role"] == "annotator"
    assert c.delete(f"/api/v1/projects/{project.pk}/members/nobody/").status_code == 404


def test_classes_add_rename_recolour(client_for, owner, project):
    c = client_for(owner)
    r = c.post(f"/api/v1/projects/{project.pk}/classes/", {"name": "mitosis"}, format="json")
    assert r.status_code == 201 and r.json()["index"] == 3
    assert c.post(f"/api/v1/projects/{project.pk}/classes/", {"name": "Mitosis"}, format="json").status_code == 400
    r = c.patch(f"/api/v1/projects/{project.pk}/classes/3/", {"name": "dividing", "color": "#00FF00"}, format="json")
    assert r.status_code == 200 and r.json() == {"index": 3, "name": "dividing", "color": "#00ff00"}
    assert c.patch(f"/api/v1/projects/{project.pk}/classes/9/", {"name": "x"}, format="json").status_code == 404
    assert c.patch(f"/api/v1/projects/{project.pk}/classes/3/", {"color": "green"}, format="json").status_code == 400
    assert list(LabelClass.objects.filter(project=project).values_list("index", flat=True)) == [1, 2, 3]


def test_project_patch_and_delete(client_for, owner, project, django_capture_on_commit_callbacks):
    c = client_for(owner)
    r = c.patch(f"/api/v1/projects/{project.pk}/", {"name": "Renamed", "channels": ["DAPI"]}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "Renamed" and r.json()["channels"] == ["DAPI"]
    with django_capture_on_commit_callbacks(execute=True):
        assert c.delete(f"/api/v1/projects/{project.pk}/").status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert c.get(f"/api/v1/projects/{project.pk}/").status_code == 404


def test_owner_sets_and_clears_the_object_diameter_within_bounds(client_for, owner, annotator, project):
    c = client_for(owner)
    url = f"/api/v1/projects/{project.pk}/"
    assert c.get(url).json()["object_diameter"] is None  # unset: measured from what is painted
    r = c.patch(url, {"object_diameter": 24.5}, format="json")
    assert r.status_code == 200 and r.json()["object_diameter"] == 24.5
    project.refresh_from_db()
    assert project.object_diameter == 24.5
    # out of bounds, not a number, NaN / infinity: 400 naming the field, the stored value unchanged
    for bad in (3.9, 1000.5, "wide", "NaN", "Infinity", "1e400", [24]):
        r = c.patch(url, {"object_diameter": bad}, format="json")
        assert r.status_code == 400 and "object_diameter" in str(r.json()), (bad, r.json())
    project.refresh_from_db()
    assert project.object_diameter == 24.5
    # an annotator reads it but may not change it
    a = client_for(annotator)
    assert a.get(url).json()["object_diameter"] == 24.5
    assert a.patch(url, {"object_diameter": 10}, format="json").status_code == 403
    # another field's patch leaves it alone; null clears it
    assert c.patch(url, {"name": "Renamed"}, format="json").json()["object_diameter"] == 24.5
    r = c.patch(url, {"object_diameter": None}, format="json")
    assert r.status_code == 200 and r.json()["object_diameter"] is None and r.json()["name"] == "Renamed"
    # set when the project is created
    r = c.post("/api/v1/projects/", {"name": "Rods", "object_diameter": 8}, format="json")
    assert r.status_code == 201 and r.json()["object_diameter"] == 8.0


def test_a_patch_writes_only_its_own_fields(owner, project, monkeypatch):
    """Two owners saving different fields at once: the later save, holding the row as it was loaded before the
    earlier one landed, writes only what it was given, so it does not put back the name the other replaced."""
    from apps.annotate import services

    stale = Project.objects.get(pk=project.pk)  # loaded by the second request ...
    Project.objects.filter(pk=project.pk).update(name="Renamed")  # ... before the first request's save landed
    monkeypatch.setattr(services, "get_project_for", lambda *args, **kwargs: stale)
    services.update_project(user=owner, project_id=project.pk, object_diameter=14.0)
    project.refresh_from_db()
    assert (project.name, project.object_diameter) == ("Renamed", 14.0)


def test_the_database_refuses_an_object_diameter_out_of_bounds_whoever_writes_it(project):
    from django.db import IntegrityError, transaction

    for bad in (3.9, 1000.5, float("nan"), float("inf")):
        with pytest.raises(IntegrityError), transaction.atomic():
            Project.objects.filter(pk=project.pk).update(object_diameter=bad)
    Project.objects.filter(pk=project.pk).update(object_diameter=4.0)
    project.refresh_from_db()
    assert project.object_diameter == 4.0
