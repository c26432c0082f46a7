"""Serving LabSeg on a lab server: the secret key, ``check --deploy`` behind an HTTPS proxy, the health
endpoint, JSON logs, and the built browser app's static files with DEBUG off."""
from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict:
    """This test run's environment for a fresh Django process, with its own var dir and no SECRET_KEY."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"SECRET_KEY", "DEBUG", "LABSEG_HTTPS", "ALLOWED_HOSTS", "LOG_FORMAT",
                        "DJANGO_ALLOW_ASYNC_UNSAFE"}}  # set by the browser tests' fixtures, never in deployment
    env.update(LABSEG_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1", **extra)
    return env


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


# --- secret key --------------------------------------------------------------------------------------
def test_secret_key_is_generated_once_with_mode_0600_and_reused(tmp_path):
    from labseg.settings import read_or_create_secret_key

    path = tmp_path / "var" / "secret-key.txt"
    key = read_or_create_secret_key(path)
    assert len(key) >= 50 and len(set(key)) >= 5 and not key.startswith("django-insecure")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["secret-key.txt"]  # no temporary file left


# --- check --deploy ----------------------------------------------------------------------------------
PRODUCTION_ENV = {"LABSEG_HTTPS": "1", "ALLOWED_HOSTS": "labseg.example.org,localhost"}


def test_check_deploy_has_no_warnings_behind_the_documented_https_proxy(tmp_path):
    proc = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], _env(tmp_path, **PRODUCTION_ENV))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout, proc.stdout + proc.stderr
    # no SECRET_KEY in the environment: the generated one, kept private
    key_file = tmp_path / "var" / "secret-key.txt"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_check_deploy_on_plain_http_warns_only_about_https(tmp_path):
    proc = _run(["manage.py", "check", "--deploy"], _env(tmp_path))
    found = set(re.findall(r"\(security\.(W\d+)\)", proc.stdout + proc.stderr))
    assert found == {"W004", "W008", "W012", "W016"}, proc.stdout + proc.stderr  # HSTS, redirect, 2 cookies


def _settings_in(tmp_path, **env: str) -> dict:
    code = ("import json, labseg.settings as s; print(json.dumps({k: getattr(s, k, None) for k in ("
            "'DEBUG', 'SECURE_SSL_REDIRECT', 'SECURE_REDIRECT_EXEMPT', 'SECURE_PROXY_SSL_HEADER', "
            "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECRET_KEY')}))")
    proc = _run(["-c", code], _env(tmp_path, **env))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_labseg_https_trusts_the_proxy_header_and_secures_cookies(tmp_path):
    plain = _settings_in(tmp_path)
    assert plain["DEBUG"] is False and plain["SECURE_SSL_REDIRECT"] is None and plain["SECURE_HSTS_SECONDS"] is None
    https = _settings_in(tmp_path, **PRODUCTION_ENV)
    assert https["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert https["SECURE_SSL_REDIRECT"] and https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"]
    assert https["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert https["SECRET_KEY"] == plain["SECRET_KEY"]  # the same kept key in both processes
    assert _settings_in(tmp_path, LABSEG_HTTPS="1", LABSEG_HSTS_SECONDS="0")["SECURE_HSTS_SECONDS"] == 0
    assert _settings_in(tmp_path, DEBUG="1")["DEBUG"] is True


@pytest.mark.django_db
def test_https_redirect_spares_the_health_checks(client, settings, tmp_path):
    https = _settings_in(tmp_path, **PRODUCTION_ENV)
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = https["SECURE_REDIRECT_EXEMPT"]
    settings.SECURE_PROXY_SSL_HEADER = tuple(https["SECURE_PROXY_SSL_HEADER"])
    assert client.get("/api/v1/projects/").status_code == 301
    assert client.get("/api/v1/projects/", headers={"x-forwarded-proto": "https"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/health/").status_code != 301


# --- health ------------------------------------------------------------------------------------------
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_health_is_ok_when_database_broker_media_and_a_worker_answer(client, celery_worker):
    r = client.get("/api/v1/health/")  # anonymous
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and set(body["checks"]) == {"database", "broker", "media", "workers"}
    assert all(c["ok"] for c in body["checks"].values()), body
    assert body["checks"]["workers"]["workers"] >= 1
    assert r["Cache-Control"].startswith("max-age=0")
    assert not [p for p in Path(os.environ.get("MEDIA_ROOT", "/nonexistent")).glob(".health-*")]


@pytest.mark.django_db
def test_health_names_the_broker_when_it_is_unreachable(client, broker_down):
    r = client.get("/api/v1/health/")
    body = r.json()
    assert r.status_code == 503, body
    assert body["status"] == "error" and body["failed"] == ["broker", "workers"]
    assert body["checks"]["database"]["ok"] and body["checks"]["media"]["ok"]
    assert "broker" in body["checks"]["broker"]["error"]
    assert "127.0.0.1:1" not in json.dumps(body)  # anonymous callers get no addresses
    assert body["checks"]["broker"]["ms"] < 5000


@pytest.mark.django_db
def test_health_names_the_workers_when_none_answers(client, monkeypatch):
    from labseg.celery import app

    monkeypatch.setattr(app.control, "ping", lambda **kw: [])
    r = client.get("/api/v1/health/")
    assert r.status_code == 503 and r.json()["failed"] == ["workers"], r.json()
    assert "no Celery worker answered" in r.json()["checks"]["workers"]["error"]


@pytest.mark.django_db
def test_health_names_media_when_it_cannot_be_written(client, settings, monkeypatch, tmp_path):
    from labseg.celery import app

    monkeypatch.setattr(app.control, "ping", lambda **kw: [{"w@h": {"ok": "pong"}}])
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    settings.MEDIA_ROOT = blocker / "media"
    r = client.get("/api/v1/health/")
    assert r.status_code == 503 and r.json()["failed"] == ["media"], r.json()
    assert str(tmp_path) not in r.content.decode()


@pytest.mark.django_db
def test_health_answers_get_only(client):
    assert client.post("/api/v1/health/").status_code == 405


# --- logs --------------------------------------------------------------------------------------------
def _record(**extra) -> logging.LogRecord:
    record = logging.getLogger("labseg.test").makeRecord(
        "labseg.test", logging.WARNING, __file__, 1, "%s went %s", ("it", "wrong"), None, extra=extra)
    return record


def test_json_formatter_writes_one_object_per_line_with_the_extra_fields():
    from labseg.logging import JsonFormatter

    line = JsonFormatter().format(_record(method="GET", status=200, duration_ms=1.5, request=object()))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "labseg.test" and entry["message"] == "it went wrong"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert entry["method"] == "GET" and entry["status"] == 200 and entry["duration_ms"] == 1.5
    assert "request" not in entry  # not JSON: left out
    try:
        raise ValueError("boom\nline two")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.django_db
def test_every_request_is_logged_with_method_path_status_and_duration(client, caplog):
    from labseg.logging import JsonFormatter

    with caplog.at_level(logging.INFO, logger="labseg.request"):
        client.get("/api/v1/projects/?token=secret")
    (record,) = [r for r in caplog.records if r.name == "labseg.request"]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["method"] == "GET" and entry["path"] == "/api/v1/projects/" and entry["status"] == 401
    assert isinstance(entry["duration_ms"], float)
    assert "secret" not in entry["message"]


def test_log_format_json_makes_every_line_json(tmp_path):
    code = "import django, logging; django.setup(); logging.getLogger('labseg.x').info('hello %s', 'lab')"
    # plus a Python warning and a connection to the filesystem broker (kombu warns about its missing host)
    code_more = code + ("; import warnings; warnings.warn('careful'); from labseg.health import check_broker; "
                        "check_broker()")
    proc = _run(["-c", code_more], _env(tmp_path, LOG_FORMAT="json", DJANGO_SETTINGS_MODULE="labseg.settings",
                                        CELERY_BROKER_URL="filesystem://"))
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stderr.strip().splitlines()]
    assert {"logger": "labseg.x", "message": "hello lab"}.items() <= entries[0].items(), proc.stderr
    assert entries[1]["logger"] == "py.warnings" and "careful" in entries[1]["message"], proc.stderr
    assert len(entries) == 2, proc.stderr  # no "No hostname was supplied" for the filesystem broker
    text = _run(["-c", code], _env(tmp_path, DJANGO_SETTINGS_MODULE="labseg.settings"))
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO labseg.x: hello lab$", text.stderr, re.M), text.stderr
    bad = _run(["-c", code], _env(tmp_path, LOG_FORMAT="xml", DJANGO_SETTINGS_MODULE="labseg.settings"))
    assert bad.returncode != 0 and "LOG_FORMAT must be text or json" in bad.stderr


def test_gunicorn_logs_json_too(monkeypatch):
    from gunicorn.config import Config

    from labseg.logging import GunicornLogger, JsonFormatter

    monkeypatch.setenv("LOG_FORMAT", "json")
    logger = GunicornLogger(Config())
    assert logger.error_log.handlers
    assert all(isinstance(h.formatter, JsonFormatter) for h in logger.error_log.handlers)


# --- static files with DEBUG off ---------------------------------------------------------------------
@pytest.mark.django_db
def test_built_browser_app_and_admin_static_files_are_served_with_debug_off(client, settings):
    assets = sorted((settings.FRONTEND_DIST / "assets").glob("*.js"))
    if not assets:
        pytest.skip("frontend/dist is not built (make frontend)")
    assert settings.DEBUG is False
    r = client.get(f"/static/assets/{assets[0].name}")
    assert r.status_code == 200 and "javascript" in r["Content-Type"]
    assert client.get("/static/admin/css/base.css").status_code == 200
    index = (settings.FRONTEND_DIST / "index.html").read_text()
    assert f"/static/assets/{assets[0].name}" in index
