"""The outbox: every contract call the marketplace makes, from decision to receipt.

1. `queue` records the call as a `ChainTx` row in the caller's database transaction, keyed by what
   it is for (``settleLease:42``): deciding twice finds the first row, and a decision rolled back
   leaves no call behind.
2. `send_pending` asks the chain whether the contract would accept each queued call (a refused call
   becomes ``rejected`` without using a nonce), then, holding the signer's row lock, gives it the
   next nonce, signs it and stores the signed bytes and hash *before* broadcasting. A crash after
   that point leaves a ``signed`` row whose same bytes are broadcast on the next pass: the node sees
   one transaction, however often it is sent. Nonces are handed out in this one place only.
3. `confirm_sent` reads receipts: ``mined``, or ``reverted`` with the contract's error decoded.
4. `report_outcomes` tells `services.leases` once about each call that ended, so a job whose lease
   could not open goes back to the queue with the reason.

>>> queue(key="releaseLease:42", function="releaseLease", args=[42], lease_id=42)
>>> process(connect())                       # what the ``market.chain_outbox`` task does
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace import dispatch
from marketplace.chain.client import ChainError, ChainUnavailable, ContractRevert
from marketplace.chain.context import Chain, operator_address
from marketplace.models import ChainSigner, ChainTx, Job, TxState

log = logging.getLogger(__name__)

LIVE_STATES = (TxState.QUEUED, TxState.SIGNED, TxState.SENT)


def _encode(args: Sequence[Any]) -> list[Any]:
    return [str(value) if isinstance(value, int) and not isinstance(value, bool) else value for value in args]


def decode_args(row: ChainTx) -> list[Any]:
    """The call's arguments as the ABI wants them (uint256 back to int)."""
    return [int(value) if isinstance(value, str) and value.isdigit() else value for value in row.args]


