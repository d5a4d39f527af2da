"""Accounts: a Django user plus the marketplace role and payout wallet."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    PROVIDER = "provider", "Provider"
    DEVELOPER = "developer", "Developer"


class Account(models.Model):
    """Marketplace facts about a user. Created with the user by `services.accounts.register_user`."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    role = models.CharField(max_length=16, choices=Role.choices)
    # EIP-55 checksummed; empty until the provider sets it. Payouts need it (escrow issue).
    payout_address = models.CharField(max_length=42, blank=True, default="")
    # The wallet the escrow knows this user by (a developer's deposits, a provider's stake and
    # earnings), EIP-55 checksummed. Set only with a signature from that wallet
    # (`services.accounts.link_wallet`): leases spend from it and pay to it.
    wallet_address = models.CharField(max_length=42, blank=True, default="", db_index=True)
    wallet_linked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user.username} ({self.role})"

    @property
    def is_provider(self) -> bool:
        return self.role == Role.PROVIDER

    @property
    def is_developer(self) -> bool:
        return self.role == Role.DEVELOPER
