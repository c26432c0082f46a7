"""Shared API plumbing: one error shape for every app.

Every error answers JSON ``{"detail": <message>, "code": <machine code>, ...}`` with the right 4xx.
Validation errors keep the per-field messages under ``"errors"`` and summarise them in ``detail``.
"""
import logging
import re

from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
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


class PayloadTooLarge(exceptions.APIException):
    """413: the request's data is over a size limit of this server (the message names the setting)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


class ServiceUnavailable(exceptions.APIException):
    """503: a service the request needs (the task queue) cannot be reached; nothing was started."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service this request needs is unavailable; try again later."
    default_code = "unavailable"

    def __init__(self, detail=None, code=None, extra=None):
        super().__init__(detail, code)
        self.extra = extra or {}


class AnyRenderer(BaseRenderer):
    """Lets binary endpoints (PNG, TIFF, zip, checkpoints) answer any Accept header, e.g. ``image/png``,
    instead of 406. Their files are HttpResponses that never reach a renderer; what does reach it is an
    error body, which goes out as JSON with ``Content-Type: application/json`` (not this renderer's
    ``*/*``, which is no media type)."""

    media_type = "*/*"
    format = "bin"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return JSONRenderer().render(data)


BINARY_RENDERERS = (JSONRenderer, AnyRenderer)  # JSON first: a request without Accept gets JSON errors

_ASCII_INT = re.compile(r"-?[0-9]{1,18}")


def parse_int(raw, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """A query/form value as an int: ASCII digits only (``int()`` also takes "٣", "1_0" and " 7 ", and
    ``str.isdigit()`` passes "²", which ``int()`` then refuses), at most 18 digits (fits a bigint), within
    ``lo``..``hi``. Anything else is a ValidationError (400) naming the parameter."""
    text = raw if isinstance(raw, str) else str(raw)
    if not _ASCII_INT.fullmatch(text):
        raise exceptions.ValidationError({name: f"{name} must be an integer (ASCII digits), got {text[:40]!r}"})
    value = int(text)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f">= {lo}" if lo is not None else f"<= {hi}")
        raise exceptions.ValidationError({name: f"{name} must be {span}, got {value}"})
    return value


def parse_int_list(raw: str, name: str, *, lo: int | None = None, hi: int | None = None) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3] with :func:`parse_int`'s rules for every item (empty items are skipped)."""
    items = [v for v in str(raw).split(",") if v != ""]
    if len(items) > 10_000:
        raise exceptions.ValidationError({name: f"{name}: at most 10000 values"})
    if not all(_ASCII_INT.fullmatch(v) for v in items):
        raise exceptions.ValidationError({name: f"{name} must be integers (ASCII digits) separated by commas, "
                                                f"got {str(raw)[:40]!r}"})
    return [parse_int(v, name, lo=lo, hi=hi) for v in items]


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


DATABASE_UNAVAILABLE = ("The database cannot be reached; try again in a moment. (Saves are versioned: a retry "
                        "never overwrites a newer version, it answers 409.)")


def exception_handler(exc, context):
    if isinstance(exc, (OperationalError, InterfaceError)):
        # PostgreSQL down, restarting or refusing connections: the request's transaction was rolled back.
        # A 503 the client can retry, not a 500 "bug" page.
        logging.getLogger("labseg.api").error("database unavailable: %s", exc)
        return Response({"detail": DATABASE_UNAVAILABLE, "code": "database_unavailable"}, status=503,
                        headers={"Retry-After": "5"})
    if isinstance(exc, SuspiciousOperation):  # Django refused the request while parsing it (too many files, ...)
        from labseg.views import describe_bad_request

        logging.getLogger(f"django.security.{type(exc).__name__}").warning("%s", exc)
        status_code, code, message = describe_bad_request(exc)
        return Response({"detail": message, "code": code}, status=status_code)
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
            "code": "invalid" if isinstance(exc, exceptions.ValidationError) else getattr(exc, "default_code", "error"),
            "errors": data,
        }
    body.update(getattr(exc, "extra", {}) or {})
    headers = response.headers if hasattr(response, "headers") else None
    return Response(body, status=response.status_code, headers=headers)


# --- OpenAPI: the error answers of the views -----------------------------------------------------
ERROR_DESCRIPTIONS = {
    400: "invalid input (per-field messages under `errors`)",
    401: "not logged in: no or an invalid token (`WWW-Authenticate: Token`)",
    403: "not allowed: the role is too low (or, with session auth, the CSRF token is missing)",
    404: "not found, or not a member of its project",
    409: "conflicts with the current state (the body says how)",
    413: "over a size limit of this server (the message names the setting)",
    415: "unsupported request media type",
    429: "too many requests; retry after `Retry-After` seconds",
    503: "the task queue (broker) cannot be reached; nothing was started",
}


class ErrorSerializer(serializers.Serializer):
    """Every error answer: ``detail`` (a sentence), ``code`` (machine-readable); validation errors add
    ``errors`` (per field); some add context (409: the current version or run; 503: what was not started)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.JSONField(required=False, help_text="per-field messages of a validation error")


def error_responses(*codes: int, auth: bool = True, descriptions: dict | None = None, binary: bool = False) -> dict:
    """``extend_schema(responses={200: X, **error_responses(400, 404)})``: the JSON error body
    ``{"detail", "code"}`` (see :func:`exception_handler`) for each code; ``auth`` adds 401 and 403, which
    every view that needs a login can answer. ``binary``: for views with :data:`BINARY_RENDERERS`, whose
    success is keyed ``(200, media type)``: the errors are then documented as JSON only (not also ``*/*``)."""
    from drf_spectacular.utils import OpenApiResponse

    wanted = sorted({*codes, *((401, 403) if auth else ())})
    texts = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {((c, "application/json") if binary else c): OpenApiResponse(ErrorSerializer, description=texts[c])
            for c in wanted}
