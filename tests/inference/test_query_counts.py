"""The Models page's reads cost a fixed number of queries, whatever the number of versions and images (the
page took 12.7 s while a worker was busy: a query per image or per version multiplies every slow query)."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from .conftest import create_tiny_version

METRICS = ("pixel_error", "rand_error", "f1@0.5", "foreground_iou")


def _populate(project, make_image, n_versions, n_images):
    from apps.training.models import MetricScore

    images = [make_image(project, seed=i, split="val")[0] for i in range(n_images)]
    versions, parent = [], None
    for number in range(1, n_versions + 1):
        v = create_tiny_version(project, number=number, parent=parent)
        rows = [MetricScore(model_version=v, image=im, split="val", name=m, value=0.1 * number, method=method)
                for im in images for m in METRICS for method in ("unet", "threshold", "forest")]
        rows += [MetricScore(model_version=v, image=None, split="val", name=m, value=0.1, method=method)
                 for m in METRICS for method in ("unet", "threshold", "forest")]
        MetricScore.objects.bulk_create(rows)
        versions.append(v)
        parent = v
    return versions


def _queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200, r.content[:300]
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_models_page_reads_do_not_grow_with_versions_or_images(project, owner, client_for, make_image):
    from apps.annotate.models import Project

    client = client_for(owner)
    small = _populate(project, make_image, 2, 1)
    other = Project.objects.create(name="Big", owner=owner)
    from apps.annotate.models import LabelClass, Membership, Role

    LabelClass.objects.create(project=other, index=1, name="background", color="#0000ff")
    LabelClass.objects.create(project=other, index=2, name="nucleus", color="#ff0000")
    Membership.objects.create(project=other, user=owner, role=Role.OWNER)
    big = _populate(other, make_image, 6, 8)

    for make_url in (lambda p, vs: f"/api/v1/projects/{p.pk}/model-versions/",
                     lambda p, vs: f"/api/v1/model-versions/{vs[-1].pk}/metrics/",
                     lambda p, vs: f"/api/v1/projects/{p.pk}/model-versions/compare/?a={vs[0].pk}&b={vs[1].pk}"):
        few = _queries(client, make_url(project, small))
        many = _queries(client, make_url(other, big))
        assert many <= few, (make_url(other, big), few, many)
