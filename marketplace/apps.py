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
    return problems + _chain_problems(settings)


def _chain_problems(settings: Any) -> list[checks.CheckMessage]:
    """A chain without a signer cannot open a lease; no chain at all means nobody is paid."""
    if settings.CHAIN_URL and not settings.CHAIN_OPERATOR_KEY:
        return [checks.Error("CHAIN_URL is set but CHAIN_OPERATOR_KEY is not: leases cannot be opened",
                             hint="set CHAIN_OPERATOR_KEY to the key holding OPERATOR_ROLE on the escrow",
                             id="marketplace.E002")]
    if settings.CHAIN_OPERATOR_KEY and not _is_private_key(settings.CHAIN_OPERATOR_KEY):
        return [checks.Error("CHAIN_OPERATOR_KEY is not a 32-byte hex private key", id="marketplace.E003")]
    if not settings.DEBUG and not settings.CHAIN_URL:
        return [checks.Warning("no chain is configured: jobs run but no lease is opened and nobody is paid",
                               hint="set CHAIN_URL (and CHAIN_OPERATOR_KEY) to use the escrow", id="marketplace.W002")]
    return []


def _is_private_key(value: str) -> bool:
    digits = value[2:] if value.startswith("0x") else value
    return len(digits) == 64 and all(char in "0123456789abcdefABCDEF" for char in digits)
