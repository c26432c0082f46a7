"""API of predictions without a worker: roles, validation, weight maps, unfinished predictions."""
import io

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage as ndi

from apps.annotate.masks import encode_png
from apps.annotate.models import Annotation
from apps.inference.models import Prediction
from apps.training.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def bare_version(project):
    return ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")


def png_array(response) -> np.ndarray:
    assert response["Content-Type"] == "image/png", response.content[:200]
    return np.asarray(PILImage.open(io.BytesIO(b"".join(response.streaming_content)
                                               if response.streaming else response.content)))


def two_touching_objects(h=40, w=60):
    """Two rectangles separated by a 2-px background gap; everything labelled (dense)."""
    instances = np.zeros((h, w), np.uint16)
    instances[10:30, 10:28] = 1
    instances[10:30, 30:50] = 2
    classes = np.where(instances > 0, 2, 1).astype(np.uint8)
    return classes, instances


@pytest.mark.parametrize("who,expected", [("owner", 202), ("annotator", 202), ("viewer", 403),
                                          ("stranger", 404), (None, 401)])
def test_predict_endpoint_needs_the_annotator_role(request, who, expected, project, make_image, bare_version,
                                                   client_for):
    im, _, _ = make_image(project)
    user = request.getfixturevalue(who) if who else None
    r = client_for(user).post(f"/api/v1/model-versions/{bare_version.pk}/predict/", {"image_ids": [im.pk]},
                              format="json")
    assert r.status_code == expected, r.content
    assert Prediction.objects.count() == (1 if expected == 202 else 0)
    if expected == 202:
        body = r.json()
        assert body[0]["image"] == im.pk and body[0]["status"] == "queued"
    else:
        assert set(r.json()) >= {"detail", "code"}


def test_predict_all_and_asking_twice_gives_the_same_jobs(project, make_image, bare_version, annotator, client_for):
    ims = [make_image(project, seed=s)[0] for s in range(2)]
    c = client_for(annotator)
    first = c.post(f"/api/v1/model-versions/{bare_version.pk}/predict/", {"all": True}, format="json").json()
    second = c.post(f"/api/v1/model-versions/{bare_version.pk}/predict/", {"all": True}, format="json").json()
    assert sorted(p["image"] for p in first) == sorted(i.pk for i in ims)
    assert sorted(p["id"] for p in first) == sorted(p["id"] for p in second)


@pytest.mark.parametrize("body", [{}, {"image_ids": []}, {"image_ids": ["x"]}, {"image_ids": [1], "all": True},
                                  {"image_ids": [999999]}])
def test_bad_predict_requests_answer_400(body, project, make_image, bare_version, annotator, client_for):
    make_image(project)
    r = client_for(annotator).post(f"/api/v1/model-versions/{bare_version.pk}/predict/", body, format="json")
    assert r.status_code == 400 and r.json()["code"] == "invalid"
    assert Prediction.objects.count() == 0


def test_maps_of_an_unfinished_prediction_answer_409(project, make_image, bare_version, viewer, client_for):
    im, _, _ = make_image(project)
    pred = Prediction.objects.create(image=im, model_version=bare_version)
    c = client_for(viewer)
    assert c.get(f"/api/v1/predictions/{pred.pk}/").json()["status"] == "queued"
    for name in ("classes.png", "probability.png", "uncertainty.png", "outlines.png", "instances.tif"):
        r = c.get(f"/api/v1/predictions/{pred.pk}/{name}")
        assert r.status_code == 409 and r.json()["code"] == "not_ready", name


def test_predictions_of_other_projects_are_hidden(project, make_image, bare_version, stranger, client_for):
    im, _, _ = make_image(project)
    pred = Prediction.objects.create(image=im, model_version=bare_version)
    assert client_for(stranger).get(f"/api/v1/predictions/{pred.pk}/").status_code == 404


