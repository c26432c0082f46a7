"""Browser-test fixtures: Debian's Chromium driven by Playwright (sync API) against pytest-django's live server.

Reusable by every area: ``browser`` (session), ``page`` (fresh context per test), ``live_url``,
``logged_in_page(user)`` (logs in through /accounts/login/), ``upload_image(project, name, array)``,
and ``wait_saved(page)``. Tests using them need ``@pytest.mark.django_db(transaction=True)`` and
``@pytest.mark.browser``. The frontend is (re)built once per session when ``frontend/dist`` is stale.
"""
from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import hyperstack_tiff_bytes as tiff_bytes  # noqa: F401 - the browser tests import it from here

# Playwright's sync API runs an event loop in this thread; Django's ORM must still be usable here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
DIST_INDEX = FRONTEND / "dist" / "index.html"
PASSWORD = "pw-" + "x" * 8  # tests/conftest.py make_user's default
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _dist_is_stale() -> bool:
    if not DIST_INDEX.is_file():
        return True
    built = DIST_INDEX.stat().st_mtime
    sources = [FRONTEND / n for n in ("index.html", "package.json", "package-lock.json", "vite.config.ts",
                                      "tsconfig.json")]
    sources += [p for p in (FRONTEND / "src").rglob("*") if p.is_file() and not p.name.endswith(".test.ts")]
    return any(p.stat().st_mtime > built for p in sources if p.exists())


@pytest.fixture(scope="session")
def frontend_dist() -> Path:
    """frontend/dist, built by `make frontend` when missing or older than its sources."""
    if _dist_is_stale():
        subprocess.run(["make", "-s", "frontend"], cwd=REPO, check=True, timeout=600)
        DIST_INDEX.touch()
    from django.conf import settings
    from django.contrib.staticfiles import finders

    dist = DIST_INDEX.parent
    if dist not in [Path(p) for p in settings.STATICFILES_DIRS]:  # settings were read before the build
        settings.STATICFILES_DIRS = [*settings.STATICFILES_DIRS, dist]
        finders.get_finder.cache_clear()
    return dist


@pytest.fixture
def live_url(frontend_dist, live_server) -> str:
    """Base URL of the live server (no trailing slash), with the frontend built."""
    return live_server.url.rstrip("/")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies, no localStorage) and page; console errors are collected."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    ctx.set_default_timeout(15000)
    pg = ctx.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def login(page, live_url: str, username: str, password: str = PASSWORD, next_path: str = "/") -> None:
    page.goto(f"{live_url}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("[data-testid=login-submit]")
    page.wait_for_selector("#nav a.brand")


@pytest.fixture
def logged_in_page(page, live_url):
    """``logged_in_page(user, path="/")``: the page, logged in as ``user`` through the login form, at ``path``."""

    def make(user, path: str = "/"):
        login(page, live_url, user.username, next_path=path)
        return page

    return make


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def upload_image(client_for):
    """``upload_image(project, filename, data_bytes, user=project.owner) -> image id`` through the REST API."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload(project, filename: str, data: bytes, user=None) -> int:
        c = client_for(user or project.owner)
        r = c.post(f"/api/v1/projects/{project.pk}/images/", {"files": [SimpleUploadedFile(filename, data)]},
                   format="multipart")
        assert r.status_code == 201, r.content
        return r.json()["results"][0]["id"]

    return upload


def wait_saved(page, timeout: float = 15000) -> None:
    """Wait until the annotate page says everything is stored."""
    page.wait_for_function(
        "() => { const s = document.querySelector('[data-testid=save-status]');"
        " return s && s.dataset.state === 'saved'; }",
        timeout=timeout)


def wait_viewer_loaded(page, timeout: float = 15000) -> None:
    page.wait_for_selector("[data-testid=annotation-canvas][data-loaded=true]", timeout=timeout)
