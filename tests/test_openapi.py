"""The whole project's OpenAPI schema (every app) is a valid document, generated without warnings."""
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def test_whole_api_schema_validates_without_warnings():
    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, (
        GENERATOR_STATS._warn_cache, GENERATOR_STATS._error_cache)
    paths = schema["paths"]
    # one endpoint of each app, so an app that drops out of the URLconf is noticed
    for p in ("/api/v1/projects/", "/api/v1/projects/{project_id}/training-runs/",
              "/api/v1/model-versions/{version_id}/predict/"):
        assert p in paths, sorted(paths)
