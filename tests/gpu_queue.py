"""The messages waiting in the real broker's ``gpu`` queue, for tests of lost-message recovery.

``held_gpu_queue`` (a fixture, offered to every test by tests/conftest.py): workers that consume ``gpu`` (e.g. the
session's ``celery_worker``) stop consuming it for the test and get it back afterwards; the queue is
emptied before and after. It yields ``messages()``: ``[(task name, args tuple), ...]`` in send order.
"""
from __future__ import annotations

import ast
import json

import pytest


def _purge() -> None:
    from labseg.celery import app

    with app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge("gpu")
        except Exception:  # noqa: BLE001 - the queue does not exist yet
            pass


def gpu_messages() -> list[tuple[str, tuple]]:
    from labseg.celery import app

    with app.connection_for_write() as conn:
        raw = conn.default_channel.client.lrange("gpu", 0, -1)  # kombu's Redis list; LPUSH, so newest first
    out = []
    for item in reversed(raw):
        headers = json.loads(item)["headers"]
        out.append((headers["task"], ast.literal_eval(headers["argsrepr"])))
    return out


@pytest.fixture
def held_gpu_queue():
    from labseg.celery import app

    replies = app.control.cancel_consumer("gpu", reply=True, timeout=1.0) or []
    hosts = [host for reply in replies for host in reply]
    _purge()
    try:
        yield gpu_messages
    finally:
        _purge()
        if hosts:
            app.control.add_consumer("gpu", destination=hosts, reply=True, timeout=2.0)
