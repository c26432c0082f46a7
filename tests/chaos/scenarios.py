"""Chaos scenarios, run by ``test_chaos.py`` as a separate pytest process against throwaway servers.

Not collected by the normal suite (the name does not match ``test_*.py``): its parent starts a private
PostgreSQL and Redis and runs ``pytest tests/chaos/scenarios.py`` with DATABASE_URL / CELERY_BROKER_URL
pointing at them (pytest-django creates the test database there), short recovery timeouts
(LABSEG_HEARTBEAT_TIMEOUT, LABSEG_QUEUED_TIMEOUT) and CHAOS_* variables that say how to stop and restart
the two servers.

Each scenario starts one *main* job (a training run, or a prediction of a large image) and waits until it
is really working, queues a small *bystander* prediction behind it, then breaks one piece while the main
job runs: the worker's pool child (SIGKILL, or SIGSTOP for longer than the heartbeat timeout, then
SIGCONT), the whole worker (SIGKILL of its process group then a new worker, or SIGSTOP/SIGCONT of the
group), Redis (shut down without persistence, then restarted empty) or PostgreSQL (stopped as in a
crash, then restarted). An annotation is saved through the API meanwhile. Recovery is what the beat does
(``recover_runs`` / ``recover_predictions``, here every second instead of every 60 s) plus the recovery of
every starting worker. Every job must end succeeded, re-queued (or re-sent) then succeeded, or failed
with a message; the main job must succeed (one fault must not cost the lab its run); annotations and
their history must be exactly what was saved. Each scenario appends a line to $CHAOS_REPORT.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from tests.chaos.services import from_env
from tests.conftest import _purge_broker
from tests.helpers import TINY, image_row, wait_for
from tests.inference.conftest import create_tiny_version
from tests.training.conftest import add_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.chaos]

HB = settings.LABSEG_HEARTBEAT_TIMEOUT
QUEUED = settings.LABSEG_QUEUED_TIMEOUT
BIG = int(os.environ.get("CHAOS_BIG_IMAGE", 1024))  # px: a prediction that runs for a few seconds on one thread
TRAIN_SECONDS = float(os.environ.get("CHAOS_TRAIN_SECONDS", 2.5))
FINAL = ("succeeded", "failed", "cancelled")
FAULTS = ["child-kill", "child-stall", "worker-kill", "worker-stall", "redis-restart", "postgres-restart"]

PG, REDIS = from_env()


# --- database access that survives a PostgreSQL restart -------------------------------------------
def db(fn, timeout: float = 60.0):
    """``fn()``, retried while PostgreSQL is down or this process's connection died with the old server."""
    deadline = time.time() + timeout
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connections.close_all()
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def row(model, pk: int):
    return db(lambda: model.objects.get(pk=pk))


def snapshot_annotations() -> dict:
    from apps.annotate.models import Annotation, AnnotationRevision

    def read():
        return {
            "annotations": {a.image_id: (a.version, hashlib.sha256(a.classes_png or b"").hexdigest()[:12])
                            for a in Annotation.objects.all()},
            "revisions": sorted(AnnotationRevision.objects.values_list("image_id", "version")),
        }

    return db(read)


# --- worker processes ------------------------------------------------------------------------------
class Workers:
    """The scenario worker (one, on the gpu queue, concurrency 1); replaced when a scenario killed it."""

    handle = None


def pool_children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def the_pool_child(worker) -> int:
    deadline = time.time() + 30
    while time.time() < deadline:
        kids = pool_children(worker.pid)
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.1)
    raise AssertionError(f"worker {worker.pid} has pool children {pool_children(worker.pid)}, expected one")


