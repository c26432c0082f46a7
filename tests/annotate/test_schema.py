"""The OpenAPI schema of the annotate endpoints generates without warnings and validates."""
from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from apps.annotate import urls as annotate_urls


def test_annotate_schema_validates_without_warnings():
    from django.urls import include, path

    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("api/v1/", include(annotate_urls))])
    schema = generator.get_schema(request=None, public=True)
    validate_schema(schema)  # raises on an invalid OpenAPI document
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, (
        GENERATOR_STATS._warn_cache, GENERATOR_STATS._error_cache)
    paths = schema["paths"]
    for p in ["/api/v1/auth/token/", "/api/v1/projects/{project_id}/images/", "/api/v1/images/{image_id}/display.png",
              "/api/v1/images/{image_id}/annotation/", "/api/v1/images/{image_id}/annotation/history/"]:
        assert p in paths
    assert "409" in paths["/api/v1/images/{image_id}/annotation/"]["put"]["responses"]
    assert "207" in paths["/api/v1/projects/{project_id}/images/"]["post"]["responses"]
    listing = paths["/api/v1/projects/{project_id}/images/"]["get"]["responses"]["200"]["content"]
    page = schema["components"]["schemas"][listing["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"count", "next", "previous", "results"} <= set(page["properties"])  # the paginated shape


@pytest.mark.django_db
def test_full_schema_endpoint_answers(client_for, owner):
    r = client_for(owner).get("/api/schema/?format=json")
    assert r.status_code == 200 and "/api/v1/projects/" in r.json()["paths"]
    assert client_for(owner).get("/api/docs/").status_code == 200
