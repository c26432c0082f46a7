"""``python -m bench.load``: simulated annotators against a running LabSeg server, bounded, 127.0.0.1 only.

N annotators (threads, each with its own token) share a few images of one project for a fixed time:
each loop reads the annotation, views tiles of the image (two zoom levels), paints a stroke and saves it
with the version it read (a 409 on a colleague's newer save is the app working: the annotator re-reads and
paints again). A training run is started at the beginning and followed. At the end every save the server
accepted (200 with a version) is looked up in the image's history or as its current version: nothing lost.

The setup (users, tokens, project, images, first strokes) goes through the ORM of the same database the
server uses, so run it with the server's ``DATABASE_URL`` / ``CELERY_BROKER_URL`` in the environment::

    DATABASE_URL=... CELERY_BROKER_URL=... python -m bench.load --url http://127.0.0.1:8765 --users 20 --seconds 120

Prints p50 / p95 / max latency per operation, the counts of saves and conflicts, errors (any 5xx, any
other 4xx, any refused connection) and the training run's end state.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict

import numpy as np

SIZE = 512


def _request(base: str, token: str, method: str, path: str, body: dict | None = None, data: bytes | None = None,
             headers: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
    url = base.rstrip("/") + "/api/v1" + path
    hdrs = {"Authorization": f"Token {token}", **(headers or {})}
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _png(mask: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _unpng(text: str | None) -> np.ndarray:
    from PIL import Image

    if not text:
        return np.zeros((SIZE, SIZE), np.uint8)
    return np.array(Image.open(io.BytesIO(base64.b64decode(text))))


def setup(base: str, users: int, images: int) -> dict:
    """Users + tokens, a project with every user an annotator, ``images`` uploaded nuclei images with strokes."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labseg.settings")
    django.setup()
    import tifffile
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from labseg.ml.synthetic import make_nuclei, scribbles

    stamp = time.strftime("%H%M%S")
    User = get_user_model()
    tokens = []
    for k in range(users):
        user, _ = User.objects.get_or_create(username=f"load{stamp}-{k}")
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    owner = tokens[0]
    status, raw = _request(base, owner, "POST", "/projects/", {"name": f"load test {stamp}",
                                                               "classes": [{"name": "nucleus"}]})
    assert status == 201, (status, raw[:300])
    project = json.loads(raw)["id"]
    for k in range(1, users):
        status, raw = _request(base, owner, "POST", f"/projects/{project}/members/",
                               {"username": f"load{stamp}-{k}", "role": "annotator"})
        assert status == 201, (status, raw[:300])
    ids = []
    for k in range(images):
        pixels, inst = make_nuclei((SIZE, SIZE), seed=100 + k)
        buf = io.BytesIO()
        tifffile.imwrite(buf, pixels[0])
        boundary = "----labsegload"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"load{k}.tif\"\r\n"
                f"Content-Type: image/tiff\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        status, raw = _request(base, owner, "POST", f"/projects/{project}/images/", data=body,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status in (200, 201), (status, raw[:300])
        image_id = json.loads(raw)["results"][0]["id"]
        ids.append(image_id)
        classes = scribbles(inst, 12, seed=k)
        status, raw = _request(base, owner, "PUT", f"/images/{image_id}/annotation/",
                               {"version": 0, "classes_png": _png(classes), "instances_png": None, "strokes": []})
        assert status == 200, (status, raw[:300])
    return {"project": project, "images": ids, "tokens": tokens}


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.saves: list[tuple[int, int, int]] = []  # (image, version, user index)
        self.conflicts = 0

    def timed(self, op: str, fn, *args):
        start = time.perf_counter()
        try:
            status, raw = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a refused or dropped connection is an error to report
            with self.lock:
                self.errors.append(f"{op}: {type(exc).__name__}: {exc}")
            return None, b""
        with self.lock:
            self.latency[op].append(time.perf_counter() - start)
            if status >= 500 or (status >= 400 and status != 409):
                self.errors.append(f"{op}: {status} {raw[:200]!r}")
        return status, raw


