"""The chain's side of the database: deployments, the outbox of transactions we send, and the
events we have applied.

Only `marketplace.chain` writes these rows. The outbox (`ChainTx`) is how every write reaches the
chain: a row is queued in the same database transaction as the decision it carries out, then
signed with the one signer's next nonce (handed out from `ChainSigner`, locked), and the signed
bytes are stored before they are broadcast, so a retried send re-broadcasts the same transaction
and can never pay twice. `ChainEvent` keys each applied log by (chain, transaction hash, log
index): applying a log twice is a no-op.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q


class ChainDeployment(models.Model):
    """Where a contract lives on one chain (written by ``manage.py deploy_contracts``)."""

    chain_id = models.PositiveBigIntegerField()
    name = models.CharField(max_length=64)  # "LeaseEscrow", "MarketToken"
    address = models.CharField(max_length=42)
    block_number = models.PositiveBigIntegerField()  # the follower starts here
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    settings = models.JSONField(default=dict)  # fee, minimum stake, delays: as deployed
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "name"], name="one_deployment_per_chain")]

    def __str__(self) -> str:
        return f"{self.name} on chain {self.chain_id} at {self.address}"


class ChainSigner(models.Model):
    """The marketplace's one signing address on a chain and the next nonce it will use."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="one_signer_row")]


class TxState(models.TextChoices):
    QUEUED = "queued", "Queued"  # decided, not signed yet
    SIGNED = "signed", "Signed"  # nonce taken, bytes stored, maybe not broadcast yet
    SENT = "sent", "Sent"  # broadcast, waiting for a receipt
    MINED = "mined", "Mined"  # succeeded on chain
    REVERTED = "reverted", "Reverted"  # mined, but the contract refused it (the nonce is used)
    REJECTED = "rejected", "Rejected"  # the contract would refuse it: never signed, no nonce used
    CANCELLED = "cancelled", "Cancelled"  # withdrawn before it was signed


class ChainTx(models.Model):
    """One contract call the marketplace makes, from decision to receipt (the outbox)."""

    chain_id = models.PositiveBigIntegerField()
    # What the call is for, unique per chain: a second decision with the same key (a retried task)
    # finds the first row instead of paying twice. E.g. "settleLease:42".
    key = models.CharField(max_length=128)
    contract = models.CharField(max_length=64, default="LeaseEscrow")
    function = models.CharField(max_length=64)
    args = models.JSONField(default=list)  # uint256 values as decimal strings
    lease_id = models.PositiveBigIntegerField(null=True, blank=True)
    job = models.ForeignKey("marketplace.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="chain_txs")
    state = models.CharField(max_length=16, choices=TxState.choices, default=TxState.QUEUED)
    sender = models.CharField(max_length=42, blank=True, default="")
    nonce = models.PositiveBigIntegerField(null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True, default="")
    raw_tx = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")  # the contract's custom error
    error = models.TextField(blank=True, default="")
    sends = models.PositiveIntegerField(default=0)
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    handled = models.BooleanField(default=False)  # its outcome was reported to the services
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    mined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "key"], name="one_tx_per_key"),
            models.UniqueConstraint(fields=["chain_id", "sender", "nonce"], condition=Q(nonce__isnull=False),
                                    name="one_tx_per_nonce"),
        ]
        indexes = [models.Index(fields=["state", "id"], name="chaintx_state_idx"),
                   models.Index(fields=["lease_id"], name="chaintx_lease_idx")]

    def __str__(self) -> str:
        return f"{self.function}({', '.join(map(str, self.args))}) [{self.state}]"


class ChainCursor(models.Model):
    """How far the event follower has applied one contract's logs (inclusive)."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    last_block = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="one_cursor_per_contract")]


class ChainEvent(models.Model):
    """One contract event, applied to the ledger exactly once."""

    chain_id = models.PositiveBigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.PositiveBigIntegerField()
    block_time = models.DateTimeField(null=True, blank=True)
    name = models.CharField(max_length=64)
    args = models.JSONField(default=dict)  # uint256 values as decimal strings, bytes as 0x hex
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"],
                                               name="apply_each_log_once")]
        ordering = ["block_number", "log_index"]

    def __str__(self) -> str:
        return f"{self.name} at {self.tx_hash}:{self.log_index}"
