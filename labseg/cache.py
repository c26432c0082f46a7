"""The cache every web process shares (throttle counts of the sign-in forms and ``auth/token/``).

Django's default (LocMem) is per process: under gunicorn's several workers each counted its own share of
the attempts, so the limit was N workers x the rate. Settings pick :class:`SharedRedisCache` when Redis is
there (the broker's server, under a key prefix) and a ``FileBasedCache`` under the var dir otherwise.
"""
from __future__ import annotations

import logging
import time

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger(__name__)

#: After Redis failed, the local fallback is used for this many seconds before Redis is tried again.
RETRY_AFTER_S = 5.0


class SharedRedisCache(RedisCache):
    """Django's ``RedisCache`` that (1) keeps to its key prefix, also in :meth:`clear` (Django's clear is
    ``FLUSHDB``, which would empty the Celery broker's queues when both share a database), and (2) keeps
    answering while Redis is unreachable: operations then go to a per-process LocMem cache (throttles
    count per process, as before this cache existed, instead of every sign-in failing with a 500) and
    Redis is tried again after :data:`RETRY_AFTER_S`."""

    def __init__(self, server, params):
        super().__init__(server, params)
        if not self.key_prefix:
            raise ValueError("SharedRedisCache needs a KEY_PREFIX: clear() deletes the keys under it")
        self._fallback = LocMemCache(f"labseg-fallback-{id(self)}", {"TIMEOUT": params.get("TIMEOUT", 300)})
        self._down_until = 0.0

    def _call(self, name: str, *args, **kwargs):
        import redis

        if time.monotonic() >= self._down_until:
            try:
                return getattr(super(), name)(*args, **kwargs)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                self._down_until = time.monotonic() + RETRY_AFTER_S
                log.warning("cache: Redis unreachable (%s); counting in this process for %.0f s", exc, RETRY_AFTER_S)
        return getattr(self._fallback, name)(*args, **kwargs)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("add", key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._call("get", key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set", key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("touch", key, timeout, version)

    def delete(self, key, version=None):
        return self._call("delete", key, version)

    def get_many(self, keys, version=None):
        return self._call("get_many", keys, version)

    def has_key(self, key, version=None):
        return self._call("has_key", key, version)

    def incr(self, key, delta=1, version=None):
        return self._call("incr", key, delta, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set_many", data, timeout, version)

    def delete_many(self, keys, version=None):
        return self._call("delete_many", keys, version)

    def clear(self):
        """Delete this cache's keys (``KEY_PREFIX:*``) only; the rest of the database is left alone."""
        import redis

        self._fallback.clear()
        try:
            client = self._cache.get_client(write=True)
            pattern = self.key_prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") \
                .replace("[", "\\[") + ":*"
            batch = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("cache: Redis unreachable (%s); its keys were not cleared", exc)
        return True
