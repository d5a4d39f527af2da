"""Leases: the money side of running a job, decided here and carried out on chain.

When a chain is configured (``CHAIN_URL``), a matched attempt's lease is opened on the escrow
before the run starts: lease id = the attempt's id, rate = the offer's price per GPU-hour x the
job's GPUs, maximum duration = as long as the job's budget (and the offer, and
``LEASE_MAX_DURATION_S``) allow. The run starts when the follower sees ``LeaseOpened``
(`lease_opened`). A verified success settles the lease for the time used; a failure, a cancel or
a lost node releases it; a result proven wrong slashes the provider (the job runs elsewhere).

Nothing here changes a balance: each decision queues one outbox call (`marketplace.chain.outbox`)
and the ledger learns the outcome from the chain's events (`services.ledger`). Before matching,
the ledger is read to keep a job whose developer cannot pay in ``queued``, with the reason.

>>> terms = lease_terms(job, offer)
>>> terms.reserved_wei
3600000
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from marketplace import dispatch
from marketplace.chain import context, outbox
from marketplace.models import (
    Account,
    AttemptOutcome,
    ChainDeployment,
    ChainTx,
    Job,
    JobAttempt,
    JobEvent,
    JobEventType,
    Lease,
    Offer,
    TxState,
    Wallet,
)

HOUR_S = 3600


@dataclass(frozen=True)
class LeaseTerms:
    """What a lease reserves: ``quote(rate, seconds)`` as the contract computes it."""

    rate_per_hour_wei: int
    max_duration_s: int
    reserved_wei: int


def quote(rate_per_hour_wei: int, seconds: int) -> int:
    """The contract's price of ``seconds`` at ``rate_per_hour_wei``, rounded up to the wei.

    >>> quote(3600, 1), quote(3601, 1), quote(0, 10)
    (1, 2, 0)
    """
    return -(-rate_per_hour_wei * seconds // HOUR_S)


def lease_terms(job: Job, offer: Offer) -> LeaseTerms | None:
    """The lease for running ``job`` on ``offer``: as long as the budget pays for, within the
    offer's and the marketplace's maximum; None if the budget does not cover the offer's minimum.

    The longest affordable duration is ``floor(budget x 3600 / rate)``: its quote (rounded up)
    never exceeds the budget.
    """
    rate = offer.price_per_gpu_hour_wei * job.gpus
    if rate <= 0:
        return None
    affordable = job.budget_wei * HOUR_S // rate
    seconds = min(affordable, offer.max_duration_s, settings.LEASE_MAX_DURATION_S)
    if seconds < max(offer.min_duration_s, 1):
        return None
    return LeaseTerms(rate_per_hour_wei=rate, max_duration_s=seconds, reserved_wei=quote(rate, seconds))


def enabled() -> bool:
    return context.enabled()


def _chain_id() -> int:
    return context.chain_id()


def wallet_of(user_id: int) -> str:
    return Account.objects.filter(user_id=user_id).values_list("wallet_address", flat=True).first() or ""


def _deployment_facts(chain_id: int) -> dict[str, object]:
    row = ChainDeployment.objects.filter(chain_id=chain_id, name="LeaseEscrow").first()
    return {} if row is None else dict(row.settings)


def escrow_problem() -> str | None:
    """Why no lease can open at all now (not deployed, paused), or None."""
    facts = _deployment_facts(_chain_id())
    if not facts:
        return "the escrow contract is not deployed on the configured chain"
    if facts.get("paused"):
        return "the escrow contract is paused by its guardian; leases cannot open until it resumes"
    return None


def provider_problem(offer: Offer) -> str | None:
    """Why this offer's provider cannot take a lease (no linked wallet, no stake, unbonding), or None."""
    address = wallet_of(offer.node.provider_id)
    if not address:
        return f"provider of offer {offer.pk} has not linked a wallet"
    row = Wallet.objects.filter(chain_id=_chain_id(), address=address).first()
    min_stake = int(str(_deployment_facts(_chain_id()).get("min_stake", 0)))
    if row is None or not row.registered or row.stake < min_stake or row.unbonding_at is not None:
        return f"provider of offer {offer.pk} has no active stake in the escrow"
    return None


def pending_reservations(chain_id: int, tenant: str) -> int:
    """What this tenant's lease openings still on their way to the chain will reserve (the ledger
    does not show them yet, and matching must not promise the same balance twice)."""
    rows = list(ChainTx.objects.filter(chain_id=chain_id, function="openLease", state__in=outbox.LIVE_STATES))
    mirrored = set(Lease.objects.filter(chain_id=chain_id, lease_id__in=[row.lease_id for row in rows])
                   .values_list("lease_id", flat=True))
    total = 0
    for row in rows:
        args = outbox.decode_args(row)
        if args[2] == tenant and row.lease_id not in mirrored:
            total += quote(int(args[4]), int(args[5]))
    return total


