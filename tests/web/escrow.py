"""An escrow ledger for the page and API tests, built the way production builds it: wallets linked
with real EIP-191 signatures (`services.accounts.link_wallet`), leases asked for by the real matching
(`services.scheduling.match_job` -> `services.leases.request_open`), and every balance written by the
ledger's one writer, `services.ledger.apply_event`, from the events the contract would emit.

No chain is contacted: ``CHAIN_URL`` points at a closed loopback port, the recorded deployment names
the chain for the read side (`services.balances.current_chain_id`), and the matching's own question
to the node (`chain.context.chain_id`) is answered with the same id.

>>> chain = Escrow.configure(settings, monkeypatch)
>>> dave_wallet = chain.link(developer, DEVELOPER_KEY)
>>> chain.deposit(dave_wallet, 10**18); chain.set_lease_cap(dave_wallet, 10**17)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from marketplace.chain import context, outbox
from marketplace.chain.anvil import ANVIL_ACCOUNTS
from marketplace.models import ChainDeployment, ChainTx, Job, Lease
from marketplace.services import accounts, ledger, scheduling
from marketplace.services.leases import quote
from tests.conftest import Person

CHAIN_ID = 31337
ESCROW = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
UNUSED_RPC = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing is sent
FEE_BPS = 250
MIN_STAKE = 10**18
TREASURY = ANVIL_ACCOUNTS[0].address
PROVIDER_KEY = ANVIL_ACCOUNTS[1].private_key
DEVELOPER_KEY = ANVIL_ACCOUNTS[2].private_key
OTHER_KEY = ANVIL_ACCOUNTS[3].private_key
RESULT_HASH = bytes.fromhex("ab" * 32)


@dataclass
class Escrow:
    """The chain's side of a test: deployment rows and an event counter (unique tx hashes)."""

    block: Any

    @classmethod
    def configure(cls, settings: Any, monkeypatch: Any, *, paused: bool = False) -> Escrow:
        """Record a deployment on chain 31337 and point the settings at it (treasury set, as deployed)."""
        settings.CHAIN_URL = UNUSED_RPC
        settings.CHAIN_ID = 0
        monkeypatch.setattr(context, "chain_id", lambda: CHAIN_ID)
        facts = {"fee_bps": FEE_BPS, "min_stake": str(MIN_STAKE), "unbonding_delay_s": 7 * 24 * 3600,
                 "settle_window_s": 3600, "token": TOKEN, "paused": paused}
        ChainDeployment.objects.create(chain_id=CHAIN_ID, name="LeaseEscrow", address=ESCROW, block_number=1,
                                       tx_hash=tx_hash(1), settings=facts)
        ChainDeployment.objects.create(chain_id=CHAIN_ID, name="MarketToken", address=TOKEN, block_number=1,
                                       tx_hash=tx_hash(2))
        escrow = cls(block=itertools.count(10))
        escrow.emit("TreasurySet", treasury=TREASURY)
        return escrow

    def emit(self, name: str, **args: Any) -> str:
        """Apply one event to the ledger as the follower would; its transaction hash."""
        number = next(self.block)
        digest = tx_hash(number)
        assert ledger.apply_event(chain_id=CHAIN_ID, name=name, args=args, tx_hash=digest, log_index=0,
                                  block_number=number, block_time=int(timezone.now().timestamp()))
        return digest

    # --- what users do from their own wallets ---

    @staticmethod
    def link(person: Person, key: str) -> str:
        address, signature = accounts.sign_wallet_link(person.user, key)
        accounts.link_wallet(user=person.user, address=address, signature=signature)
        return address

    def deposit(self, address: str, amount: int) -> str:
        return self.emit("Deposited", tenant=address, amount=amount)

    def set_lease_cap(self, address: str, cap: int) -> str:
        return self.emit("LeaseCapSet", tenant=address, cap=cap)

    def register(self, address: str, stake: int = MIN_STAKE) -> str:
        return self.emit("ProviderRegistered", provider=address, stake=stake)

    def withdraw(self, address: str, amount: int) -> str:
        return self.emit("Withdrawn", account=address, amount=amount)

    # --- what the marketplace does through the outbox, as the chain reports it ---

    def match(self, job: Job) -> ChainTx | None:
        """Run the real matching for ``job``; the lease opening it queued, if any."""
        scheduling.match_job(job.pk)
        return ChainTx.objects.filter(job=job, function="openLease").order_by("-id").first()

    def open(self, row: ChainTx) -> Lease:
        """The chain opened the lease the outbox row asked for (``LeaseOpened``)."""
        lease_id, job_id, tenant, provider, rate, seconds = outbox.decode_args(row)
        deadline = int((timezone.now() + timedelta(seconds=seconds + 3600)).timestamp())
        digest = self.emit("LeaseOpened", leaseId=lease_id, jobId=job_id, tenant=tenant, provider=provider,
                           ratePerHour=rate, reserved=quote(rate, seconds), deadline=deadline)
        ChainTx.objects.filter(pk=row.pk).update(state="mined", tx_hash=digest)
        return Lease.objects.get(chain_id=CHAIN_ID, lease_id=lease_id)

    def settle(self, lease: Lease, used_seconds: int) -> Lease:
        """The operator settled it for ``used_seconds`` (``LeaseSettled``, the contract's arithmetic)."""
        payment = min(quote(int(lease.rate_per_hour_wei), used_seconds), int(lease.reserved_wei))
        fee = payment * FEE_BPS // 10_000
        self.emit("LeaseSettled", leaseId=lease.lease_id, jobId=lease.job_id_on_chain, provider=lease.provider,
                  usedSeconds=used_seconds, payment=payment, fee=fee, refund=int(lease.reserved_wei) - payment,
                  resultHash=RESULT_HASH)
        lease.refresh_from_db()
        return lease

    def release(self, lease: Lease) -> Lease:
        self.emit("LeaseReleased", leaseId=lease.lease_id, jobId=lease.job_id_on_chain, refund=lease.reserved_wei)
        lease.refresh_from_db()
        return lease


