"""The ledger: what the escrow contract says each address holds and each lease did.

Rebuilt from the contract's events alone (`services.ledger`), never written from a decision:
the chain decides who owns what, these rows mirror it so pages and matching need no RPC.
"""
from __future__ import annotations

from django.db import models

from marketplace.models.fields import WeiField


class Wallet(models.Model):
    """One address's balances in the escrow on one chain."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    available = WeiField(default=0)  # withdrawable now
    reserved = WeiField(default=0)  # held by open leases (as tenant)
    stake = WeiField(default=0)  # as provider
    lease_cap = WeiField(default=0)
    deposited = WeiField(default=0)
    withdrawn = WeiField(default=0)
    earned = WeiField(default=0)  # lease payments received, after fees
    fees = WeiField(default=0)  # as treasury
    spent = WeiField(default=0)  # lease payments made (as tenant), fees included
    compensated = WeiField(default=0)  # slashed stake received (as tenant)
    slashed = WeiField(default=0)  # stake lost (as provider)
    registered = models.BooleanField(default=False)  # as provider
    unbonding_at = models.DateTimeField(null=True, blank=True)
    open_leases = models.PositiveIntegerField(default=0)  # as provider
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="one_wallet_per_chain")]

    def __str__(self) -> str:
        return f"{self.address} on chain {self.chain_id}"


class LeaseState(models.TextChoices):
    OPEN = "open", "Open"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"
    RECLAIMED = "reclaimed", "Reclaimed"
    SLASHED = "slashed", "Slashed"


class Lease(models.Model):
    """One lease of the escrow: a tenant's reservation for one run of one job on one provider."""

    chain_id = models.PositiveBigIntegerField()
    # uint256 on chain: whatever the contract accepted, the mirror must hold, or the follower
    # would stop at that event. The marketplace's own leases use the attempt's id and the job's.
    lease_id = WeiField()
    job_id_on_chain = WeiField()
    job = models.ForeignKey("marketplace.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="leases")
    tenant = models.CharField(max_length=42)
    provider = models.CharField(max_length=42)
    rate_per_hour_wei = WeiField()
    reserved_wei = WeiField()
    deadline = models.DateTimeField()
    state = models.CharField(max_length=16, choices=LeaseState.choices, default=LeaseState.OPEN)
    used_seconds = WeiField(null=True, blank=True)  # a uint64 on chain: above a signed bigint's range
    payment_wei = WeiField(default=0)  # to the provider, fee included
    fee_wei = WeiField(default=0)
    refund_wei = WeiField(default=0)
    slashed_wei = WeiField(default=0)
    result_hash = models.CharField(max_length=66, blank=True, default="")
    open_tx = models.CharField(max_length=66)
    close_tx = models.CharField(max_length=66, blank=True, default="")
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "lease_id"], name="one_lease_per_id")]
        indexes = [models.Index(fields=["tenant"], name="lease_tenant_idx"),
                   models.Index(fields=["provider"], name="lease_provider_idx")]

    def __str__(self) -> str:
        return f"lease {self.lease_id} ({self.state})"
