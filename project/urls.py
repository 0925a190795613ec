from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from visualsearch import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("visualsearch.urls")),
    path("", include("catalog.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("visualsearch.api.urls")),
    path("api/", include("catalog.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

if settings.SERVE_MEDIA:
    # Development only (on by default with DEBUG); in production a web server or object storage serves media.
    urlpatterns.append(re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}))


def handler404(request, exception=None):
    """JSON for API clients, the normal page for people."""
    from django.views.defaults import page_not_found

    from visualsearch.api.errors import json_not_found

    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    return page_not_found(request, exception)


def handler500(request):
    from django.views.defaults import server_error

    from visualsearch.api.errors import json_server_error

    return json_server_error(request) if request.path.startswith("/api/") else server_error(request)
