"""Shared fixtures: personas, API clients, and a real Celery worker process.

Personas (healthchecks style): ``owner``, ``annotator``, ``viewer``, ``stranger`` and anonymous, all
around one ``project``. Tests that need a worker use ``celery_worker`` (session-wide, on queues
default+gpu+live) or ``start_celery_worker`` (a factory for workers a test may kill); both run against the
test database, so such tests must use ``@pytest.mark.django_db(transaction=True)``. Every test that
uses either (directly or through another fixture) is given the ``worker`` marker at collection, so
``-m "not worker"`` leaves out exactly the tests that start a worker.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.gpu_queue import held_gpu_queue  # noqa: F401 - a fixture: imported here, every test module may use it

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent

#: The fixtures that start a Celery worker process: a test that uses one (even indirectly) carries ``worker``.
WORKER_FIXTURES = frozenset({"celery_worker", "start_celery_worker"})


def starts_worker(item) -> bool:
    """Whether a collected test uses a worker fixture (``fixturenames`` is the whole fixture closure)."""
    return not WORKER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        if starts_worker(item) and item.get_closest_marker("worker") is None:
            item.add_marker(pytest.mark.worker)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """auth/token/ is throttled per client address (counts in the default cache): every test starts at zero."""
    from django.core.cache import cache

    cache.clear()


# --- personas ------------------------------------------------------------------------------
@pytest.fixture
def make_user(db, django_user_model):
    def make(username: str, password: str = "pw-" + "x" * 8, **extra):
        return django_user_model.objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def owner(make_user):
    return make_user("olivia_owner")


@pytest.fixture
def annotator(make_user):
    return make_user("anna_annotator")


@pytest.fixture
def viewer(make_user):
    return make_user("victor_viewer")


@pytest.fixture
def stranger(make_user):
    return make_user("sam_stranger")


@pytest.fixture
def project(owner, annotator, viewer):
    """A project owned by ``owner`` with ``annotator`` and ``viewer`` as members, class 2 'nucleus'."""
    from apps.annotate.models import LabelClass, Membership, Project, Role

    p = Project.objects.create(name="Nuclei", owner=owner)
    LabelClass.objects.create(project=p, index=1, name="background", color="#0000ff")
    LabelClass.objects.create(project=p, index=2, name="nucleus", color="#ff0000")
    Membership.objects.create(project=p, user=owner, role=Role.OWNER)
    Membership.objects.create(project=p, user=annotator, role=Role.ANNOTATOR)
    Membership.objects.create(project=p, user=viewer, role=Role.VIEWER)
    return p


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def client_for(db):
    """``client_for(user)``: an APIClient authenticated as user (None: anonymous)."""
    from rest_framework.test import APIClient

    def make(user):
        c = APIClient()
        if user is not None:
            c.force_authenticate(user=user)
        return c

    return make


# --- Celery worker -------------------------------------------------------------------------
class WorkerHandle:
    def __init__(self, proc: subprocess.Popen, name: str, log: Path):
        self.proc, self.name, self.log = proc, name, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self):
        """SIGKILL the worker and its pool children (a crashed machine, not a clean shutdown)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20):
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def _worker_env() -> dict:
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = os.environ.copy()
    env["DATABASE_URL"] = (
        f"postgres://{db.get('USER') or ''}:{db.get('PASSWORD') or ''}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{db['NAME']}"
    )
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    env.setdefault("LABSEG_TORCH_THREADS", "1")
    # live sessions (queue "live"): a tiny network, overlays every 0.3 s, a page gone after 6 s of silence
    env.setdefault("LABSEG_LIVE_CONFIG", '{"base_channels": 4, "depth": 2, "tile_output": 32, "batch_size": 1, '
                                         '"warmup_steps": 0}')
    env.setdefault("LABSEG_LIVE_OVERLAY_MS", "300")
    env.setdefault("LABSEG_LIVE_HEARTBEAT_TIMEOUT", "6")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _purge_broker():
    from labseg.celery import app

    with app.connection_for_write() as conn:
        for q in ("default", "gpu", "live"):
            try:
                conn.default_channel.queue_purge(q)
            except Exception:  # queue does not exist yet
                pass


@pytest.fixture(scope="session")
def start_celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """Factory: ``start_celery_worker(queues="default,gpu,live", extra_env=None) -> WorkerHandle``.

    Waits until the worker answers a ping. Every worker started is stopped at session end.
    """
    from labseg.celery import app

    handles: list[WorkerHandle] = []
    logdir = tmp_path_factory.mktemp("celery")

    def start(queues: str = "default,gpu,live", extra_env: dict | None = None, timeout: float = 90) -> WorkerHandle:
        name = f"test-{uuid.uuid4().hex[:8]}@%h"
        log = logdir / f"{name.split('@')[0]}.log"
        env = _worker_env()
        env.update(extra_env or {})
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "labseg", "worker", "-Q", queues, "--concurrency", "1",
             "-n", name, "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        handle = WorkerHandle(proc, name, log)
        handles.append(handle)
        hostname = name.replace("%h", os.uname().nodename)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not handle.alive():
                raise RuntimeError(f"celery worker exited early:\n{handle.log_text()[-4000:]}")
            if app.control.ping(destination=[hostname], timeout=1.0):
                return handle
        handle.kill()
        raise RuntimeError(f"celery worker did not answer a ping in {timeout}s:\n{handle.log_text()[-4000:]}")

    _purge_broker()
    yield start
    for h in handles:
        h.stop()


@pytest.fixture(scope="session")
def celery_worker(start_celery_worker):
    """One worker on default+gpu+live for the whole session (started on first use)."""
    return start_celery_worker()


@pytest.fixture
def broker_down(monkeypatch):
    """This process's Celery app sends to a closed port (Redis refuses the connection), as when the broker is
    down; worker processes are untouched. Celery reads CELERY_BROKER_URL from the environment before its own
    config, so the variable is what changes; the cached connection and producer pools are dropped."""
    from labseg.celery import app

    def reset_pools():
        from kombu import pools

        pool, app._pool = getattr(app, "_pool", None), None
        app.amqp._producer_pool = None
        if pool is not None:
            try:
                pool.force_close_all()
            except Exception:  # noqa: BLE001 - closing a broken pool may fail; it is dropped anyway
                pass
        # kombu keeps producer pools in a global registry keyed by connection: a pool closed here but left
        # there is handed out again for the same URL ("Acquire on closed pool" in every later test)
        pools.reset()

    reset_pools()
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setitem(app.conf, "broker_connection_timeout", 1)
    yield
    reset_pools()
    monkeypatch.undo()
