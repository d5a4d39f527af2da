"""Routes of API version 1."""
from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from marketplace.api import views

router = SimpleRouter()
router.register("nodes", views.NodeViewSet, basename="node")
router.register("offers", views.OfferViewSet, basename="offer")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")
router.register("jobs", views.JobViewSet, basename="job")

app_name = "api"
urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="register"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("auth/token/rotate", views.RotateTokenView.as_view(), name="token-rotate"),
    path("me", views.MeView.as_view(), name="me"),
    path("catalog/gpus/", views.GpuCatalogView.as_view(), name="gpu-catalog"),
    path("job-kinds/", views.JobKindsView.as_view(), name="job-kinds"),
    path("wallet/", views.WalletView.as_view(), name="wallet"),
    path("ledger/", views.LedgerView.as_view(), name="ledger"),
    path("", include(router.urls)),
]