def funding_problem(job: Job, terms: LeaseTerms) -> str | None:
    """Why the job's developer cannot pay for this lease now, in words they can act on; or None."""
    tenant = wallet_of(job.owner_id)
    if not tenant:
        return "waiting for funds: link a wallet to your account and deposit to the escrow"
    chain_id = _chain_id()
    row = Wallet.objects.filter(chain_id=chain_id, address=tenant).first()
    free = (row.available if row else 0) - pending_reservations(chain_id, tenant)
    cap = row.lease_cap if row else 0
    if terms.reserved_wei > cap:
        return (f"waiting for funds: the lease needs {terms.reserved_wei} wei reserved, above your lease cap of "
                f"{cap} wei; raise it with setLeaseCap, or lower the job's budget")
    if terms.reserved_wei > free:
        return (f"waiting for funds: the lease needs {terms.reserved_wei} wei reserved and your escrow balance "
                f"has {max(free, 0)} wei available; deposit at least {terms.reserved_wei - max(free, 0)} wei more")
    return None


def offer_problem(job: Job, offer: Offer, terms: LeaseTerms | None) -> str | None:
    """Why ``job`` cannot lease ``offer`` now (budget, provider's stake, developer's funds), or None."""
    if terms is None:
        return f"the budget of {job.budget_wei} wei does not pay for offer {offer.pk}'s minimum duration"
    return provider_problem(offer) or funding_problem(job, terms)


def note_waiting(job: Job, reason: str) -> None:
    """Show why the job waits (once per distinct reason: the sweep asks every few seconds)."""
    if job.wait_reason != reason:
        Job.objects.filter(pk=job.pk).update(wait_reason=reason[:500])
        JobEvent.objects.create(job=job, type=JobEventType.LOG, reason=reason[:2000])
        job.wait_reason = reason[:500]


def request_open(job: Job, attempt: JobAttempt, offer: Offer, terms: LeaseTerms) -> ChainTx:
    """Queue the lease opening for a just-matched attempt (in the matching transaction)."""
    Job.objects.filter(pk=job.pk).update(wait_reason="")
    args = [attempt.pk, job.pk, wallet_of(job.owner_id), wallet_of(offer.node.provider_id),
            terms.rate_per_hour_wei, terms.max_duration_s]
    return outbox.queue(chain_id=_chain_id(), key=f"openLease:{attempt.pk}", function="openLease", args=args,
                        lease_id=attempt.pk, job=job)


def has_lease(attempt: JobAttempt) -> bool:
    """Whether a lease was asked for this attempt (chain configured when it was matched)."""
    return ChainTx.objects.filter(key=f"openLease:{attempt.pk}").exists()


def lease_is_open(attempt: JobAttempt) -> bool:
    return Lease.objects.filter(lease_id=attempt.pk, state="open").exists()


def result_hash(body: bytes) -> str:
    """What the settlement records as the verified result: the sha256 of the result artifact's bytes."""
    return "0x" + hashlib.sha256(body).hexdigest()


def used_seconds(attempt: JobAttempt) -> int:
    """The time a run used, whole seconds rounded up, at least one."""
    started = attempt.started_at or attempt.submitted_at or attempt.created_at
    finished = attempt.finished_at or timezone.now()
    return max(1, math.ceil((finished - started).total_seconds()))


def settle(attempt: JobAttempt, body: bytes) -> None:
    """Pay the provider for the verified run's time (in the transaction that records the success)."""
    if not has_lease(attempt):
        return
    outbox.queue(chain_id=_chain_id(), key=f"settleLease:{attempt.pk}", function="settleLease",
                 args=[attempt.pk, used_seconds(attempt), result_hash(body)], lease_id=attempt.pk, job=attempt.job)


def release(attempt: JobAttempt) -> None:
    """Give the developer the reservation back (the run failed, was cancelled or was lost)."""
    if not has_lease(attempt):
        return
    chain_id = _chain_id()
    if outbox.cancel_unsigned(chain_id=chain_id, key=f"openLease:{attempt.pk}"):
        return  # never reached the chain: nothing to release
    opening = ChainTx.objects.filter(chain_id=chain_id, key=f"openLease:{attempt.pk}").values_list("state", flat=True)
    if opening.first() in (TxState.REJECTED, TxState.REVERTED, TxState.CANCELLED):
        return  # the lease never opened
    outbox.queue(chain_id=chain_id, key=f"releaseLease:{attempt.pk}", function="releaseLease", args=[attempt.pk],
                 lease_id=attempt.pk, job=attempt.job)


