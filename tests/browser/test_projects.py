"""Projects and project pages in a real browser: login, create a project, batch upload with per-file results."""
from __future__ import annotations

import numpy as np
import pytest

from labseg.ml.synthetic import make_nuclei

from .conftest import PASSWORD, login, png_bytes, tiff_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_required_then_projects_list_shows_membership(page, live_url, project, owner):
    page.goto(f"{live_url}/")
    assert "/accounts/login/" in page.url  # the app is guarded
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", "wrong-password")
    page.click("[data-testid=login-submit]")
    assert page.locator("[data-testid=login-error]").is_visible()

    login(page, live_url, owner.username, PASSWORD)
    card = page.locator(f"[data-testid=project-{project.pk}]")
    card.wait_for()
    assert "Nuclei" in card.inner_text()
    assert "owner" in card.inner_text()
    assert page.console_errors == []


def test_stranger_sees_no_project_and_a_visible_error_for_it(logged_in_page, live_url, project, stranger):
    page = logged_in_page(stranger)
    page.wait_for_selector("[data-testid=project-list]")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=project-list]').textContent.includes('Loading')")
    assert page.locator(f"[data-testid=project-{project.pk}]").count() == 0
    page.goto(f"{live_url}/projects/{project.pk}")
    err = page.locator("[data-testid=page-error]")
    err.wait_for()
    assert "404" in err.inner_text()


def test_create_project_with_classes_through_the_page(logged_in_page, owner):
    from apps.annotate.models import Project

    page = logged_in_page(owner)
    page.fill("[data-testid=project-name]", "Mitochondria")
    page.locator("[data-testid=class-name]").first.fill("mito")
    page.locator("[data-testid=class-color]").first.fill("#00ff88")
    page.get_by_role("button", name="+ class").click()
    page.locator("[data-testid=class-name]").nth(1).fill("membrane")
    page.click("[data-testid=create-project-submit]")
    page.wait_for_url("**/projects/*")
    p = Project.objects.get(name="Mitochondria")
    assert page.url.rstrip("/").endswith(f"/projects/{p.pk}")
    classes = list(p.label_classes.order_by("index").values_list("index", "name", "color"))
    assert classes[0][:2] == (1, "background")
    assert classes[1] == (2, "mito", "#00ff88")
    assert classes[2][:2] == (3, "membrane")
    assert p.role_of(owner) == "owner"


def test_upload_three_files_one_bad_shows_per_file_results(logged_in_page, project, owner, tmp_path):
    from apps.annotate.models import Image

    img, _ = make_nuclei((64, 80), n=4, radius=(6.0, 9.0), seed=1, dtype="uint16", channels=2)
    (tmp_path / "two_channel.tif").write_bytes(tiff_bytes(img.astype(np.uint16)))
    grey, _ = make_nuclei((48, 48), n=3, radius=(5.0, 7.0), seed=2, dtype="uint8", channels=1)
    (tmp_path / "cells.png").write_bytes(png_bytes(grey[0]))
    (tmp_path / "notes.tif").write_text("this is not an image")

    page = logged_in_page(owner, f"/projects/{project.pk}")
    page.set_input_files("[data-testid=upload-input]",
                         [str(tmp_path / n) for n in ("two_channel.tif", "cells.png", "notes.tif")])
    page.wait_for_selector("[data-testid=upload-summary][data-done=true]")
    status = page.locator("[data-testid=upload-status]")
    assert "2 stored, 1 failed" in status.inner_text()
    bad = page.locator("[data-testid=upload-row][data-filename='notes.tif']")
    assert "error" in bad.inner_text()
    assert "stored" in page.locator("[data-testid=upload-row][data-filename='cells.png']").inner_text()
    stored = dict(Image.objects.filter(project=project).values_list("original_filename", "channels"))
    assert stored == {"two_channel.tif": 2, "cells.png": 1}
    # the grid shows the two new images with their thumbnails
    grid = page.locator("[data-testid=image-grid] .image-card")
    grid.first.wait_for()
    assert grid.count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('.image-card img')].every(i => i.complete && i.naturalWidth > 0)")


