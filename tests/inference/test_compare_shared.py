"""The comparison of two versions counts only the images both were scored on (issue 11.6)."""
import pytest

from apps.training.models import ModelVersion
from apps.training.services import record_metric_scores

pytestmark = pytest.mark.django_db


def test_compare_means_only_the_images_both_versions_were_scored_on(project, make_image, viewer, client_for):
    # v1 scored on images 1, 2, 3; v2 on images 2, 3, 4. v2 looks perfect on image 4 alone (the trap of
    # issue 11.6); on the two shared images it is worse than v1.
    ims = [make_image(project, seed=s, split="validation")[0] for s in range(4)]
    a = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    b = ModelVersion.objects.create(project=project, number=2, checkpoint="b.pt", parent=a)
    for im, pe, iou in zip(ims[:3], (0.50, 0.10, 0.20), (0.10, 0.80, 0.60)):
        record_metric_scores(a, im, "validation", {"pixel_error": pe, "iou_fg": iou, "iou_class_2": iou})
    for im, pe, iou in zip(ims[1:], (0.20, 0.30, 0.00), (0.70, 0.50, 1.00)):
        record_metric_scores(b, im, "validation", {"pixel_error": pe, "iou_fg": iou})
    r = client_for(viewer).get(f"/api/v1/projects/{project.pk}/model-versions/compare/?a={a.pk}&b={b.pk}")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["shared_images"] == 2 and body["only_a"] == 1 and body["only_b"] == 1
    assert body["shared_splits"] == {"validation": 2}
    agg = body["aggregate"]
    # by hand, images 2 and 3: pixel error a = (0.10 + 0.20) / 2 = 0.15, b = (0.20 + 0.30) / 2 = 0.25
    assert agg["pixel_error"]["a"] == pytest.approx(0.15) and agg["pixel_error"]["b"] == pytest.approx(0.25)
    assert agg["pixel_error"]["verdict"] == "worse" and agg["pixel_error"]["n"] == 2
    # foreground IoU a = (0.80 + 0.60) / 2 = 0.70, b = (0.70 + 0.50) / 2 = 0.60 (over all of b's: 0.733, "better")
    assert agg["iou_fg"]["a"] == pytest.approx(0.70) and agg["iou_fg"]["b"] == pytest.approx(0.60)
    assert agg["iou_fg"]["verdict"] == "worse"
    assert "iou_class_2" not in agg  # only v1 has it: not compared
    assert [i["image"] for i in body["images"]] == [ims[1].pk, ims[2].pk]


def test_compare_of_versions_without_shared_images_has_no_aggregate(project, make_image, viewer, client_for):
    im1, _, _ = make_image(project, seed=1, split="validation")
    im2, _, _ = make_image(project, seed=2, split="validation")
    a = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    b = ModelVersion.objects.create(project=project, number=2, checkpoint="b.pt")
    record_metric_scores(a, im1, "validation", {"pixel_error": 0.5})
    record_metric_scores(b, im2, "validation", {"pixel_error": 0.0})
    body = client_for(viewer).get(f"/api/v1/projects/{project.pk}/model-versions/compare/?a={a.pk}&b={b.pk}").json()
    assert body["shared_images"] == 0 and body["aggregate"] == {}


@pytest.mark.parametrize("who,status", [("owner", 200), ("annotator", 200), ("viewer", 200), ("stranger", 404)])
def test_compare_by_role(who, status, project, request, client_for):
    a = ModelVersion.objects.create(project=project, number=1, checkpoint="a.pt")
    b = ModelVersion.objects.create(project=project, number=2, checkpoint="b.pt")
    url = f"/api/v1/projects/{project.pk}/model-versions/compare/?a={a.pk}&b={b.pk}"
    r = client_for(request.getfixturevalue(who)).get(url)
    assert r.status_code == status and r["Content-Type"].startswith("application/json")