def slash(attempt: JobAttempt, evidence: str) -> None:
    """The run's result is proven wrong: slash the provider's stake for the developer."""
    if not has_lease(attempt):
        return
    digest = "0x" + hashlib.sha256(evidence.encode()).hexdigest()
    outbox.queue(chain_id=_chain_id(), key=f"slash:{attempt.pk}", function="slash",
                 args=[attempt.pk, settings.SLASH_AMOUNT_WEI, digest], lease_id=attempt.pk, job=attempt.job)


# --- what the chain tells us -------------------------------------------------------------------

def lease_opened(lease: Lease) -> None:
    """The follower saw ``LeaseOpened``: start the attempt's run if it is still waiting for it."""
    attempt = JobAttempt.objects.filter(pk=lease.lease_id, outcome=AttemptOutcome.ACTIVE,
                                        submitted_at__isnull=True).first()
    if attempt is not None:
        JobEvent.objects.create(job_id=attempt.job_id, type=JobEventType.LOG,
                                reason=f"lease {lease.lease_id} open on chain: {lease.reserved_wei} wei reserved "
                                       f"(transaction {lease.open_tx})")
        dispatch.enqueue_start_attempt(attempt.pk)
    elif not JobAttempt.objects.filter(pk=lease.lease_id, outcome=AttemptOutcome.ACTIVE).exists():
        # The attempt ended while its lease was on its way (cancelled, lost): give the money back.
        stale = JobAttempt.objects.filter(pk=lease.lease_id).first()
        if stale is not None:
            release(stale)


def call_ended(row: ChainTx) -> None:
    """The outbox reports a call that will not happen or did not work (once per call)."""
    if row.state in (TxState.REJECTED, TxState.REVERTED) and row.function == "openLease" and row.lease_id:
        _lease_not_opened(row)


def _lease_not_opened(row: ChainTx) -> None:
    from marketplace.services import scheduling

    reason = f"the lease could not open on chain: {row.error or row.error_code}"
    attempt = JobAttempt.objects.filter(pk=row.lease_id or 0, outcome=AttemptOutcome.ACTIVE).first()
    if attempt is not None:
        scheduling.requeue_unleased(attempt.pk, reason)


def job_lease(job: Job) -> dict[str, object] | None:
    """The lease of the job's latest leased attempt, for the API and the job page: its state, the
    transaction hashes and the amounts in wei. None when the job never asked for a lease."""
    row = ChainTx.objects.filter(job=job, function="openLease", lease_id__isnull=False).order_by("-id").first()
    if row is None or row.lease_id is None:
        return None
    lease = Lease.objects.filter(chain_id=row.chain_id, lease_id=row.lease_id).first()
    close = ChainTx.objects.filter(chain_id=row.chain_id, lease_id=row.lease_id) \
        .exclude(function="openLease").order_by("-id").first()
    if lease is None:
        args = outbox.decode_args(row)
        return {"id": row.lease_id, "state": _pending_state(row), "open_tx": row.tx_hash or None,
                "settle_tx": None, "tenant": args[2], "provider": args[3], "rate_per_hour_wei": str(args[4]),
                "reserved_wei": str(quote(int(args[4]), int(args[5]))), "payment_wei": "0", "fee_wei": "0",
                "refund_wei": "0", "slashed_wei": "0", "result_hash": None, "deadline": None,
                "error": row.error or None}
    return {
        "id": lease.lease_id, "state": lease.state, "open_tx": lease.open_tx, "settle_tx": lease.close_tx or None,
        "tenant": lease.tenant, "provider": lease.provider, "rate_per_hour_wei": str(lease.rate_per_hour_wei),
        "reserved_wei": str(lease.reserved_wei), "payment_wei": str(lease.payment_wei), "fee_wei": str(lease.fee_wei),
        "refund_wei": str(lease.refund_wei), "slashed_wei": str(lease.slashed_wei),
        "result_hash": lease.result_hash or None, "deadline": lease.deadline.isoformat(),
        "used_seconds": lease.used_seconds,
        "error": close.error if close is not None and close.state in (TxState.REJECTED, TxState.REVERTED) else None,
    }


def _pending_state(row: ChainTx) -> str:
    if row.state in (TxState.REJECTED, TxState.REVERTED):
        return "not_opened"
    if row.state == TxState.CANCELLED:
        return "withdrawn"
    return "opening"
