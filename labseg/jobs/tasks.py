"""The one periodic recovery task of every job kind (``celery beat``, queue ``default``), also run once on
every worker start so that a worker starting after a crash picks up what the dead one left running."""
from __future__ import annotations

from labseg.celery import app
from labseg.worker import recover_on_worker_start

from . import service


@app.task(name="jobs.recover")
def recover() -> dict:
    """Re-queue or fail jobs whose worker stopped its heartbeats; re-send (once) or fail queued jobs that no
    worker received (a lost message); for every registered kind."""
    return service.recover_all()


recover_on_worker_start(lambda: service.recover_all(at_worker_start=True), "jobs")