def annotator(base: str, token: str, index: int, images: list[int], until: float, rec: Recorder, seed: int) -> None:
    rng = np.random.default_rng(seed)
    while time.monotonic() < until:
        image = images[int(rng.integers(len(images)))]
        status, raw = rec.timed("get annotation", _request, base, token, "GET", f"/images/{image}/annotation/")
        if status != 200:
            continue
        ann = json.loads(raw)
        x, y = (int(v) for v in rng.integers(0, SIZE - 256, 2))
        rec.timed("tile 256² level 0", _request,
                  base, token, "GET", f"/images/{image}/display.png?region={x},{y},256,256&level=0")
        rec.timed("view level 1", _request, base, token, "GET", f"/images/{image}/display.png?level=1")
        classes = _unpng(ann.get("classes_png"))
        cy, cx = (int(v) for v in rng.integers(8, SIZE - 8, 2))
        classes[cy - 3:cy + 4, cx - 20:cx + 20] = int(rng.integers(1, 3))  # one short stroke
        # the PNG encoding stays inside the timed call (as the browser's save does it per request)
        status, raw = rec.timed("save annotation", lambda image=image, ann=ann, classes=classes: _request(
            base, token, "PUT", f"/images/{image}/annotation/",
            {"version": ann["version"], "classes_png": _png(classes), "instances_png": None, "strokes": []}))
        if status == 200:
            with rec.lock:
                rec.saves.append((image, json.loads(raw)["version"], index))
        elif status == 409:
            with rec.lock:
                rec.conflicts += 1


def verify(base: str, token: str, rec: Recorder) -> list[str]:
    """Every accepted save is the current version or in the history, saved by the same user."""
    lost = []
    by_image: dict[int, dict[int, str | None]] = {}
    for image in {s[0] for s in rec.saves}:
        _, raw = _request(base, token, "GET", f"/images/{image}/annotation/history/")
        versions = {r["version"]: r.get("updated_by") for r in json.loads(raw)}
        _, raw = _request(base, token, "GET", f"/images/{image}/annotation/")
        current = json.loads(raw)
        versions[current["version"]] = current.get("updated_by")
        by_image[image] = versions
    for image, version, index in rec.saves:
        who = by_image[image].get(version, "missing")
        if who == "missing" or not str(who).endswith(f"-{index}"):
            lost.append(f"image {image} version {version} (user {index}): {who}")
    return lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--train-steps", type=int, default=300, help="0: no training run during the load")
    args = parser.parse_args(argv)
    host = urllib.parse.urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load test only targets this machine (127.0.0.1 / localhost)")
    if not 1 <= args.users <= 100 or not 1 <= args.seconds <= 900:
        parser.error("--users must be 1..100 and --seconds 1..900")
    ctx = setup(args.url, args.users, args.images)
    owner = ctx["tokens"][0]
    run_id = None
    if args.train_steps:
        status, raw = _request(args.url, owner, "POST", f"/projects/{ctx['project']}/training-runs/",
                               {"config": {"steps": args.train_steps}})
        run_id = json.loads(raw).get("id") if status == 202 else None
        print(f"training run: {status} {'id ' + str(run_id) if run_id else raw[:200]!r}")
    rec = Recorder()
    load_before = os.getloadavg()
    until = time.monotonic() + args.seconds
    threads = [threading.Thread(target=annotator, args=(args.url, tok, k, ctx["images"], until, rec, k))
               for k, tok in enumerate(ctx["tokens"])]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    lost = verify(args.url, owner, rec)
    print(f"\n{args.users} annotators on {args.images} shared {SIZE}² images for {elapsed:.0f} s "
          f"(load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs)")
    print("| operation | requests | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for op, values in sorted(rec.latency.items()):
        q = statistics.quantiles(values, n=20) if len(values) >= 2 else values * 19
        print(f"| {op} | {len(values)} | {1000 * statistics.median(values):.0f} | {1000 * q[18]:.0f} | "
              f"{1000 * max(values):.0f} |")
    print(f"saves accepted {len(rec.saves)}, conflicts (409, re-read and painted again) {rec.conflicts}, "
          f"errors {len(rec.errors)}, accepted saves missing from the history {len(lost)}")
    for line in (rec.errors + lost)[:20]:
        print("  ", line)
    if run_id:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            _, raw = _request(args.url, owner, "GET", f"/training-runs/{run_id}/")
            run = json.loads(raw)
            if run["status"] not in ("queued", "running"):
                break
            time.sleep(2)
        print(f"training run {run_id}: {run['status']} (step {run['step']} of {run['total_steps']})",
              run.get("error", ""))
    return 1 if rec.errors or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
