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


def test_swagger_ui_is_served_from_local_static_files(client, django_user_model):
    """/api/docs/ works on a lab server without internet: its scripts and styles are static files of the
    app (drf-spectacular-sidecar), not a CDN, and every one of them exists."""
    import re

    from django.contrib.staticfiles import finders
    from django.test import override_settings

    client.force_login(django_user_model.objects.create_user("docs-reader", password="x"))
    with override_settings(STATIC_URL="/static/"):
        html = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
    assert assets, html[:500]
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of the app"