def tx_hash(number: int) -> str:
    return "0x" + f"{number:064x}"


PRICE = 10**15  # wei per GPU-hour: a 1-GPU job's lease reserves 10**15 for the marketplace's hour
DEPOSIT = 10**17
LEASE_CAP = 10**16
PROVIDER_STAKE = 2 * MIN_STAKE
PROVIDER_WITHDRAWAL = 10**14


@dataclass
class Market:
    """A provider staked with an online 2-GPU offer and a funded developer with two leased jobs: the
    first settled after half its hour, the second still open. The expected amounts are spelt out."""

    escrow: Escrow
    provider_wallet: str
    developer_wallet: str
    settled_job: Job
    open_job: Job
    settled: Lease
    open: Lease

    # What the contract's arithmetic gives (quote rounds up; the fee is 2.5 %, rounded down).
    reserved_each = PRICE  # quote(10**15 wei/h, 3600 s)
    payment = PRICE // 2  # 1800 s used
    fee = PRICE // 2 * FEE_BPS // 10_000
    developer_available = DEPOSIT - PRICE - PRICE + PRICE // 2
    provider_available = PRICE // 2 - PRICE // 2 * FEE_BPS // 10_000 - PROVIDER_WITHDRAWAL
    provider_earned = PRICE // 2 - PRICE // 2 * FEE_BPS // 10_000


def leased_job(escrow: Escrow, developer: Person) -> tuple[Job, Lease]:
    """A job submitted, matched by the real scheduler and its lease opened on chain."""
    from marketplace.services import jobs

    job = jobs.submit_job(owner=developer.user, kind="benchmark", spec={"measurements": ["cpu_gflops"]})
    row = escrow.match(job)
    assert row is not None, Job.objects.get(pk=job.pk).wait_reason
    return job, escrow.open(row)


def staked_provider(escrow: Escrow, provider: Person) -> str:
    """The provider's wallet linked and registered with a stake, and a 2 x RTX 4090 offer online."""
    from tests.web.conftest import node_for, offer_on

    wallet = escrow.link(provider, PROVIDER_KEY)
    escrow.register(wallet, PROVIDER_STAKE)
    offer_on(provider, node_for(provider, online=True), gpu_count=2, price=PRICE)
    return wallet


def funded_developer(escrow: Escrow, developer: Person) -> str:
    wallet = escrow.link(developer, DEVELOPER_KEY)
    escrow.deposit(wallet, DEPOSIT)
    escrow.set_lease_cap(wallet, LEASE_CAP)
    return wallet


def market(escrow: Escrow, provider: Person, developer: Person) -> Market:
    provider_wallet = staked_provider(escrow, provider)
    developer_wallet = funded_developer(escrow, developer)
    settled_job, first = leased_job(escrow, developer)
    settled = escrow.settle(first, 1800)
    open_job, second = leased_job(escrow, developer)
    escrow.withdraw(provider_wallet, PROVIDER_WITHDRAWAL)
    return Market(escrow, provider_wallet, developer_wallet, settled_job, open_job, settled, second)
