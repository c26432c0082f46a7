"""Non-API views: health check, the browser app's shell page, and Django's error handlers.

The error handlers answer JSON ``{"detail", "code"}`` under ``/api/`` (errors raised outside a DRF view
or its exception handler: an unknown API URL, a request Django refuses while parsing it, such as more
than ``DATA_UPLOAD_MAX_NUMBER_FILES`` files, and uncaught exceptions) and Django's own pages elsewhere.
"""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import ensure_csrf_cookie


def healthz(request):
    return JsonResponse({"status": "ok"})


@login_required
@ensure_csrf_cookie
def spa(request):
    index = settings.FRONTEND_DIST / "index.html"
    if not index.is_file():
        return HttpResponse(
            "<h1>LabSeg</h1><p>The browser app is not built yet: run <code>make frontend</code>. "
            "The API is at <a href='/api/docs/'>/api/docs/</a>.</p>",
            status=503,
        )
    return HttpResponse(index.read_text(encoding="utf-8"))


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def describe_bad_request(exception) -> tuple[int, str, str]:
    """(status, code, message) for a request Django refused while reading it (a SuspiciousOperation)."""
    if isinstance(exception, TooManyFilesSent):
        return 400, "too_many_files", ("Too many files in one request: at most "
                                       f"{settings.DATA_UPLOAD_MAX_NUMBER_FILES} (LABSEG_MAX_FILES_PER_UPLOAD); "
                                       "send them in several batches.")
    if isinstance(exception, TooManyFieldsSent):
        return 400, "too_many_fields", (f"Too many fields in one request: at most "
                                        f"{settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}.")
    if isinstance(exception, RequestDataTooBig):
        return 413, "too_large", (f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
                                  "(DATA_UPLOAD_MAX_MEMORY_SIZE; files go in multipart uploads, which it does not "
                                  "limit).")
    return 400, "bad_request", "Bad request."


def bad_request(request, exception, template_name=defaults.ERROR_400_TEMPLATE_NAME):
    if not _is_api(request):
        return defaults.bad_request(request, exception, template_name)
    status, code, message = describe_bad_request(exception)
    return JsonResponse({"detail": message, "code": code}, status=status)


def permission_denied(request, exception, template_name=defaults.ERROR_403_TEMPLATE_NAME):
    if not _is_api(request):
        return defaults.permission_denied(request, exception, template_name)
    return JsonResponse({"detail": "You do not have permission to perform this action.",
                         "code": "permission_denied"}, status=403)


def page_not_found(request, exception, template_name=defaults.ERROR_404_TEMPLATE_NAME):
    if not _is_api(request):
        return defaults.page_not_found(request, exception, template_name)
    return JsonResponse({"detail": f"No API endpoint at {request.path[:200]} (see /api/docs/).",
                         "code": "not_found"}, status=404)


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    if not _is_api(request):
        return defaults.server_error(request, template_name)
    return JsonResponse({"detail": "Internal server error; it has been logged.", "code": "server_error"},
                        status=500)


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def throttle_posts(view, scope: str = "login"):
    """Wrap a login view: more than ``LABSEG_LOGIN_RATE`` POSTs (e.g. ``10/min``) from one address answer 429
    with the page and a message instead of checking the password (counted in the default cache, which
    every web process shares: see CACHES in settings)."""
    from functools import wraps

    from django.conf import settings
    from django.core.cache import cache
    from django.http import HttpResponse

    count_s, _, period = str(getattr(settings, "LABSEG_LOGIN_RATE", "10/min")).partition("/")
    limit = max(1, int(count_s))
    window = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}.get(period or "min", 60)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method == "POST":
            key = f"labseg:throttle:{scope}:{_client_address(request)}"
            cache.add(key, 0, timeout=window)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=window)
                count = 1
            if count > limit:
                response = HttpResponse(
                    f"Too many sign-in attempts from this address. Wait {window} seconds and try again.",
                    status=429, content_type="text/plain; charset=utf-8")
                response["Retry-After"] = str(window)
                return response
        return view(request, *args, **kwargs)

    return wrapped
