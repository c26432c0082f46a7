"""``GET /api/v1/health/``: is this installation able to do its work? (Anonymous, JSON, never cached.)

Checks, in order: ``database`` (a query), ``broker`` (a connection, a few seconds at most), ``media`` (a small
file written and deleted under MEDIA_ROOT) and ``workers`` (at least one Celery worker answers a ping within
LABSEG_HEALTH_PING_TIMEOUT seconds, default 1; skipped when the broker is down). Control pings go through the
broker, so this works on Redis and on the filesystem broker alike.

200 ``{"status": "ok", "checks": {...}}`` when every check passes, else 503 ``{"status": "error",
"failed": [names], "checks": {...}}``. Each check is ``{"ok": bool, "ms": float}`` plus ``error`` (a fixed
sentence and the exception's class: no host names or paths for anonymous callers; the details are
logged) or, for workers, how many answered. ``/healthz`` stays the cheap liveness check (the process answers).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


class CheckFailed(Exception):
    """A check's own failure, with the sentence to show."""


def check_database() -> dict:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def _broker_connection():
    """A fresh broker connection with short timeouts (not the app's pool, which waits and retries)."""
    from labseg.celery import app

    return app.connection_for_write(
        connect_timeout=BROKER_TIMEOUT_S,
        transport_options={"socket_connect_timeout": BROKER_TIMEOUT_S, "socket_timeout": BROKER_TIMEOUT_S},
    )


def check_broker() -> dict:
    with _broker_connection() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_S)
        conn.default_channel  # noqa: B018 - opening the channel (Redis: a PING) is the check
    return {}


def check_media() -> dict:
    root = Path(settings.MEDIA_ROOT)
    root.mkdir(parents=True, exist_ok=True)  # as the storage does on the first upload
    fd, name = tempfile.mkstemp(dir=root, prefix=".health-")
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)
    return {}


def check_workers() -> dict:
    from labseg.celery import app

    timeout = float(os.environ.get("LABSEG_HEALTH_PING_TIMEOUT", "1"))
    with _broker_connection() as conn:
        replies = app.control.ping(timeout=timeout, connection=conn)
    if not replies:
        raise CheckFailed(f"no Celery worker answered a ping within {timeout:g} s")
    return {"workers": len(replies)}


CHECKS = {
    "database": (check_database, "the database query failed"),
    "broker": (check_broker, "cannot connect to the Celery broker"),
    "media": (check_media, "cannot write and delete a file under MEDIA_ROOT"),
    "workers": (check_workers, "the worker ping failed"),
}


def run_checks() -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name, (check, sentence) in CHECKS.items():
        if name == "workers" and not results["broker"]["ok"]:
            results[name] = {"ok": False, "error": "not checked: the broker is unreachable"}
            continue
        start = time.perf_counter()
        try:
            result = {"ok": True, **check()}
        except CheckFailed as exc:
            result = {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
            log.warning("health check %s failed", name, exc_info=True)
            result = {"ok": False, "error": f"{sentence} ({type(exc).__name__})"}
        result["ms"] = round((time.perf_counter() - start) * 1000, 1)
        results[name] = result
    return results


@never_cache
@require_GET
def health(request):
    checks = run_checks()
    failed = [name for name, result in checks.items() if not result["ok"]]
    if failed:
        return JsonResponse({"status": "error", "failed": failed, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
