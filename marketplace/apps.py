"""The marketplace app and its system checks (stable ids: marketplace.E001...)."""
from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "GPU marketplace"

    def ready(self) -> None:
        checks.register(check_marketplace_settings, checks.Tags.compatibility)


def check_marketplace_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Settings that would make the marketplace misbehave rather than fail loudly."""
    from django.conf import settings

    problems: list[checks.CheckMessage] = []
    if settings.ARTIFACT_MAX_BYTES > 2**40:
        problems.append(checks.Error("ARTIFACT_MAX_BYTES is over 1 TiB", id="marketplace.E001"))
    if not settings.DEBUG and settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        problems.append(checks.Warning(
            "throttles and failed-login limits use a per-process cache",
            hint="set REDIS_URL so every web process shares one rate-limit store", id="marketplace.W001"))
    return problems
