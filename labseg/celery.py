"""The one Celery app. Queues: ``default`` (light work) and ``gpu`` (training and inference).

A GPU worker runs ``celery -A labseg worker -Q gpu --concurrency 1``; ``make run`` starts one worker
on both queues. torch is imported lazily inside the tasks, never when Django or this module loads.
"""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labseg.settings")

app = Celery("labseg")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.conf.task_routes = {
    "training.*": {"queue": "gpu"},
    "inference.*": {"queue": "gpu"},
}
app.autodiscover_tasks(["apps.annotate", "apps.training", "apps.inference"])
