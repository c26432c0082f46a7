"""Integer query parameters take ASCII digits only: "²" passes ``str.isdigit()`` but ``int()`` refuses it
(a 500 before), "٣" and "1_0" pass ``int()``. Each answers a JSON 400 naming the parameter."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

UNICODE_DIGITS = ["²", "٣", "1_0", "１", " 1", "0x1", "9" * 30]


@pytest.mark.parametrize("value", UNICODE_DIGITS)
@pytest.mark.parametrize("param", ["level", "x", "y", "w", "h", "region", "channel"])
def test_display_png_refuses_non_ascii_integers(client_for, viewer, stored_image, param, value):
    query = {"region": f"0,0,{value},10"} if param == "region" else {param: value}
    r = client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/display.png", query)
    assert r.status_code == 400, (query, r.status_code, r.content[:200])
    assert r["Content-Type"] == "application/json" and r.json()["code"] == "invalid"
    assert param in r.json()["detail"] or "region" in r.json()["detail"]


def test_ascii_integers_still_work(client_for, viewer, stored_image):
    r = client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/display.png?region=8,4,32,16&level=1&channel=1")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    r = client_for(viewer).get(f"/api/v1/images/{stored_image.pk}/display.png?x=8&y=4&w=32&h=16&level=0")
    assert r.status_code == 200
