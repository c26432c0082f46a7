"""Celery tasks of the inference app (queue ``gpu``). They take ids; torch is imported inside the runner."""
from __future__ import annotations

import logging
import os
import socket

from labseg.celery import app
from labseg.jobs.service import JobLost

from . import services

log = logging.getLogger(__name__)


@app.task(name="inference.predict", acks_late=True, ignore_result=True, bind=True)
def predict(self, prediction_id: int) -> None:
    """Run one queued prediction: claim it (queued -> running), predict, store the maps, score it.

    A redelivered message finds the row no longer queued and does nothing. Any error fails the
    prediction with its message (never left "running"). A worker that lost the prediction (stalled past
    the heartbeat timeout, so recovery re-queued it) stops at its next progress write, writing nothing.
    """
    # host:pid, as training runs: a stalled pool child whose prediction was re-queued and claimed by another
    # child of the same worker must still see that it lost it
    worker = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    if not services.claim_prediction(prediction_id, worker=worker):
        log.info("prediction %s is not queued any more; nothing to do", prediction_id)
        return
    from . import runner  # imports torch lazily

    try:
        runner.run_prediction(prediction_id, worker)
    except services.PredictionLost:
        log.warning("prediction %s was taken from %s (recovered as stale); stopping", prediction_id, worker)
    except Exception as exc:  # noqa: BLE001 - every failure must end the row, with its message
        log.exception("prediction %s failed", prediction_id)
        services.fail_prediction(prediction_id, runner.explain_error(exc), worker=worker)


@app.task(name="inference.export", acks_late=True, ignore_result=True, bind=True)
def export(self, export_id: int) -> None:
    """Export a model version (TorchScript / ONNX): claim it, export, store the file; any error fails it with
    its message; a worker that lost it (recovered as stale) stops and writes nothing."""
    worker = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    if not services.claim_export(export_id, worker):
        log.info("export %s is not queued any more; nothing to do", export_id)
        return
    try:
        services.run_export(export_id, worker)
    except JobLost:
        log.warning("export %s was taken from %s (recovered as stale); stopping", export_id, worker)
    except Exception as exc:  # noqa: BLE001 - every failure must end the row, with its message
        log.exception("export %s failed", export_id)
        services.fail_export(export_id, f"The export failed ({type(exc).__name__}: {exc}).", worker)
