"""Live training in a real browser with a real worker (issue 13): Live on, paint, the overlay appears and
follows the network without pressing anything, an Alt+click accepts a predicted object as a stroke, Keep
creates a model version, Live off ends the session."""
from __future__ import annotations

import pytest

from apps.live.models import LiveSession
from apps.training.models import ModelVersion
from tests.helpers import wait_for
from tests.training.conftest import add_image

from .conftest import wait_saved, wait_viewer_loaded
from .test_annotate import drag, stored

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

STATUS = "[data-testid=live-status]"


def live_state(page) -> dict:
    return page.evaluate("""() => { const s = document.querySelector('[data-testid=live-status]');
        return {state: s.dataset.state, step: Number(s.dataset.step || -1),
                overlayStep: Number(s.dataset.overlayStep || -1), text: s.textContent}; }""")


def wait_live(page, condition: str, timeout: float = 120000) -> None:
    """Wait until ``condition`` (JS over ``s``, the status element's dataset) holds."""
    page.wait_for_function(f"""() => {{ const s = document.querySelector('{STATUS}')?.dataset;
        return !!s && ({condition}); }}""", timeout=timeout)


def object_pixel(page):
    """Canvas coordinates and image pixel of the most confident object pixel of the live overlay, or None."""
    return page.evaluate("""() => {
        const v = window.labseg.viewer, o = v.overlay('live');
        if (!o || !o.image) return null;
        const cv = o.image.img, d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
        let best = -1, at = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > best) { best = d[i + 3]; at = i / 4; }
        if (best <= 0) return null;
        const x = o.image.x + at % cv.width, y = o.image.y + Math.floor(at / cv.width);
        const [sx, sy] = v.imageToScreen(x + 0.5, y + 0.5);
        return {x, y, sx, sy};
    }""")


def test_live_on_paint_overlay_follows_keep_and_off(celery_worker, logged_in_page, project, annotator):
    image = add_image(project, seed=21, size=64)  # saved scribbles of background and nucleus
    page = logged_in_page(annotator, f"/projects/{project.pk}/images/{image.pk}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    wait_saved(page)
    wait_viewer_loaded(page)
    assert page.locator("[data-testid=live-keep]").is_disabled()  # nothing to keep before a session

    page.click("[data-testid=live-toggle]")
    wait_live(page, "s.state === 'running'")
    session = LiveSession.objects.get(image=image, created_by=annotator)
    assert session.region == {"x": 0, "y": 0, "width": 64, "height": 64}  # the whole image is in view

    # a stroke (not saved yet) reaches the session as a draft, by the page's own heartbeat
    drag(page, [(5, 30), (25, 30)])
    wait_for(lambda: LiveSession.objects.get(pk=session.pk).draft_version >= 1, timeout=30,
             what="the draft reaching the session")

    # the overlay appears and its step advances with nobody pressing anything
    wait_live(page, "Number(s.overlayStep) > 0")
    first = live_state(page)["overlayStep"]
    wait_live(page, f"Number(s.overlayStep) > {first}")
    assert page.evaluate("window.labseg.viewer.overlayNames()").count("live") == 1
    assert "step" in live_state(page)["text"] and "updated" in live_state(page)["text"]

    # Alt+click on a predicted object: it becomes an ordinary stroke of the current class, saved as usual
    px = wait_for(lambda: object_pixel(page), timeout=120, what="a predicted object in the live overlay")
    page.click("[data-testid=annotation-canvas]", modifiers=["Alt"], position={"x": px["sx"], "y": px["sy"]})
    wait_saved(page)
    classes, strokes, _ = stored(image.pk)
    assert strokes[-1]["tool"] == "brush" and strokes[-1]["radius"] == 0 and strokes[-1]["class"] == 2
    assert classes[px["y"], px["x"]] == 2

    # Keep: a new model version from the live network
    wait_for(lambda: LiveSession.objects.get(pk=session.pk).checkpoint_step > 0, timeout=60,
             what="a live checkpoint")
    before = ModelVersion.objects.filter(project=project).count()
    page.click("[data-testid=live-keep]")
    page.wait_for_selector("[data-testid=toast-ok]:has-text('model version')")
    versions = ModelVersion.objects.filter(project=project)
    assert versions.count() == before + 1
    kept = versions.order_by("-number").first()
    assert kept.provenance["live_session"] == session.pk

    # Live off: the session ends at once, with the user's reason
    page.click("[data-testid=live-toggle]")
    wait_live(page, "s.state === 'ended'")
    wait_for(lambda: LiveSession.objects.get(pk=session.pk).status == "cancelled", timeout=15,
             what="the session to end")
    assert LiveSession.objects.get(pk=session.pk).stop_reason == "stopped"
    assert page.evaluate("window.labseg.viewer.overlayNames()").count("live") == 0
    assert page.console_errors == []


def test_closing_the_page_ends_the_live_session(celery_worker, logged_in_page, project, annotator):
    """Closing the tab ends the session: the page's keepalive DELETE on pagehide, or at the latest the missing
    heartbeats (the test worker's timeout is a few seconds)."""
    image = add_image(project, seed=22, size=64)
    page = logged_in_page(annotator, f"/projects/{project.pk}/images/{image.pk}/annotate")
    page.wait_for_selector("[data-testid=annotation-canvas]")
    wait_viewer_loaded(page)
    page.click("[data-testid=live-toggle]")
    wait_live(page, "s.state === 'running'")
    session = LiveSession.objects.get(image=image, created_by=annotator)
    page.close(run_before_unload=True)
    ended = wait_for(lambda: (s := LiveSession.objects.get(pk=session.pk)).status in ("cancelled", "succeeded",
                                                                                      "failed") and s,
                     timeout=45, what="the session to end after the page closed")
    assert ended.stop_reason in ("stopped", "browser_gone"), ended.stop_reason
