"""Screenshots for the README, taken from a running LabSeg (``make run``) with its demo project.

    python scripts/screenshots.py --url http://127.0.0.1:8000 --user admin --password ... [--train-steps 60]

Signs in through the login form, opens the demo project, its annotate page (also with Live on), the Getting
started guide, and
(after a short training run started through the API, when ``--train-steps`` > 0) the Models page, and writes
PNGs to ``docs/screenshots/``. Uses Debian's Chromium (never ``playwright install``).
"""
from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def api(url: str, token: str, path: str, body: dict | None = None) -> dict | list:
    req = urllib.request.Request(url + "/api/v1" + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - a local URL given by the user
        return json.loads(resp.read() or b"null")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", required=True)
    ap.add_argument("--train-steps", type=int, default=60, help="0: no training run, no Models page shot")
    ap.add_argument("--no-live", action="store_true", help="no Live session shot (live.png)")
    args = ap.parse_args()
    live = not args.no_live
    url = args.url.rstrip("/")
    token = json.loads(urllib.request.urlopen(urllib.request.Request(  # noqa: S310
        url + "/api/v1/auth/token/", data=json.dumps({"username": args.user, "password": args.password}).encode(),
        headers={"Content-Type": "application/json"}), timeout=30).read())["token"]
    projects = api(url, token, "/projects/")
    projects = projects["results"] if isinstance(projects, dict) else projects
    demo = next(p for p in projects if p["name"] == "Demo nuclei")
    images = api(url, token, f"/projects/{demo['id']}/images/")
    images = images["results"] if isinstance(images, dict) else images
    first = next(im for im in images if im.get("has_annotation")) if images else None
    run = None
    if args.train_steps > 0:
        run = api(url, token, f"/projects/{demo['id']}/training-runs/",
                  {"config": {"steps": args.train_steps, "max_seconds": 300}})

    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1400, "height": 860}, device_scale_factor=1).new_page()
        page.goto(url + "/accounts/login/")
        page.fill("#id_username", args.user)
        page.fill("#id_password", args.password)
        page.click("[data-testid=login-submit]")
        page.wait_for_load_state("networkidle")
        page.goto(f"{url}/projects/{demo['id']}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(OUT / "project.png"), full_page=True)
        if first is not None:
            page.goto(f"{url}/projects/{demo['id']}/images/{first['id']}/annotate")
            page.wait_for_selector("[data-testid=annotation-canvas]")
            page.wait_for_function("() => document.querySelector('[data-loaded=true]') !== null", timeout=60000)
            page.screenshot(path=str(OUT / "annotate.png"))
            if live:  # Live on: wait for the network's overlay to appear and advance, then a shot
                page.click("[data-testid=live-toggle]")
                page.wait_for_function("() => Number(document.querySelector('[data-testid=live-status]')"
                                       "?.dataset.overlayStep || 0) > 40", timeout=300000)
                page.screenshot(path=str(OUT / "live.png"))
                page.click("[data-testid=live-toggle]")
        page.click("text=Getting started")
        page.wait_for_selector("[role=dialog]")
        page.screenshot(path=str(OUT / "getting-started.png"))
        page.keyboard.press("Escape")
        if run is not None:
            deadline = time.time() + 900
            while time.time() < deadline:
                status = api(url, token, f"/training-runs/{run['id']}/")["status"]
                if status in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(3)
            print("training run:", status)
            page.goto(f"{url}/projects/{demo['id']}/models")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / "models.png"), full_page=True)
        browser.close()
    print("wrote", sorted(p.name for p in OUT.glob("*.png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
