"""Colours the app picks by itself (issue 11.8): default class colours far from every channel colour, and one
channel colour map for the grid thumbnails (server) and the viewer (browser)."""
from __future__ import annotations

import io
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.annotate import services
from labseg.ml import io as mlio

from .conftest import nuclei, tiff_bytes, upload

PALETTE_TS = Path(__file__).resolve().parents[2] / "frontend" / "src" / "palette.ts"


def hex_rgb(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def unit_hex(rgb) -> str:
    return "#" + "".join("ff" if v else "00" for v in rgb)


def ts_list(name: str) -> list[str]:
    """A `export const NAME = ["#..", ...]` list of frontend/src/palette.ts."""
    m = re.search(rf"export const {name} = \[([^\]]*)\]", PALETTE_TS.read_text())
    assert m, f"{name} not found in {PALETTE_TS}"
    return re.findall(r'"(#[0-9a-f]{6})"', m.group(1))


CHANNELS = sorted({unit_hex(c) for c in (*mlio.CHANNEL_COLORS, *mlio.RGB_COLORS)})


@pytest.mark.parametrize("colour", [*services.DEFAULT_CLASS_COLORS, services.BACKGROUND_COLOR])
def test_default_class_colours_are_far_from_every_channel_colour(colour):
    nearest = min(math.dist(hex_rgb(colour), hex_rgb(c)) for c in CHANNELS)
    assert nearest >= 120, f"{colour} looks like a channel colour"


def test_default_class_colours_are_apart_from_each_other():
    colours = [*services.DEFAULT_CLASS_COLORS, services.BACKGROUND_COLOR]
    assert min(math.dist(hex_rgb(a), hex_rgb(b)) for a, b in itertools.combinations(colours, 2)) >= 100


def test_browser_and_server_pick_the_same_colours():
    assert ts_list("CLASS_COLORS") == list(services.DEFAULT_CLASS_COLORS)
    assert re.search(rf'BACKGROUND_COLOR = "{services.BACKGROUND_COLOR}"', PALETTE_TS.read_text())
    assert ts_list("CHANNEL_COLORS") == [unit_hex(c) for c in mlio.CHANNEL_COLORS]
    assert ts_list("RGB_COLORS") == [unit_hex(c) for c in mlio.RGB_COLORS]


@pytest.mark.django_db
def test_a_new_project_gets_the_default_colours(owner):
    p = services.create_project(user=owner, name="p", classes=[{"name": "nucleus"}, {"name": "mitosis"}])
    colours = dict(p.label_classes.values_list("index", "color"))
    assert colours == {1: services.BACKGROUND_COLOR, 2: services.DEFAULT_CLASS_COLORS[0],
                       3: services.DEFAULT_CLASS_COLORS[1]}


@pytest.mark.django_db
def test_grid_thumbnail_of_two_channels_is_green_and_magenta_like_the_viewer(owner, project, client_for):
    """Channel 0 only bright -> green thumbnail; channel 1 only -> magenta (the viewer's tints)."""
    a = nuclei(shape=(64, 80), channels=2)
    a[1] = 0
    b = a[::-1].copy()
    _, res = services.upload_images(user=owner, project_id=project.pk, files=[
        upload("c0.tif", tiff_bytes(a, metadata={"axes": "CYX"}, photometric="minisblack")),
        upload("c1.tif", tiff_bytes(b, metadata={"axes": "CYX"}, photometric="minisblack"))])
    thumbs = []
    for r in res:
        resp = client_for(owner).get(f"/api/v1/images/{r['id']}/thumbnail.png")
        assert resp.status_code == 200
        thumbs.append(np.asarray(PILImage.open(io.BytesIO(b"".join(resp.streaming_content))).convert("RGB")).astype(int))
    g, m = thumbs
    assert g[..., 1].max() > 200 and g[..., 0].max() == 0 and g[..., 2].max() == 0  # green only
    assert m[..., 0].max() > 200 and np.array_equal(m[..., 0], m[..., 2]) and m[..., 1].max() == 0  # magenta
