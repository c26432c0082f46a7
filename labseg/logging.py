"""Log formatting and the request log (settings.LOGGING, the web server's log lines).

``LOG_FORMAT=text`` (the default, for a terminal): ``time LEVEL logger: message``.
``LOG_FORMAT=json``: one JSON object per line with ``time`` (ISO 8601, UTC), ``level``, ``logger`` and
``message``, the ``extra`` fields of the record (requests: ``method``, ``path``, ``status``,
``duration_ms``) and ``exception`` (the traceback) when there is one.

``RequestLogMiddleware`` writes one line per request to the ``labseg.request`` logger (the path without its
query string, which may carry secrets). ``GunicornLogger`` (``gunicorn --logger-class
labseg.logging.GunicornLogger``) gives gunicorn's own lines (boot, worker timeouts) the same format.
"""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

request_log = logging.getLogger("labseg.request")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            # extra fields that JSON can hold (Django's django.request passes the request object: left out)
            if key not in _RECORD_ATTRS and key not in entry and (
                    value is None or isinstance(value, (str, int, float, bool))):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class SkipKombuNoHostname(logging.Filter):
    """kombu's "No hostname was supplied" warning, which the filesystem broker (no host in its URL) would
    repeat on every connection (each health check)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No hostname was supplied")


class RequestLogMiddleware:
    """One INFO line per request: method, path, status and duration (ms), also as JSON fields."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        duration_ms = round((time.perf_counter() - start) * 1000, 1)
        status = response.status_code
        # INFO whatever the status: django.request already logs 4xx as warnings and 5xx with the traceback.
        request_log.info("%s %s %s %.1fms", request.method, request.path, status, duration_ms,
                         extra={"method": request.method, "path": request.path, "status": status,
                                "duration_ms": duration_ms})
        return response


try:
    from gunicorn.glogging import Logger as _GunicornBaseLogger
except ImportError:  # gunicorn is only needed to serve; everything else works without it
    _GunicornBaseLogger = None

if _GunicornBaseLogger is not None:
    class GunicornLogger(_GunicornBaseLogger):
        """gunicorn's error and access logs in LOG_FORMAT (text: gunicorn's own format)."""

        def setup(self, cfg):
            super().setup(cfg)
            if os.environ.get("LOG_FORMAT", "text").strip().lower() == "json":
                for log in (self.error_log, self.access_log):
                    for handler in log.handlers:
                        handler.setFormatter(JsonFormatter())
