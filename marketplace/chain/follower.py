"""The event follower: apply the escrow's confirmed events to the ledger, in order, once each.

A cursor row per contract says up to which block the events are applied; a batch of events and
the cursor's move commit together, so a follower killed half-way resumes where the last commit
left it, and two followers at once are serialised by the cursor's row lock. Events are applied
only ``confirmations`` blocks below the head (a reorg shallower than that cannot undo them).

>>> sync(connect(), confirmations=0)
SyncResult(applied=4, to_block=12, head=12)
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from marketplace.chain.client import Event
from marketplace.chain.context import Chain
from marketplace.models import ChainCursor
from marketplace.services import ledger


@dataclass(frozen=True)
class SyncResult:
    applied: int
    to_block: int
    head: int


def sync(chain: Chain, *, confirmations: int | None = None, chunk: int | None = None) -> SyncResult:
    """Apply every event up to ``head - confirmations`` not applied yet; how many were new."""
    depth = settings.CHAIN_CONFIRMATIONS if confirmations is None else confirmations
    step = chunk or settings.CHAIN_LOG_CHUNK
    head = chain.client.head()
    safe = head - depth
    applied = 0
    last = _cursor(chain).last_block
    while last < safe:
        to_block = min(safe, last + step)
        events = chain.client.events(chain.escrow, last + 1, to_block)
        applied += _apply_batch(chain, events, last, to_block)
        last = _cursor(chain).last_block
    return SyncResult(applied=applied, to_block=max(last, 0), head=head)


def _cursor(chain: Chain) -> ChainCursor:
    cursor, _ = ChainCursor.objects.get_or_create(
        chain_id=chain.chain_id, address=chain.escrow.address,
        defaults={"last_block": max(chain.deployment.block_number - 1, 0)})
    return cursor


@transaction.atomic
def _apply_batch(chain: Chain, events: list[Event], from_block: int, to_block: int) -> int:
    cursor = ChainCursor.objects.select_for_update().get(chain_id=chain.chain_id, address=chain.escrow.address)
    if cursor.last_block != from_block:
        return 0  # another follower moved it while we fetched: our next pass starts from its position
    times: dict[int, int] = {}
    applied = 0
    for event in events:
        if event.block_number not in times:
            times[event.block_number] = chain.client.block_time(event.block_number)
        applied += ledger.apply_event(chain_id=chain.chain_id, name=event.name, args=event.args,
                                      tx_hash=event.tx_hash, log_index=event.log_index,
                                      block_number=event.block_number, block_time=times[event.block_number])
    cursor.last_block = to_block
    cursor.save(update_fields=["last_block"])
    return applied
