"""Helpers of the live-session tests: a page that keeps its session alive while a test waits."""
from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from apps.annotate.masks import encode_png
from tests.training.conftest import add_image, wait_for  # noqa: F401 - shared with the live tests


def b64(mask: np.ndarray) -> str:
    return base64.b64encode(encode_png(mask)).decode()


class Page:
    """What the annotate page does with Live on: heartbeats (PUT draft), drafts, polling the status."""

    def __init__(self, client, image_id: int, session_id: int):
        self.client, self.image_id, self.sid = client, image_id, session_id
        self.base = f"/api/v1/images/{image_id}/live/{session_id}/"
        self._last_beat = 0.0

    def status(self) -> dict:
        r = self.client.get(self.base)
        assert r.status_code == 200, r.content
        return r.json()

    def beat(self, **body):
        self._last_beat = time.time()
        return self.client.put(self.base + "draft/", body, format="json")

    def wait(self, predicate, timeout: float = 90, what: str = "live state", beat: bool = True) -> dict:
        """Poll the status (heartbeat every second while ``beat``) until ``predicate(status)`` holds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if beat and time.time() - self._last_beat > 1.0:
                r = self.beat()
                assert r.status_code in (200, 409), r.content
            st = self.status()
            if predicate(st):
                return st
            time.sleep(0.2)
        pytest.fail(f"timed out after {timeout}s waiting for {what}; last status {st}")


@pytest.fixture
def start_page(client_for):
    def start(user, image, **body) -> Page:
        client = client_for(user)
        r = client.post(f"/api/v1/images/{image.pk}/live/", body, format="json")
        assert r.status_code == 201, r.content
        return Page(client, image.pk, r.json()["id"])

    return start
