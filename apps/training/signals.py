"""What the training app announces; other apps react (training itself imports none of them).

``version_trained``: sent once a training run's new ModelVersion is committed (``services.finish_run``),
with ``version=`` the version. Receivers run in the worker that trained it; an exception in one is
logged and never touches the run (the version is stored). The inference app connects auto-predict.
"""
from __future__ import annotations

from django.dispatch import Signal

version_trained = Signal()
