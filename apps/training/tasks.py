"""Celery tasks of the training app: they take ids; torch is imported inside the task body only.

``training.run`` is ``acks_late``: when a worker dies mid-run, the broker redelivers the message after
its visibility timeout, and ``claim_run`` (one conditional UPDATE) makes that redelivery a no-op
unless recovery re-queued the run. Runs whose worker died or whose message was lost are recovered by
the one beat task of every job kind, ``jobs.recover`` (``labseg.jobs``).
"""
from __future__ import annotations

import logging
import os
import socket

from django.db import close_old_connections

from labseg.celery import app

from . import services
from .models import RunStatus

log = logging.getLogger(__name__)


def _worker_name(task) -> str:
    host = getattr(task.request, "hostname", None) or socket.gethostname()
    return f"{host}:{os.getpid()}"


@app.task(name="training.run", acks_late=True, bind=True)
def run_training(self, run_id: int) -> str:
    """Claim the run, train, validate, store the version; every failure ends the run with a message."""
    worker = _worker_name(self)
    if not services.claim_run(run_id, worker):
        log.info("training run %s not claimed by %s: it is no longer queued (done, cancelled or taken)", run_id, worker)
        return "skipped"
    log.info("training run %s claimed by %s", run_id, worker)
    try:
        from .pipeline import execute_run  # imports numpy/torch lazily, only in the worker

        execute_run(run_id, worker)
        return "succeeded"
    except services.RunStopped as stop:
        if stop.reason == "cancelled":
            services.end_run(run_id, RunStatus.CANCELLED, message="Cancelled", worker=worker)
            log.info("training run %s cancelled", run_id)
            return "cancelled"
        log.warning("training run %s was taken from %s (recovered as stale); stopping", run_id, worker)
        return "lost"
    except services.TrainingError as exc:
        services.fail_run(run_id, str(exc), worker=worker)
        log.info("training run %s failed: %s", run_id, exc)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - the run must end, whatever broke
        log.exception("training run %s crashed", run_id)
        services.fail_run(
            run_id, f"Training stopped because of an internal error ({type(exc).__name__}: {exc}). "
            "Please tell your administrator; the worker log has the details.", worker=worker,
        )
        return "failed"
    finally:
        close_old_connections()