def signal_group(worker, sig) -> None:
    try:
        os.killpg(worker.pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture
def worker(start_celery_worker):
    """A live worker for this scenario; afterwards it is resumed (never left stopped) and the servers are up."""
    if Workers.handle is None or not Workers.handle.alive():
        Workers.handle = start_celery_worker(queues="gpu")
    _purge_broker()
    yield Workers.handle
    if Workers.handle is not None and Workers.handle.alive():
        signal_group(Workers.handle, signal.SIGCONT)
    if REDIS.pid() is None:
        REDIS.start()
    if not PG.is_running():
        PG.start()
    connections.close_all()


# --- jobs ------------------------------------------------------------------------------------------
def big_image(project, size: int):
    """An unlabelled image large enough that its prediction runs for seconds (TTA on one CPU thread)."""
    from labseg.ml.synthetic import make_nuclei

    pixels, _ = make_nuclei((size, size), seed=9, channels=1, radius=(4.0, 7.0))
    return image_row(project, pixels[0], "big.tif")


class Job:
    def __init__(self, role: str, kind: str, pk: int):
        self.role, self.kind, self.pk = role, kind, pk

    @property
    def model(self):
        from apps.inference.models import Prediction
        from apps.training.models import TrainingRun

        return TrainingRun if self.kind == "training" else Prediction

    def row(self):
        return row(self.model, self.pk)

    def outcome(self, r=None) -> str:
        r = r or self.row()
        if r.status == "succeeded":
            how = []
            if r.resends:
                how.append("re-sent")
            if r.attempts > 1:
                how.append("re-queued")
            return " + ".join(how) + " -> succeeded" if how else "succeeded"
        if r.status in ("failed", "cancelled"):
            return f"{r.status}: {r.error or r.message}"
        return f"STUCK {r.status}"


def start_training(client, project) -> Job:
    r = client.post(f"/api/v1/projects/{project.pk}/training-runs/",
                    {"config": {**TINY, "steps": 100000, "max_seconds": TRAIN_SECONDS}}, format="json")
    assert r.status_code == 202, r.content
    return Job("main", "training", r.json()["id"])


def request_prediction(client, version, image, role: str) -> tuple[int, Job | None]:
    r = client.post(f"/api/v1/model-versions/{version.pk}/predict/", {"image_ids": [image.pk]}, format="json")
    if r.status_code == 202:
        return r.status_code, Job(role, "prediction", r.json()[0]["id"])
    body = r.json()
    ids = body.get("failed_predictions") or []
    return r.status_code, Job(role, "prediction", ids[0]) if ids else None


def wait_until(predicate, timeout: float, what: str):
    return wait_for(lambda: db(predicate), timeout, interval=0.05, what=what)


def working(job: Job) -> bool:
    r = job.row()
    if job.kind == "training":  # in fit: "Training" is written as it starts, "Training: step n of N" after
        return r.status == "running" and r.message.startswith("Training")
    return r.status == "running" and r.progress >= 0.05  # tiles being predicted


def heartbeat_stale(job: Job) -> bool:
    from django.utils import timezone

    r = job.row()
    return r.status != "running" or r.heartbeat_at < timezone.now() - timezone.timedelta(seconds=HB + 0.5)


def beat() -> dict:
    """What ``celery beat`` runs every 60 s: ``jobs.recover``, for every job kind (training, prediction, export)."""
    from labseg.jobs.service import recover_all

    return db(recover_all)


def acted(result: dict) -> dict:
    """Only the ids something happened to, e.g. {"training.stale.requeued": [3]}."""
    out = {}
    for app, parts in result.items():
        for part, lists in parts.items():
            for what, ids in lists.items():
                if ids:
                    out[f"{app}.{part}.{what}"] = ids
    return out


def save_annotation(client, image) -> int:
    """Save one more stroke on ``image`` through the API (the browser's save); the HTTP status."""
    from apps.annotate.masks import annotation_arrays, encode_png
    from apps.annotate.models import Annotation

    ann = db(lambda: Annotation.objects.get(image=image))
    classes, instances = annotation_arrays(ann)
    classes = classes.copy()
    y = int(ann.version) % classes.shape[0]
    classes[y, :8] = 1
    body = {"version": ann.version, "classes_png": base64.b64encode(encode_png(classes.astype(np.uint8))).decode(),
            "instances_png": base64.b64encode(encode_png(instances)).decode()
            if instances is not None and instances.any() else None, "strokes": []}
    return client.put(f"/api/v1/images/{image.pk}/annotation/", body, format="json").status_code


def report(line: dict) -> None:
    path = os.environ.get("CHAOS_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


# --- the scenarios -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", ["training", "prediction"])
def test_no_job_is_left_queued_or_running(kind, fault, worker, start_celery_worker, client_for, project, owner):
    from apps.training.models import ModelVersion

    began = time.monotonic()
    client = client_for(owner)
    small = add_image(project, seed=1)  # 96 px, painted strokes (annotation version 1)
    version = create_tiny_version(project)  # inactive: the training run starts from scratch
    big = big_image(project, BIG) if kind == "prediction" else None
    before = snapshot_annotations()
    events: list[str] = []
    jobs: list[Job] = []

    # the main job, really working (training steps done / prediction tiles done) ...
    if kind == "training":
        main = start_training(client, project)
    else:
        code, main = request_prediction(client, version, big, "main")
        assert code == 202
    jobs.append(main)
    wait_until(lambda: working(main), 120, f"the main {kind} to work")
    claimed_by = main.row().worker
    # ... and a bystander queued behind it (the worker takes one job at a time)
    code, bystander = request_prediction(client, version, small, "bystander")
    assert code == 202
    jobs.append(bystander)

    saves: list[int] = []
    if fault in ("child-kill", "child-stall"):
        child = the_pool_child(worker)
        sig = signal.SIGKILL if fault == "child-kill" else signal.SIGSTOP
        os.kill(child, sig)
        events.append(f"{sig.name} pool child {child}")
        saves.append(save_annotation(client, small))
        wait_until(lambda: heartbeat_stale(main), 60, "the main job's heartbeat to go stale")
        events.append(f"beat: {acted(beat())}")
        if fault == "child-stall":
            assert main.row().status == "queued", "a stalled job is re-queued"
            os.kill(child, signal.SIGCONT)
            events.append("SIGCONT pool child")
    elif fault == "worker-kill":
        worker.kill()
        Workers.handle = None
        events.append("SIGKILL worker process group")
        saves.append(save_annotation(client, small))
        wait_until(lambda: heartbeat_stale(main), 60, "the main job's heartbeat to go stale")
        Workers.handle = start_celery_worker(queues="gpu")  # recovers on start (worker_ready)
        events.append("new worker started (recovery on worker start)")
    elif fault == "worker-stall":
        signal_group(worker, signal.SIGSTOP)
        events.append("SIGSTOP worker process group")
        saves.append(save_annotation(client, small))
        wait_until(lambda: heartbeat_stale(main), 60, "the main job's heartbeat to go stale")
        events.append(f"beat: {acted(beat())}")
        assert main.row().status == "queued", "a stalled job is re-queued"
        signal_group(worker, signal.SIGCONT)
        events.append("SIGCONT worker process group")
    elif fault == "redis-restart":
        REDIS.stop()
        events.append("Redis shut down (no persistence: queued messages lost)")
        saves.append(save_annotation(client, small))
        # asking for work while the broker is down: 503, and the row is failed with a message (never queued)
        other = big_image(project, 96)
        code, refused = request_prediction(client, version, other, "asked while Redis was down")
        events.append(f"predict while Redis down: HTTP {code}")
        assert code == 503 and refused is not None, code
        jobs.append(refused)
        time.sleep(1.0)
        REDIS.start()
        events.append("Redis restarted (empty)")
    elif fault == "postgres-restart":
        PG.stop("immediate")
        events.append("PostgreSQL stopped (immediate: as a crash)")
        time.sleep(1.0)
        PG.start()
        connections.close_all()
        events.append("PostgreSQL restarted")
        saves.append(save_annotation(client, small))

    # the beat keeps running (every second here, every 60 s in production) until every job has ended
    deadline = time.time() + 150
    while True:
        rows = [job.row() for job in jobs]
        if all(r.status in FINAL for r in rows):
            break
        if time.time() > deadline:
            break
        result = acted(beat())
        if result:
            events.append(f"beat: {result}")
        time.sleep(1.0)

    outcomes = {f"{j.role} {j.kind} #{j.pk}": j.outcome() for j in jobs}
    after = snapshot_annotations()
    report({"kind": kind, "fault": fault, "seconds": round(time.monotonic() - began, 1), "claimed_by": claimed_by,
            "outcomes": outcomes, "events": events, "annotation_saves": saves,
            "annotations_before": before, "annotations_after": after})
    log_tail = (Workers.handle or worker).log_text()[-3000:]

    # every job ended: succeeded, re-queued/re-sent then succeeded, or failed with a message
    for job in jobs:
        r = job.row()
        assert r.status in FINAL, (f"{job.role} {job.kind} {job.pk} left {r.status}", events, log_tail)
        if r.status == "failed":
            assert (r.error or "").strip(), f"{job.role} {job.kind} {job.pk} failed without a message"
        assert r.attempts <= 2 and r.resends <= 1
    # one fault never costs the lab its main job
    assert main.row().status == "succeeded", (outcomes, events, log_tail)
    assert bystander.row().status == "succeeded", (outcomes, events, log_tail)
    if kind == "training":
        assert db(lambda: ModelVersion.objects.filter(run_id=main.pk).count()) == 1, "trained once, stored once"
    # no annotation lost: exactly the saves that were answered 200 happened, nothing else changed
    assert saves == [200], saves
    image_version, _ = before["annotations"][small.pk]
    assert after["annotations"][small.pk][0] == image_version + 1
    assert after["revisions"] == sorted(before["revisions"] + [(small.pk, image_version)])
    assert {k: v for k, v in after["annotations"].items() if k != small.pk} == \
        {k: v for k, v in before["annotations"].items() if k != small.pk}
