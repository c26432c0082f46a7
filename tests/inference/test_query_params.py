"""Integer parameters of the inference endpoints (region/level of maps and weight maps, version ids,
image ids, accept's version) take ASCII integers only and answer a JSON 400 otherwise, never a 500."""
from __future__ import annotations

import numpy as np
import pytest

from apps.annotate.masks import encode_png
from apps.annotate.models import Annotation
from apps.inference.models import Prediction, PredictionStatus
from apps.training.models import ModelVersion

pytestmark = pytest.mark.django_db

BAD = ["²", "٣", "1_0", "9" * 30]


@pytest.fixture
def bare_version(project):
    return ModelVersion.objects.create(project=project, number=1, checkpoint="none.pt")


@pytest.fixture
def finished(project, make_image, bare_version):
    im, _, _ = make_image(project)
    return Prediction.objects.create(image=im, model_version=bare_version, status=PredictionStatus.SUCCEEDED)


def assert_json_400(r, name):
    assert r.status_code == 400, (r.status_code, r.content[:300])
    assert r.json()["code"] == "invalid" and name in r.json()["detail"], r.json()


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("name", ["classes.png", "probability.png", "uncertainty.png", "outlines.png",
                                  "instances.tif"])
def test_prediction_maps_refuse_non_ascii_levels_and_regions(finished, viewer, client_for, name, value):
    c = client_for(viewer)
    assert_json_400(c.get(f"/api/v1/predictions/{finished.pk}/{name}", {"level": value}), "level")
    assert_json_400(c.get(f"/api/v1/predictions/{finished.pk}/{name}", {"region": f"0,0,{value},4"}),
                    "region")


@pytest.mark.parametrize("value", BAD)
def test_weight_map_refuses_non_ascii_levels(project, make_image, viewer, client_for, value):
    im, _, _ = make_image(project)
    Annotation.objects.create(image=im, version=1, classes_png=encode_png(np.ones((im.height, im.width), np.uint8)))
    c = client_for(viewer)
    assert_json_400(c.get(f"/api/v1/images/{im.pk}/weight-map.png", {"level": value}), "level")
    assert_json_400(c.get(f"/api/v1/images/{im.pk}/weight-map.png", {"x": value}), "region")


@pytest.mark.parametrize("value", BAD + ["-1", "0"])
def test_version_and_id_parameters_refuse_non_ascii_integers(project, bare_version, viewer, client_for, value):
    c = client_for(viewer)
    p = project.pk
    assert_json_400(c.get(f"/api/v1/projects/{p}/predictions/", {"version": value}), "version")
    assert_json_400(c.get(f"/api/v1/projects/{p}/model-versions/compare/",
                          {"a": value, "b": bare_version.pk}), "a")
    assert_json_400(c.get(f"/api/v1/projects/{p}/export/masks.zip", {"version": value}), "version")
    assert_json_400(c.get(f"/api/v1/projects/{p}/images/next-uncertain/", {"exclude": f"1,{value}"}),
                    "exclude")


@pytest.mark.parametrize("version", ["²", "1_0", 1.5, 10**400, float("1e300"), True, [1], 2**31])
def test_accept_refuses_a_bad_version(finished, annotator, client_for, version):
    r = client_for(annotator).post(f"/api/v1/predictions/{finished.pk}/accept/", {"version": version},
                                   format="json")
    assert_json_400(r, "version")


def test_predict_refuses_an_image_id_beyond_a_bigint(project, make_image, bare_version, annotator, client_for):
    make_image(project)
    r = client_for(annotator).post(f"/api/v1/model-versions/{bare_version.pk}/predict/",
                                   {"image_ids": [2**63]}, format="json")
    assert_json_400(r, "image_ids")
    assert Prediction.objects.count() == 0