def test_network_failure_and_missing_image_show_visible_errors(logged_in_page, live_url, project, owner):
    page = logged_in_page(owner)
    page.wait_for_selector(f"[data-testid=project-{project.pk}]")
    page.route("**/api/v1/projects/", lambda route: route.abort())  # the server is unreachable
    page.reload()
    err = page.locator("[data-testid=page-error]")
    err.wait_for()
    assert "Network error" in err.inner_text()
    page.unroute("**/api/v1/projects/")
    page.goto(f"{live_url}/projects/{project.pk}/images/999999/annotate")
    err = page.locator("[data-testid=page-error]")
    err.wait_for()
    assert "404" in err.inner_text()


def test_owner_adds_and_removes_a_member_through_the_page(logged_in_page, project, owner, make_user):
    from apps.annotate.models import Membership

    newcomer = make_user("nina_newcomer")
    page = logged_in_page(owner, f"/projects/{project.pk}")
    members = page.locator("[data-testid=member-list]")
    members.locator("li").first.wait_for()
    page.fill("[data-testid=member-username]", "nina_newcomer")
    page.select_option("[data-testid=member-role]", "viewer")
    page.get_by_role("button", name="Invite").click()
    members.locator("li", has_text="nina_newcomer").wait_for()
    assert Membership.objects.get(project=project, user=newcomer).role == "viewer"
    page.fill("[data-testid=member-username]", "nobody_here")
    page.get_by_role("button", name="Invite").click()
    page.locator("[data-testid=toast-error]").wait_for()  # a 4xx is shown, not swallowed
    members.locator("li", has_text="nina_newcomer").get_by_role("button", name="remove").click()
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=member-list]').textContent.includes('nina_newcomer')")
    assert not Membership.objects.filter(project=project, user=newcomer).exists()


def test_owner_sets_the_object_size_and_an_annotator_reads_it(logged_in_page, live_url, project, owner, annotator):
    page = logged_in_page(owner, f"/projects/{project.pk}")
    status = page.locator("[data-testid=object-diameter-status]")
    status.wait_for()
    assert "Not set" in status.inner_text()
    page.fill("[data-testid=object-diameter]", "3")  # under the bound: the server's message, nothing stored
    page.click("[data-testid=object-diameter-save]")
    toast = page.locator("[data-testid=toast-error]")
    toast.wait_for()
    assert "greater than or equal to 4" in toast.inner_text()
    project.refresh_from_db()
    assert project.object_diameter is None
    page.fill("[data-testid=object-diameter]", "24")
    page.click("[data-testid=object-diameter-save]")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=object-diameter-status]').textContent.startsWith('Set: 24 px')")
    project.refresh_from_db()
    assert project.object_diameter == 24.0
    page.goto(f"{live_url}/projects/{project.pk}/train")  # the Training page says what the next run uses
    assert "24 px diameter" in page.locator("[data-testid=train-object-size]").inner_text()
    # the only errors logged are the 400 asked for above (the request and its message)
    assert len(page.console_errors) == 2 and all("400" in e for e in page.console_errors), page.console_errors

    page.goto(f"{live_url}/projects/{project.pk}")
    page.click("[data-testid=object-diameter-clear]")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=object-diameter-status]').textContent.startsWith('Not set')")
    project.refresh_from_db()
    assert project.object_diameter is None
    page.fill("[data-testid=object-diameter]", "20.5")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=object-diameter-status]').textContent.startsWith('Set: 20.5 px')")

    other = logged_in_page(annotator, f"/projects/{project.pk}")  # members see it; only owners change it
    other.locator("[data-testid=object-diameter-status]").wait_for()
    assert other.locator("[data-testid=object-diameter-status]").inner_text().startswith("Set: 20.5 px")
    assert other.locator("[data-testid=object-diameter]").count() == 0
