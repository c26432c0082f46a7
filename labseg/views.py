"""Non-API views: health check and the browser app's shell page."""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
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
