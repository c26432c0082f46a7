"""Throttle counts live in a cache every web process shares (gunicorn runs several workers): attempts
counted in another Python process count here too. With a Redis broker the cache is Redis (under a key
prefix; clearing it leaves the broker's keys alone); without one it is a FileBasedCache in the var dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache

from labseg.cache import SharedRedisCache

REPO = Path(__file__).resolve().parent.parent

#: Run in a separate interpreter: ``n`` sign-in POSTs through the login throttle and ``n`` requests through
#: the auth/token/ throttle, from one address, counted in that process's default cache.
OTHER_PROCESS = """
import sys
import django
django.setup()
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle
from labseg.views import throttle_posts

n, address = int(sys.argv[1]), sys.argv[2]
login = throttle_posts(lambda request: HttpResponse("the form"), "login")
codes = [login(RequestFactory().post("/accounts/login/", REMOTE_ADDR=address)).status_code for _ in range(n)]

class TokenView:
    throttle_scope = "auth-token"

allowed = [ScopedRateThrottle().allow_request(Request(RequestFactory().post("/api/v1/auth/token/",
                                                                            REMOTE_ADDR=address)), TokenView())
           for _ in range(n)]
print(settings.CACHES["default"]["BACKEND"], codes, allowed)
"""


def other_process(n: int, address: str, **env) -> str:
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "labseg.settings", **env}
    done = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(n), address], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.django_db
def test_sign_in_attempts_counted_in_another_process_count_here(client, django_user_model):
    django_user_model.objects.create_user("alice", password="right-password")
    address = "203.0.113.7"
    out = other_process(10, address)  # the limit (10/min) used up by "another gunicorn worker"
    assert out.endswith("[200, 200, 200, 200, 200, 200, 200, 200, 200, 200] "
                        "[True, True, True, True, True, True, True, True, True, True]"), out
    r = client.post("/accounts/login/", {"username": "alice", "password": "right-password"}, REMOTE_ADDR=address)
    assert r.status_code == 429
    r = client.post("/api/v1/auth/token/", {"username": "alice", "password": "right-password"},
                    REMOTE_ADDR=address, content_type="application/json")
    assert r.status_code == 429 and r.json()["code"] == "throttled"
    # another address is not affected
    r = client.post("/api/v1/auth/token/", {"username": "alice", "password": "right-password"},
                    REMOTE_ADDR="203.0.113.8", content_type="application/json")
    assert r.status_code == 200 and r.json()["token"]


def test_without_redis_the_count_is_shared_through_files_in_the_var_dir(tmp_path):
    env = {"CELERY_BROKER_URL": "filesystem://", "LABSEG_CACHE_URL": "", "LABSEG_VAR_DIR": str(tmp_path),
           "MEDIA_ROOT": str(tmp_path / "media"), "STATIC_ROOT": str(tmp_path / "static")}
    first = other_process(10, "198.51.100.1", **env)
    assert first.startswith("django.core.cache.backends.filebased.FileBasedCache") and "429" not in first
    second = other_process(1, "198.51.100.1", **env)
    assert second.endswith("[429] [False]"), second
    assert any((tmp_path / "cache").iterdir())
    # a server with its own var dir has its own counts
    elsewhere = {**env, "LABSEG_VAR_DIR": str(tmp_path / "other")}
    assert other_process(1, "198.51.100.1", **elsewhere).endswith("[200] [True]")


@pytest.mark.skipif(not settings.CACHES["default"]["BACKEND"].endswith("SharedRedisCache"),
                    reason="the tests' broker is not Redis")
def test_clearing_the_redis_cache_leaves_the_brokers_keys_alone():
    import redis

    assert settings.CACHES["default"]["LOCATION"] == settings.CELERY_BROKER_URL
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.set("labseg-test:not-a-cache-key", b"queued message")
    try:
        cache.set("count", 3)
        assert cache.get("count") == 3
        assert client.exists(cache.make_key("count"))
        cache.clear()
        assert cache.get("count") is None
        assert client.get("labseg-test:not-a-cache-key") == b"queued message"
    finally:
        client.delete("labseg-test:not-a-cache-key")


def test_an_unreachable_redis_counts_in_the_process_instead_of_failing():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = SharedRedisCache(f"redis://127.0.0.1:{port}/0", {
        "KEY_PREFIX": "t", "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}})
    assert dead.add("k", 0, timeout=60)
    assert dead.incr("k") == 1 and dead.incr("k") == 2
    assert dead.get("k") == 2 and dead.get("missing", "default") == "default"
    dead.clear()
    assert dead.get("k") is None
