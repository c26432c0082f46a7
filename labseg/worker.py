"""Helpers shared by the apps' Celery task modules."""
from __future__ import annotations

import logging
from collections.abc import Callable

from celery.signals import worker_ready

log = logging.getLogger(__name__)


def recover_on_worker_start(recover: Callable[[], object], what: str) -> None:
    """Run ``recover()`` once when a worker is ready, so a worker that starts after a crash picks up
    the jobs the dead one left "running". A failure is logged and never keeps the worker from starting;
    the DB connections it opened are closed before the pool forks."""

    def handler(sender=None, **_kwargs) -> None:
        from django.db import connections

        try:
            recover()
        except Exception:  # noqa: BLE001
            log.exception("recovery of stale %s on worker start failed", what)
        finally:
            connections.close_all()

    worker_ready.connect(handler, weak=False)
