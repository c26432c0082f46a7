"""The one Celery app. Queues: ``default`` (light work), ``gpu`` (training and inference) and ``live``
(live training sessions, apps/live: long-running, so they never hold up queued runs or predictions).

A GPU worker runs ``celery -A labseg worker -Q gpu --concurrency 1``; ``make run`` starts one worker
on both queues. torch is imported lazily inside the tasks, never when Django or this module loads.
"""
import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labseg.settings")

app = Celery("labseg")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Explicit routing keys: a queue must never receive the other queue's messages.
app.conf.task_queues = (
    Queue("default", Exchange("default", type="direct"), routing_key="default"),
    Queue("gpu", Exchange("gpu", type="direct"), routing_key="gpu"),
    Queue("live", Exchange("live", type="direct"), routing_key="live"),
)
app.conf.task_default_exchange = "default"
app.conf.task_default_routing_key = "default"
app.conf.task_routes = {
    "training.*": {"queue": "gpu"},
    "inference.*": {"queue": "gpu"},
    "live.*": {"queue": "live"},
}
app.autodiscover_tasks(["apps.annotate", "apps.training", "apps.inference", "apps.live", "labseg.jobs"])
# `celery -A labseg beat`: jobs of every kind whose worker died are re-queued or failed, and those whose
# message was lost are re-sent or failed (labseg.jobs). Sent to "default" so that a busy (or dead) GPU
# worker does not hold up the check.
app.conf.beat_schedule = {
    "jobs-recover": {"task": "jobs.recover", "schedule": 60.0, "options": {"queue": "default"}},
}
