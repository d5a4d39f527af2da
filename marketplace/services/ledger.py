"""The ledger: the escrow contract's events applied to the database, each exactly once.

`apply_event` is the only writer of `Wallet` and `Lease` rows. It records the event first
(`ChainEvent`, unique on chain + transaction hash + log index) and applies it only if that row is
new, so a follower that runs twice, or restarts half-way through a block range, changes nothing
the second time. Deleting the mirror and replaying every event (`rebuild`) gives the same rows:
the database learns who owns what from the chain alone.

>>> apply_event(chain_id=31337, name="Deposited", args={"tenant": "0xAb..", "amount": 10**6},
...             tx_hash="0x12..", log_index=0, block_number=7, block_time=1700000000)
True
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from marketplace.models import ChainCursor, ChainDeployment, ChainEvent, Lease, LeaseState, Wallet

log = logging.getLogger(__name__)

Args = Mapping[str, Any]


def _time(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), tz=UTC)


def wallet(chain_id: int, address: str) -> Wallet:
    """The address's ledger row, locked (created empty the first time the address appears)."""
    row, _ = Wallet.objects.select_for_update().get_or_create(chain_id=chain_id, address=address)
    return row


def _add(chain_id: int, address: str, **deltas: int) -> None:
    row = wallet(chain_id, address)
    for name, delta in deltas.items():
        setattr(row, name, getattr(row, name) + delta)
        if getattr(row, name) < 0:
            # The chain never lets a balance go negative: this means an event was missed or doubled.
            raise LedgerError(f"{address}.{name} would be {getattr(row, name)} on chain {chain_id}")
    row.save()


class LedgerError(Exception):
    """The events do not add up (one was missed or applied twice): the mirror must be rebuilt."""


@transaction.atomic
def apply_event(*, chain_id: int, name: str, args: Args, tx_hash: str, log_index: int, block_number: int,
                block_time: int | None = None) -> bool:
    """Apply one event to the ledger unless it was applied before; True if it was new."""
    try:
        with transaction.atomic():
            ChainEvent.objects.create(chain_id=chain_id, tx_hash=tx_hash, log_index=log_index,
                                      block_number=block_number, block_time=_time(block_time), name=name,
                                      args={key: _jsonable(value) for key, value in args.items()})
    except IntegrityError:
        return False
    handler = HANDLERS.get(name)
    if handler is not None:
        handler(chain_id, args, _Where(tx_hash, _time(block_time)))
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


class _Where:
    def __init__(self, tx_hash: str, at: datetime | None) -> None:
        self.tx_hash, self.at = tx_hash, at


# --- tenants and providers ---------------------------------------------------------------------

def _deposited(chain_id: int, args: Args, where: _Where) -> None:
    _add(chain_id, args["tenant"], available=int(args["amount"]), deposited=int(args["amount"]))


def _withdrawn(chain_id: int, args: Args, where: _Where) -> None:
    _add(chain_id, args["account"], available=-int(args["amount"]), withdrawn=int(args["amount"]))


def _lease_cap_set(chain_id: int, args: Args, where: _Where) -> None:
    row = wallet(chain_id, args["tenant"])
    row.lease_cap = int(args["cap"])
    row.save()


def _provider_registered(chain_id: int, args: Args, where: _Where) -> None:
    row = wallet(chain_id, args["provider"])
    row.registered, row.stake, row.unbonding_at = True, int(args["stake"]), None
    row.save()


def _stake_added(chain_id: int, args: Args, where: _Where) -> None:
    _add(chain_id, args["provider"], stake=int(args["amount"]))


def _unbonding_started(chain_id: int, args: Args, where: _Where) -> None:
    row = wallet(chain_id, args["provider"])
    row.unbonding_at = _time(int(args["unbondingAt"]))
    row.save()


def _stake_unbonded(chain_id: int, args: Args, where: _Where) -> None:
    row = wallet(chain_id, args["provider"])
    row.available += int(args["amount"])
    row.stake, row.registered, row.unbonding_at = 0, False, None
    row.save()


def _treasury_set(chain_id: int, args: Args, where: _Where) -> None:
    _set_deployment_fact(chain_id, "treasury", str(args["treasury"]))


def _paused(chain_id: int, args: Args, where: _Where) -> None:
    _set_deployment_fact(chain_id, "paused", True)


def _unpaused(chain_id: int, args: Args, where: _Where) -> None:
    _set_deployment_fact(chain_id, "paused", False)


def _set_deployment_fact(chain_id: int, name: str, value: Any) -> None:
    deployment = ChainDeployment.objects.select_for_update().filter(chain_id=chain_id, name="LeaseEscrow").first()
    if deployment is not None:
        deployment.settings = {**deployment.settings, name: value}
        deployment.save(update_fields=["settings"])


# --- leases ------------------------------------------------------------------------------------

