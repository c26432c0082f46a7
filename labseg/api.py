"""Shared API plumbing: one error shape for every app.

Every error answers JSON ``{"detail": <message>, "code": <machine code>, ...}`` with the right 4xx.
Validation errors keep the per-field messages under ``"errors"`` and summarise them in ``detail``.
"""
from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    """409: the request conflicts with the current state (stale version, run already going)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, detail=None, code=None, extra=None):
        super().__init__(detail, code)
        self.extra = extra or {}


def _first_message(data):
    if isinstance(data, dict):
        for key, value in data.items():
            msg = _first_message(value)
            if msg:
                return msg if key in ("detail", "non_field_errors") else f"{key}: {msg}"
    if isinstance(data, (list, tuple)):
        for value in data:
            msg = _first_message(value)
            if msg:
                return msg
    if isinstance(data, str):
        return data
    return None


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    if isinstance(data, dict) and set(data) == {"detail"}:
        body = {"detail": str(data["detail"]), "code": codes if isinstance(codes, str) else "error"}
    else:
        body = {
            "detail": _first_message(data) or "Invalid input.",
            "code": "invalid" if isinstance(exc, exceptions.ValidationError) else "error",
            "errors": data,
        }
    body.update(getattr(exc, "extra", {}) or {})
    return Response(body, status=response.status_code, headers=response.headers if hasattr(response, "headers") else None)
