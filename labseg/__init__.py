"""LabSeg: web annotation + few-label U-Net training for microscopy labs.

Kept empty on purpose: ``labseg.ml`` must import without Django or Celery.
Celery tasks use ``from labseg.celery import app`` directly.
"""
