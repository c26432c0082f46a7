from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from labseg import health, views

# Password guessing on the sign-in forms is throttled per address, like the API's auth/token/ (429).
admin.site.login = views.throttle_posts(admin.site.login, "admin-login")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", views.throttle_posts(auth_views.LoginView.as_view(), "login"), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/health/", health.health, name="health"),
    path("api/v1/", include("apps.annotate.urls")),
    path("api/v1/", include("apps.training.urls")),
    path("api/v1/", include("apps.inference.urls")),
    path("api/v1/", include("apps.live.urls")),
    path("healthz", views.healthz, name="healthz"),
    # The single-page browser app (frontend/, built by Vite) for every other path.
    re_path(r"^(?!api/|admin/|accounts/|static/|media/).*$", views.spa, name="spa"),
]

# JSON errors under /api/ for what happens outside DRF's exception handler (Django's pages elsewhere).
handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