def _lease_opened(chain_id: int, args: Args, where: _Where) -> None:
    from marketplace.models import Job
    from marketplace.services import leases

    reserved = int(args["reserved"])
    job_id = int(args["jobId"])
    lease = Lease.objects.create(
        chain_id=chain_id, lease_id=int(args["leaseId"]), job_id_on_chain=job_id,
        job=Job.objects.filter(pk=job_id).first() if job_id < 2**63 else None,
        tenant=args["tenant"], provider=args["provider"], rate_per_hour_wei=int(args["ratePerHour"]),
        reserved_wei=reserved, deadline=datetime.fromtimestamp(int(args["deadline"]), tz=UTC), open_tx=where.tx_hash, opened_at=where.at)
    _add(chain_id, lease.tenant, available=-reserved, reserved=reserved)
    _add(chain_id, lease.provider, open_leases=1)
    leases.lease_opened(lease)


def _closing(chain_id: int, args: Args, where: _Where, state: str) -> Lease:
    lease = Lease.objects.select_for_update().get(chain_id=chain_id, lease_id=int(args["leaseId"]))
    if lease.state != LeaseState.OPEN:
        raise LedgerError(f"lease {lease.lease_id} closed twice ({lease.state}, then {state})")
    lease.state, lease.close_tx, lease.closed_at = state, where.tx_hash, where.at
    _add(chain_id, lease.provider, open_leases=-1)
    return lease


def _lease_settled(chain_id: int, args: Args, where: _Where) -> None:
    lease = _closing(chain_id, args, where, LeaseState.SETTLED)
    payment, fee, refund = int(args["payment"]), int(args["fee"]), int(args["refund"])
    lease.used_seconds, lease.payment_wei, lease.fee_wei, lease.refund_wei = (int(args["usedSeconds"]), payment,
                                                                               fee, refund)
    lease.result_hash = _jsonable(args["resultHash"])
    lease.save()
    _add(chain_id, lease.tenant, reserved=-lease.reserved_wei, available=refund, spent=payment)
    _add(chain_id, lease.provider, available=payment - fee, earned=payment - fee)
    treasury = _treasury(chain_id)
    if fee:
        if treasury is None:
            raise LedgerError(f"a fee was paid on chain {chain_id} before any TreasurySet event")
        _add(chain_id, treasury, available=fee, fees=fee)


def _treasury(chain_id: int) -> str | None:
    deployment = ChainDeployment.objects.filter(chain_id=chain_id, name="LeaseEscrow").first()
    return None if deployment is None else deployment.settings.get("treasury")


def _refunded(state: str) -> Callable[[int, Args, _Where], None]:
    def handler(chain_id: int, args: Args, where: _Where) -> None:
        lease = _closing(chain_id, args, where, state)
        lease.refund_wei = int(args["refund"])
        lease.save()
        _add(chain_id, lease.tenant, reserved=-lease.reserved_wei, available=lease.refund_wei)
    return handler


def _provider_slashed(chain_id: int, args: Args, where: _Where) -> None:
    lease = _closing(chain_id, args, where, LeaseState.SLASHED)
    slashed, refund = int(args["slashed"]), int(args["refund"])
    lease.slashed_wei, lease.refund_wei, lease.result_hash = slashed, refund, _jsonable(args["evidence"])
    lease.save()
    _add(chain_id, lease.tenant, reserved=-lease.reserved_wei, available=refund + slashed, compensated=slashed)
    _add(chain_id, lease.provider, stake=-slashed, slashed=slashed)


HANDLERS: dict[str, Callable[[int, Args, _Where], None]] = {
    "Deposited": _deposited,
    "Withdrawn": _withdrawn,
    "LeaseCapSet": _lease_cap_set,
    "ProviderRegistered": _provider_registered,
    "StakeAdded": _stake_added,
    "UnbondingStarted": _unbonding_started,
    "StakeUnbonded": _stake_unbonded,
    "TreasurySet": _treasury_set,
    "Paused": _paused,
    "Unpaused": _unpaused,
    "LeaseOpened": _lease_opened,
    "LeaseSettled": _lease_settled,
    "LeaseReleased": _refunded(LeaseState.RELEASED),
    "LeaseReclaimed": _refunded(LeaseState.RECLAIMED),
    "ProviderSlashed": _provider_slashed,
}


@transaction.atomic
def forget(chain_id: int) -> None:
    """Drop everything learnt from one chain's events, so the follower replays them from the
    deployment block (``sync_chain_events --rebuild``)."""
    Lease.objects.filter(chain_id=chain_id).delete()
    Wallet.objects.filter(chain_id=chain_id).delete()
    ChainEvent.objects.filter(chain_id=chain_id).delete()
    ChainCursor.objects.filter(chain_id=chain_id).delete()
    for deployment in ChainDeployment.objects.select_for_update().filter(chain_id=chain_id):
        deployment.settings = {key: value for key, value in deployment.settings.items()
                               if key not in ("treasury", "paused")}
        deployment.save(update_fields=["settings"])