def test_weight_map_is_brightest_in_the_gap_between_touching_objects(project, make_image, viewer, client_for):
    from labseg.ml.weights import weight_map

    im, _, _ = make_image(project, shape=(40, 60))
    classes, instances = two_touching_objects()
    Annotation.objects.create(image=im, classes_png=encode_png(classes), instances_png=encode_png(instances),
                              version=1, labelled_pixels=int((classes > 0).sum()))
    grey = png_array(client_for(viewer).get(f"/api/v1/images/{im.pk}/weight-map.png?style=grey"))
    assert grey.shape == (40, 60) and grey.dtype == np.uint8
    expected = weight_map(classes, instances)
    np.testing.assert_allclose(grey, np.round(expected / expected.max() * 255), atol=1)
    gap = grey[12:28, 28:30]
    far_background = grey[0:3, :]
    # The border term w0 * exp(-(d1 + d2)^2 / 2 sigma^2) peaks where d1 + d2 is smallest: in the gap.
    d1 = ndi.distance_transform_edt(instances != 1)
    d2 = ndi.distance_transform_edt(instances != 2)
    assert (d1 + d2)[12:28, 28:30].max() == 3.0  # 1 px to one object, 2 px to the other
    assert gap.min() == 255 and far_background.max() < 100
    colour = png_array(client_for(viewer).get(f"/api/v1/images/{im.pk}/weight-map.png"))
    assert colour.shape == (40, 60, 3)


def test_weight_map_region_and_level_select_pixels(project, make_image, viewer, client_for):
    im, _, _ = make_image(project, shape=(40, 60))
    classes, instances = two_touching_objects()
    Annotation.objects.create(image=im, classes_png=encode_png(classes), instances_png=encode_png(instances),
                              version=1, labelled_pixels=int((classes > 0).sum()))
    c = client_for(viewer)
    full = png_array(c.get(f"/api/v1/images/{im.pk}/weight-map.png?style=grey")).astype(int)
    part = png_array(c.get(f"/api/v1/images/{im.pk}/weight-map.png?style=grey&x=20&y=5&w=30&h=20&level=1"))
    assert part.shape == (10, 15)
    # Normalised by the region's own maximum: the same pixels up to a scale.
    ref = full[5:25:2, 20:50:2]
    np.testing.assert_allclose(part / part.max(), ref / ref.max(), atol=0.02)


@pytest.mark.parametrize("query", ["x=-1", "w=0", "level=99", "x=abc", "style=neon", "sigma=0"])
def test_bad_weight_map_parameters_answer_400(query, project, make_image, viewer, client_for):
    im, _, _ = make_image(project, shape=(40, 60))
    classes, instances = two_touching_objects()
    Annotation.objects.create(image=im, classes_png=encode_png(classes), instances_png=encode_png(instances),
                              version=1, labelled_pixels=1)
    r = client_for(viewer).get(f"/api/v1/images/{im.pk}/weight-map.png?{query}")
    assert r.status_code == 400 and "detail" in r.json()


def test_weight_map_without_annotation_is_404(project, make_image, viewer, stranger, client_for):
    im, _, _ = make_image(project)
    r = client_for(viewer).get(f"/api/v1/images/{im.pk}/weight-map.png")
    assert r.status_code == 404 and "annotation" in r.json()["detail"]
    assert client_for(stranger).get(f"/api/v1/images/{im.pk}/weight-map.png").status_code == 404


def test_weight_map_follows_a_new_annotation_version(project, make_image, viewer, client_for):
    from labseg.ml.weights import weight_map

    im, _, _ = make_image(project, shape=(40, 60))
    classes, instances = two_touching_objects()
    ann = Annotation.objects.create(image=im, classes_png=encode_png(classes), instances_png=encode_png(instances),
                                    version=1, labelled_pixels=classes.size)
    c = client_for(viewer)
    first = png_array(c.get(f"/api/v1/images/{im.pk}/weight-map.png?style=grey"))
    assert c.get(f"/api/v1/images/{im.pk}/weight-map.png")["Cache-Control"] == "no-cache"
    instances[instances == 2] = 0  # one object only: no border term any more
    classes = np.where(instances > 0, 2, 1).astype(np.uint8)
    Annotation.objects.filter(pk=ann.pk).update(classes_png=encode_png(classes), instances_png=encode_png(instances),
                                                version=2)
    second = png_array(c.get(f"/api/v1/images/{im.pk}/weight-map.png?style=grey"))
    expected = weight_map(classes, instances)
    np.testing.assert_allclose(second, np.round(expected / expected.max() * 255), atol=1)
    assert second[12:28, 28:30].max() < first[12:28, 28:30].min()  # the gap is no longer a border
