"""Top-level routes: the API under /api/v1/, its schema and docs, and the web pages."""
from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketplace.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("marketplace.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("marketplace.web.urls")),
]

handler404 = "marketplace.web.views.not_found"
handler500 = "marketplace.web.views.server_error"
