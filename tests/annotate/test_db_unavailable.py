"""A save while PostgreSQL cannot be reached answers a JSON 503 (not a 500 page) and loses nothing.

The shared PostgreSQL cannot be stopped from a test; instead the request's database connection is pointed
at a local port nothing listens on, so the request really tries to connect and is refused, as it is while
PostgreSQL is down or restarting (every request opens its own connection: CONN_MAX_AGE 0). A server that
dies in the middle of a transaction is the chaos suite's case (tests/chaos).
"""
from __future__ import annotations

import base64
import socket
from contextlib import contextmanager

import numpy as np
import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.annotate.masks import decode_mask, encode_png
from apps.annotate.models import Annotation, AnnotationRevision


def b64(mask: np.ndarray) -> str:
    return base64.b64encode(encode_png(mask)).decode()


@contextmanager
def database_unreachable():
    """Until the block ends, new connections of this process go to a closed port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the socket closes: nothing listens there
    saved = {k: connection.settings_dict.get(k) for k in ("HOST", "PORT")}
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a server database")
@pytest.mark.django_db(transaction=True)
def test_a_save_while_the_database_is_unreachable_answers_503_json_and_loses_nothing(annotator, stored_image):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    url = f"/api/v1/images/{stored_image.pk}/annotation/"
    first = np.zeros((stored_image.height, stored_image.width), np.uint8)
    first[5:15, 10:30] = 2
    r = client.put(url, {"version": 0, "classes_png": b64(first), "strokes": [{"tool": "brush"}]}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 1
    stored = Annotation.objects.get(image=stored_image)

    second = first.copy()
    second[20:30, 40:60] = 1
    with database_unreachable():
        r = client.put(url, {"version": 1, "classes_png": b64(second), "strokes": []}, format="json")
        assert r.status_code == 503, r.content[:300]
        assert r["Content-Type"] == "application/json" and r["Retry-After"]
        assert r.json()["code"] == "database_unavailable" and "database" in r.json()["detail"]
        r = client.get(url)  # reads too: JSON 503, not a 500 page
        assert r.status_code == 503 and r.json()["code"] == "database_unavailable"

    # nothing stored was lost or changed, and the retry with the same version goes through
    again = Annotation.objects.get(image=stored_image)
    assert again.version == 1 and bytes(again.classes_png) == bytes(stored.classes_png)
    assert np.array_equal(decode_mask(bytes(again.classes_png)), first)
    assert again.strokes == [{"tool": "brush"}] and not AnnotationRevision.objects.filter(image=stored_image).exists()
    r = client.put(url, {"version": 1, "classes_png": b64(second), "strokes": []}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 2
    assert AnnotationRevision.objects.get(image=stored_image).version == 1
