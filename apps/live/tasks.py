"""The Celery task of live sessions, on its own ``live`` queue (labseg/celery.py routes ``live.*``)."""
from __future__ import annotations

import logging
import os
import socket

from django.db import close_old_connections

from labseg.celery import app

from . import services

log = logging.getLogger(__name__)


@app.task(name="live.run", acks_late=True, bind=True)
def run_live(self, session_id: int) -> str:
    """Claim the session and train until it is stopped; every failure ends it with a message."""
    worker = f"{getattr(self.request, 'hostname', None) or socket.gethostname()}:{os.getpid()}"
    if not services.claim(session_id, worker):
        log.info("live session %s not claimed by %s: no longer queued", session_id, worker)
        return "skipped"
    log.info("live session %s claimed by %s", session_id, worker)
    try:
        # numpy/torch only in the worker
        from .runner import TrainingInputError, run_session

        try:
            return run_session(session_id, worker)
        except TrainingInputError as exc:
            services.fail(session_id, str(exc), worker)
            return "failed"
    except services.LiveStopped as stop:
        log.info("live session %s ended for %s (%s)", session_id, worker, stop.reason)
        return stop.reason
    except Exception as exc:  # the session must end, whatever broke (logged with its traceback)
        log.exception("live session %s crashed", session_id)
        services.fail(session_id, f"Live training stopped because of an internal error ({type(exc).__name__}: "
                                  f"{exc}). Turn Live on again; if it happens again, tell your administrator.", worker)
        return "failed"
    finally:
        close_old_connections()