def queue(*, chain_id: int, key: str, function: str, args: Sequence[Any], lease_id: int | None = None,
          job: Job | None = None) -> ChainTx:
    """Record a call to make (in the caller's transaction); the existing row if ``key`` was queued before."""
    existing = ChainTx.objects.filter(chain_id=chain_id, key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            row = ChainTx.objects.create(chain_id=chain_id, key=key, function=function, args=_encode(args),
                                         lease_id=lease_id, job=job)
    except IntegrityError:  # queued concurrently by another worker
        return ChainTx.objects.get(chain_id=chain_id, key=key)
    dispatch.enqueue_chain_outbox()
    return row


def cancel_unsigned(*, chain_id: int, key: str) -> bool:
    """Withdraw a queued call that has not been signed yet; False if it is already on its way."""
    return ChainTx.objects.filter(chain_id=chain_id, key=key, state=TxState.QUEUED).update(
        state=TxState.CANCELLED, error="withdrawn before it was signed", handled=True) == 1


def process(chain: Chain) -> int:
    """Send what is queued, confirm what was sent, report what ended; how many rows moved."""
    moved = send_pending(chain) + confirm_sent(chain)
    report_outcomes()
    return moved


def send_pending(chain: Chain, limit: int = 100) -> int:
    """Re-broadcast calls signed but not sent (a crash in between), then sign and broadcast queued
    calls one at a time, in order: each is checked against the state its predecessors leave."""
    moved = 0
    for row in ChainTx.objects.filter(chain_id=chain.chain_id, state=TxState.SIGNED).order_by("nonce")[:limit]:
        moved += _broadcast(chain, row)
    for row_id in ChainTx.objects.filter(chain_id=chain.chain_id, state=TxState.QUEUED).order_by("id") \
            .values_list("id", flat=True)[:limit]:
        signed = _sign(chain, row_id)
        if signed is not None:
            moved += 1 + _broadcast(chain, signed)
        else:
            moved += 1
    return moved


@transaction.atomic
def _sign(chain: Chain, row_id: int) -> ChainTx | None:
    """Give the row the next nonce and sign it (the bytes are stored, not sent); None if it was
    refused by the preflight, or taken by another sender."""
    signer = _locked_signer(chain)  # the one place nonces come from: serialises every signing
    row = ChainTx.objects.select_for_update().filter(pk=row_id, state=TxState.QUEUED).first()
    if row is None:
        return None
    contract = chain.escrow if row.contract == "LeaseEscrow" else chain.token
    args = decode_args(row)
    try:
        gas = chain.client.estimate(contract, row.function, args, signer.address)
    except ContractRevert as exc:
        _end(row, TxState.REJECTED, exc)
        return None
    signed = chain.client.sign_call(settings.CHAIN_OPERATOR_KEY, contract, row.function, args,
                                    nonce=signer.next_nonce, gas=int(gas * 1.25) + 10_000)
    row.state, row.sender, row.nonce, row.raw_tx, row.tx_hash = (TxState.SIGNED, signed.sender, signed.nonce,
                                                                signed.raw, signed.tx_hash)
    row.save(update_fields=["state", "sender", "nonce", "raw_tx", "tx_hash"])
    signer.next_nonce += 1
    signer.save(update_fields=["next_nonce"])
    return row


def _locked_signer(chain: Chain) -> ChainSigner:
    address = operator_address()
    signer, created = ChainSigner.objects.select_for_update().get_or_create(chain_id=chain.chain_id, address=address)
    on_chain = chain.client.nonce(address)
    if on_chain > signer.next_nonce:
        # Someone else used this key (or the row is new): never reuse a nonce the chain has seen.
        signer.next_nonce = on_chain
        signer.save(update_fields=["next_nonce"])
    return signer


def _broadcast(chain: Chain, row: ChainTx) -> int:
    try:
        chain.client.broadcast(row.raw_tx)
    except ChainUnavailable:
        return 0  # stays signed: the same bytes go out on the next pass
    except ChainError as exc:
        log.warning("outbox: %s (nonce %s) was refused by the node: %s", row.key, row.nonce, exc)
        ChainTx.objects.filter(pk=row.pk).update(error=str(exc)[:2000], sends=row.sends + 1)
        return 0
    ChainTx.objects.filter(pk=row.pk, state=TxState.SIGNED).update(state=TxState.SENT, sends=row.sends + 1,
                                                                  sent_at=timezone.now())
    return 1


def confirm_sent(chain: Chain, limit: int = 200) -> int:
    """Read the receipts of sent calls: mined, or reverted with the decoded error."""
    moved = 0
    for row in ChainTx.objects.filter(chain_id=chain.chain_id, state=TxState.SENT).order_by("nonce")[:limit]:
        receipt = chain.client.receipt(row.tx_hash)
        if receipt is None:
            continue
        row.gas_used, row.block_number, row.mined_at = receipt.gas_used, receipt.block_number, timezone.now()
        if receipt.succeeded:
            row.state = TxState.MINED
            row.save(update_fields=["state", "gas_used", "block_number", "mined_at"])
        else:
            reason = chain.client.revert_reason(row.tx_hash) or ContractRevert("reverted")
            row.save(update_fields=["gas_used", "block_number", "mined_at"])
            _end(row, TxState.REVERTED, reason)
        moved += 1
    return moved


def _end(row: ChainTx, state: str, reason: ContractRevert) -> None:
    row.state, row.error_code, row.error = state, reason.error[:64], str(reason)[:2000]
    row.save(update_fields=["state", "error_code", "error"])
    log.info("outbox: %s %s: %s", row.key, state, reason)


def report_outcomes(limit: int = 200) -> int:
    """Tell the services, once each, about calls that ended (a lease that did not open, ...)."""
    from marketplace.services import leases

    reported = 0
    for row_id in ChainTx.objects.filter(handled=False).exclude(state__in=LIVE_STATES).order_by("id") \
            .values_list("id", flat=True)[:limit]:
        with transaction.atomic():
            row = ChainTx.objects.select_for_update().filter(pk=row_id, handled=False).first()
            if row is None:
                continue
            leases.call_ended(row)
            row.handled = True
            row.save(update_fields=["handled"])
            reported += 1
    return reported


def pending_count(chain_id: int) -> int:
    return ChainTx.objects.filter(chain_id=chain_id, state__in=LIVE_STATES).count()
