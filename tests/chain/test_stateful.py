"""The escrow, the outbox and the ledger against a model, over random sequences of operations on a
real anvil (Hypothesis stateful testing), and the follower's replays.

Tenants deposit, withdraw and change caps; providers register, add stake, unbond and withdraw; the
treasury withdraws its fees; the marketplace opens, settles, releases and slashes leases through its
outbox (`outbox.queue` + `outbox.process`, signed by its one signer); tenants reclaim after
deadlines; time jumps, to the second around deadlines too. Calls the contract must refuse are made
on purpose (over-withdrawal, leases above the cap or the balance, closing a closed lease, reclaiming
early, ...), and each must be refused with its decoded error name (an outbox row ends ``rejected``
with ``error_code`` and uses no nonce) and change nothing.

After every step:
- the escrow holds exactly sum(available) + sum(reservedOf) + sum(stakes) tokens (the treasury's
  fees are in its `available`);
- every account's books balance (what it holds == what came in - what went out), no account
  withdrew more than was ever credited to it, and its wallet holds the tokens that implies;
- the contract's views equal the model's;
- after `follower.sync`, the ledger's Wallet and Lease rows equal the model (so the chain), to the wei.

One rule draws which operation to run. With one @rule per operation, Hypothesis's swarm testing
enables a random subset of rules per example, and with a CI-sized budget (tens of examples) most
examples ran one or two rules (29 ``startUnbonding`` in a row) and leases were barely settled; a
single rule keeps every operation in every example. The volume is small (RPC is slow; forge's
invariant tests carry the volume on the contract alone) and derandomized with no example
database, so CI runs the same sequences every time.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from marketplace.chain import wallets
from marketplace.chain.anvil import AnvilProcess, DevAccount
from marketplace.chain.context import Chain
from marketplace.models import ChainCursor, ChainEvent, Lease, Wallet
from marketplace.services import ledger
from tests.chain import helpers
from tests.chain.conftest import FEE_BPS, MIN_STAKE
from tests.chain.helpers import HOLDERS, MINTED, PROVIDERS, TENANTS, TREASURY, Outcome, quote

UNBONDING_S, SETTLE_WINDOW_S = 60, 600  # as the `chain` fixture deploys
ETHER = 10**18
UNKNOWN_LEASE = 999_999  # never opened
# usedSeconds is a uint64: the largest the contract accepts (and the ledger must mirror, see
# test_a_settlement_for_2_63_seconds_or_more_is_mirrored).
HUGE_USED_SECONDS = 2**64 - 1

MACHINE_SETTINGS = settings(max_examples=20, stateful_step_count=30, deadline=None, derandomize=True, database=None,
                            suppress_health_check=list(HealthCheck), print_blob=False)
# What the run must have done at least once (it prints the whole tally with -s): the operations
# that move money and the refusals that guard them, each seen in every one of six seeds tried.
# Rarer paths (a reclaim, completeUnbonding, NotTenant) come and go with the draws: a_history
# below runs each of them, and each named refusal, deterministically.
MUST_COVER = ("deposit: ok", "withdraw: ok", "withdraw: InsufficientBalance", "registerProvider: ok", "addStake: ok",
              "openLease: ok", "openLease: LeaseCapExceeded", "openLease: InsufficientBalance", "settleLease: ok",
              "settleLease: LeaseNotOpen", "settleLease: LeaseExpired", "releaseLease: ok", "slash: ok")


# --- the model -----------------------------------------------------------------------------------

@dataclass
class Books:
    """One address's escrow balances and everything that ever moved them."""

    available: int = 0
    reserved: int = 0
    lease_cap: int = 0
    deposited: int = 0
    staked: int = 0  # registration and added stake
    withdrawn: int = 0
    earned: int = 0
    fees: int = 0
    spent: int = 0
    compensated: int = 0
    slashed: int = 0  # stake lost

    def credited(self) -> int:
        return self.deposited + self.staked + self.earned + self.fees + self.compensated


@dataclass
class Stake:
    registered: bool = False
    stake: int = 0
    unbonding_at: int = 0
    open_leases: int = 0


@dataclass
class LeaseModel:
    lease_id: int
    job_id: int
    tenant: str
    provider: str
    rate: int
    max_duration: int
    reserved: int
    opened_at: int
    state: str = "open"
    used_seconds: int | None = None
    payment: int = 0
    fee: int = 0
    refund: int = 0
    slashed: int = 0

    @property
    def deadline(self) -> int:
        return self.opened_at + self.max_duration + SETTLE_WINDOW_S


@dataclass
class Model:
    books: dict[str, Books] = field(default_factory=lambda: {account.address: Books() for account in HOLDERS})
    stakes: dict[str, Stake] = field(default_factory=lambda: {account.address: Stake() for account in PROVIDERS})
    leases: dict[int, LeaseModel] = field(default_factory=dict)

    def open_ids(self) -> list[int]:
        return sorted(lease_id for lease_id, lease in self.leases.items() if lease.state == "open")

    def eligible(self, provider: str) -> bool:
        stake = self.stakes[provider]
        return stake.registered and stake.stake >= MIN_STAKE and not stake.unbonding_at

    def open_error(self, lease_id: int, tenant: str, provider: str, rate: int, duration: int) -> str:
        """What `openLease` says, in the contract's order of checks ('' when it opens)."""
        if lease_id in self.leases:
            return "LeaseExists"
        if rate == 0 or duration == 0:
            return "InvalidLeaseTerms"
        if not self.eligible(provider):
            return "ProviderNotEligible"
        reserved = quote(rate, duration)
        if reserved > self.books[tenant].lease_cap:
            return "LeaseCapExceeded"
        if reserved > self.books[tenant].available:
            return "InsufficientBalance"
        return ""

    def close(self, lease: LeaseModel, state: str, refund: int) -> None:
        tenant = self.books[lease.tenant]
        lease.state, lease.refund = state, refund
        tenant.reserved -= lease.reserved
        tenant.available += refund
        self.stakes[lease.provider].open_leases -= 1


def lease_error(lease: LeaseModel | None) -> str:
    return "LeaseNotOpen" if lease is None or lease.state != "open" else ""


def evidence(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def _time(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


# --- the machine ---------------------------------------------------------------------------------

# Each operation's share of the steps: opening and settling leases are where the money moves. The
# first is what Hypothesis's simplest example (and shrinking) repeats.
OPERATIONS = ("open_lease", "settle_lease", "tenant_funds", "withdraw", "reclaim_lease", "release_or_slash",
              "provider_stakes", "open_lease", "provider_unbonds", "settle_lease", "release_or_slash", "open_lease",
              "time_passes")


class EscrowMachine(RuleBasedStateMachine):
    """Class attributes set by the test: the deployed market, its anvil, the snapshot every example
    starts from (taken again after each revert: anvil drops a snapshot it reverts to)."""

    chain: Chain
    anvil: AnvilProcess
    base: dict[str, Any]
    reader: helpers.ViewReader
    tally: Counter[str]  # "function: outcome" over every example: what the run covered

    def __init__(self) -> None:
        super().__init__()
        assert self.anvil.rpc("evm_revert", self.base["snapshot"]) is True
        self.base["snapshot"] = self.anvil.rpc("evm_snapshot")
        helpers.reset_database(self.chain.chain_id)
        self.model = Model()
        self.calls = 0

    # --- helpers ---

    def next_time(self) -> int:
        """The timestamp of the block the next transaction lands in (one second per block)."""
        return helpers.latest_time(self.chain) + 1

    def wait_until(self, timestamp: int) -> None:
        """Let time pass until the next transaction lands at ``timestamp`` or later."""
        gap = timestamp - self.next_time()
        if gap > 0:
            helpers.warp(self.anvil, self.chain, gap)

    def key(self, function: str, lease_id: int) -> str:
        """A fresh outbox key: refusing the same call twice must be two decisions."""
        self.calls += 1
        return f"{function}:{lease_id}:{self.calls}"

    def expect(self, function: str, outcome: Outcome, error: str) -> None:
        assert outcome.error == error, f"{function}: expected {error or 'success'}, got {outcome.error or 'success'}"
        self.tally[f"{function}: {error or 'ok'}"] += 1

    def pick_lease(self, data: st.DataObject) -> int:
        """Mostly an open lease; sometimes a closed one or one never opened (to be refused)."""
        open_ids = self.model.open_ids()
        if open_ids and data.draw(st.integers(0, 3), label="a closed or unknown lease?") < 3:
            return data.draw(st.sampled_from(open_ids), label="lease")
        return data.draw(st.sampled_from(sorted(self.model.leases) + [UNKNOWN_LEASE]), label="lease")

    # --- the rules ---

    @initialize(data=st.data())
    def tenants_fund_and_providers_stake(self, data: st.DataObject) -> None:
        """Where a market starts: every tenant has a deposit and a cap, every provider a stake."""
        for tenant in TENANTS:
            self._deposit(tenant, data.draw(st.integers(ETHER, 5 * ETHER), label="deposit"))
            self._set_cap(tenant, data.draw(st.integers(ETHER // 2, 6 * ETHER), label="cap"))
        for provider in PROVIDERS:
            self._register(provider, data.draw(st.integers(MIN_STAKE, 3 * MIN_STAKE), label="stake"))

    @rule(operation=st.sampled_from(OPERATIONS), data=st.data())
    def step(self, operation: str, data: st.DataObject) -> None:
        run: Callable[[st.DataObject], None] = getattr(self, operation)
        run(data)

    # --- tenants ---

    def tenant_funds(self, data: st.DataObject) -> None:
        """A tenant deposits (approve + deposit, as `wallets.deposit` does) or changes its lease cap."""
        tenant = data.draw(st.sampled_from(TENANTS), label="tenant")
        amount = data.draw(st.one_of(st.integers(1, 6 * ETHER), st.just(0)), label="amount")
        if data.draw(st.booleans(), label="set the cap (or deposit)?"):
            self._set_cap(tenant, amount)
        else:
            self._deposit(tenant, amount)

    def _deposit(self, tenant: DevAccount, amount: int) -> None:
        outcome = helpers.wallet_call(self.chain, wallets.deposit, tenant.private_key, amount)
        self.expect("deposit", outcome, "" if amount else "ZeroAmount")
        if outcome.ok:
            books = self.model.books[tenant.address]
            books.available += amount
            books.deposited += amount

    def _set_cap(self, tenant: DevAccount, cap: int) -> None:
        outcome = helpers.wallet_call(self.chain, wallets.set_lease_cap, tenant.private_key, cap)
        self.expect("setLeaseCap", outcome, "")
        self.model.books[tenant.address].lease_cap = cap

    def withdraw(self, data: st.DataObject) -> None:
        """Tenants, providers and the treasury take out what they have, part of it, or too much."""
        account = data.draw(st.sampled_from(HOLDERS), label="account")
        books = self.model.books[account.address]
        have = books.available
        how = data.draw(st.sampled_from(["all", "part", "over", "zero"]), label="how much")
        if how == "part" and have > 1:
            amount = data.draw(st.integers(1, have - 1), label="amount")
        elif how == "over":
            amount = have + data.draw(st.integers(1, ETHER), label="excess")
        else:
            amount = 0 if how == "zero" else have
        outcome = helpers.wallet_call(self.chain, wallets.withdraw, account.private_key, amount)
        self.expect("withdraw", outcome,
                    "ZeroAmount" if amount == 0 else "InsufficientBalance" if amount > have else "")
        if outcome.ok:
            books.available -= amount
            books.withdrawn += amount

    def reclaim_lease(self, data: st.DataObject) -> None:
        """A tenant takes its reservation back (refused before the deadline, or for someone else's lease)."""
        lease_id = self.pick_lease(data)
        lease = self.model.leases.get(lease_id)
        owner = lease.tenant if lease else TENANTS[0].address
        by_owner = data.draw(st.integers(0, 2), label="by another tenant?") < 2
        caller = next(tenant for tenant in TENANTS if (tenant.address == owner) == by_owner)
        if lease is not None and lease.state == "open" and not data.draw(st.booleans(), label="before the deadline?"):
            self.wait_until(lease.deadline + 1)
        error = lease_error(lease) or ("NotTenant" if caller.address != owner else "") or \
            ("DeadlineNotReached" if lease is not None and self.next_time() <= lease.deadline else "")
        outcome = helpers.wallet_call(self.chain, helpers.escrow_call, caller.private_key, "reclaimLease", lease_id)
        self.expect("reclaimLease", outcome, error)
        if outcome.ok and lease is not None:
            self.model.close(lease, "reclaimed", lease.reserved)

    # --- providers ---

    def provider_stakes(self, data: st.DataObject) -> None:
        """Register (again, after unbonding) or add stake (back above the minimum after a slash)."""
        provider = data.draw(st.sampled_from(PROVIDERS), label="provider")
        amount = data.draw(st.one_of(st.integers(MIN_STAKE, 3 * MIN_STAKE), st.integers(0, MIN_STAKE - 1)),
                           label="amount")
        if data.draw(st.booleans(), label="register (or add)"):
            self._register(provider, amount)
            return
        record = self.model.stakes[provider.address]
        error = "NotRegistered" if not record.registered else "ZeroAmount" if amount == 0 else ""
        outcome = helpers.wallet_call(self.chain, helpers.add_stake, provider.private_key, amount)
        self.expect("addStake", outcome, error)
        if outcome.ok:
            record.stake += amount
            self.model.books[provider.address].staked += amount

    def _register(self, provider: DevAccount, stake: int) -> None:
        record = self.model.stakes[provider.address]
        error = "AlreadyRegistered" if record.registered else "StakeTooLow" if stake < MIN_STAKE else ""
        outcome = helpers.wallet_call(self.chain, wallets.register_provider, provider.private_key, stake)
        self.expect("registerProvider", outcome, error)
        if outcome.ok:
            self.model.stakes[provider.address] = Stake(registered=True, stake=stake)
            self.model.books[provider.address].staked += stake

    def provider_unbonds(self, data: st.DataObject) -> None:
        """Start unbonding (no new leases), or take the stake out once the delay passed and no lease is open."""
        complete = data.draw(st.booleans(), label="complete (or start)")
        stakes = self.model.stakes
        ready = [p for p in PROVIDERS if stakes[p.address].unbonding_at and not stakes[p.address].open_leases]
        unbonding = [p for p in PROVIDERS if stakes[p.address].unbonding_at]
        preferred = (ready or unbonding) if complete else []
        if preferred and data.draw(st.integers(0, 3), label="any provider?") < 3:
            provider = data.draw(st.sampled_from(preferred), label="provider")
        else:
            provider = data.draw(st.sampled_from(PROVIDERS), label="provider")
        record = stakes[provider.address]
        if not complete:
            error = "NotRegistered" if not record.registered else "AlreadyUnbonding" if record.unbonding_at else ""
            at = self.next_time() + UNBONDING_S
            outcome = helpers.wallet_call(self.chain, helpers.escrow_call, provider.private_key, "startUnbonding")
            self.expect("startUnbonding", outcome, error)
            if outcome.ok:
                record.unbonding_at = at
            return
        if record.unbonding_at and not data.draw(st.booleans(), label="before the delay?"):
            self.wait_until(record.unbonding_at)
        error = ("NotRegistered" if not record.registered else "NotUnbonding" if not record.unbonding_at
                 else "UnbondingNotDone" if self.next_time() < record.unbonding_at
                 else "OpenLeases" if record.open_leases else "")
        outcome = helpers.wallet_call(self.chain, helpers.escrow_call, provider.private_key, "completeUnbonding")
        self.expect("completeUnbonding", outcome, error)
        if outcome.ok:
            self.model.books[provider.address].available += record.stake
            self.model.stakes[provider.address] = Stake()

    # --- the marketplace, through its outbox ---

    def open_lease(self, data: st.DataObject) -> None:
        """The marketplace matched a job: it opens a lease, mostly one the tenant can pay for, and
        sometimes one above its cap or balance, on an ineligible provider, or with a used id."""
        size = data.draw(st.sampled_from(["fits", "above cap", "fits", "above balance", "fits", "any"]), label="size")
        # Only a tenant whose cap is above its balance can be refused for its balance (the cap is checked first).
        short = [t for t in TENANTS if self.model.books[t.address].available < self.model.books[t.address].lease_cap]
        tenant = data.draw(st.sampled_from(short if size == "above balance" and short else TENANTS), label="tenant")
        provider = data.draw(st.sampled_from(PROVIDERS), label="provider")
        books = self.model.books[tenant.address]
        duration = data.draw(st.integers(1, 3600), label="max duration")
        room = min(books.available, books.lease_cap)
        if size == "fits" and room >= 1:
            target = data.draw(st.integers(1, room), label="reserve")
        elif size == "above cap":
            target = books.lease_cap + data.draw(st.integers(1, ETHER), label="over cap")
        elif size == "above balance" and books.available < books.lease_cap:  # within the cap
            target = data.draw(st.integers(books.available + 1, books.lease_cap), label="over balance")
        elif size == "above balance":
            target = books.available + data.draw(st.integers(1, ETHER), label="over balance")
        else:
            target = data.draw(st.integers(0, 4 * ETHER), label="reserve")
        rate = target * 3600 // duration  # its quote is at most target (0: invalid terms)
        lease_id = len(self.model.leases) + 1
        if self.model.leases and data.draw(st.integers(0, 9), label="reuse an id?") == 9:
            lease_id = data.draw(st.sampled_from(sorted(self.model.leases)), label="used id")
        job_id = data.draw(st.integers(0, 2**63 - 1), label="job id")
        error = self.model.open_error(lease_id, tenant.address, provider.address, rate, duration)
        opened_at = self.next_time()
        outcome = helpers.marketplace_call(self.chain, key=self.key("openLease", lease_id), function="openLease",
                                           args=[lease_id, job_id, tenant.address, provider.address, rate, duration],
                                           lease_id=lease_id)
        self.expect("openLease", outcome, error)
        if outcome.ok:
            reserved = quote(rate, duration)
            self.model.leases[lease_id] = LeaseModel(lease_id, job_id, tenant.address, provider.address, rate,
                                                     duration, reserved, opened_at)
            books.available -= reserved
            books.reserved += reserved
            self.model.stakes[provider.address].open_leases += 1

    def settle_lease(self, data: st.DataObject) -> None:
        """A verified result: pay the provider for the time used (capped at the reservation), less the fee."""
        lease_id = self.pick_lease(data)
        lease = self.model.leases.get(lease_id)
        longest = lease.max_duration if lease else 3600
        used = data.draw(st.sampled_from(["shorter", "longer", "huge"]), label="used")
        seconds = (data.draw(st.integers(0, longest), label="seconds") if used == "shorter"
                   else data.draw(st.integers(longest, 3 * longest), label="seconds") if used == "longer"
                   else HUGE_USED_SECONDS)
        if lease is not None and lease.state == "open" and data.draw(st.integers(0, 4), label="too late?") == 4:
            self.wait_until(lease.deadline + 1)
        error = lease_error(lease) or ("LeaseExpired" if lease and self.next_time() > lease.deadline else "")
        outcome = helpers.marketplace_call(self.chain, key=self.key("settleLease", lease_id), function="settleLease",
                                           args=[lease_id, seconds, evidence(lease_id)], lease_id=lease_id)
        self.expect("settleLease", outcome, error)
        if outcome.ok and lease is not None:
            payment = quote(lease.rate, seconds) if seconds < lease.max_duration else lease.reserved
            fee = payment * FEE_BPS // 10_000
            lease.used_seconds, lease.payment, lease.fee = seconds, payment, fee
            self.model.close(lease, "settled", lease.reserved - payment)
            self.model.books[lease.tenant].spent += payment
            for address, amount, column in ((lease.provider, payment - fee, "earned"), (TREASURY.address, fee, "fees")):
                books = self.model.books[address]
                books.available += amount
                setattr(books, column, getattr(books, column) + amount)

    def release_or_slash(self, data: st.DataObject) -> None:
        """The run failed (release: the tenant gets it all back), or its result was proven wrong (slash:
        the operator's signer is also the arbiter; the tenant gets up to ``amount`` of the stake too)."""
        lease_id = self.pick_lease(data)
        lease = self.model.leases.get(lease_id)
        if not data.draw(st.booleans(), label="slash (or release)"):
            outcome = helpers.marketplace_call(self.chain, key=self.key("releaseLease", lease_id),
                                               function="releaseLease", args=[lease_id], lease_id=lease_id)
            self.expect("releaseLease", outcome, lease_error(lease))
            if outcome.ok and lease is not None:
                self.model.close(lease, "released", lease.reserved)
            return
        amount = data.draw(st.one_of(st.integers(1, 4 * MIN_STAKE), st.just(0)), label="amount")
        outcome = helpers.marketplace_call(self.chain, key=self.key("slash", lease_id), function="slash",
                                           args=[lease_id, amount, evidence(amount)], lease_id=lease_id)
        self.expect("slash", outcome, lease_error(lease))
        if outcome.ok and lease is not None:
            record = self.model.stakes[lease.provider]
            slashed = min(amount, record.stake)
            record.stake -= slashed
            lease.slashed = slashed
            self.model.close(lease, "slashed", lease.reserved)
            self.model.books[lease.tenant].available += slashed
            self.model.books[lease.tenant].compensated += slashed
            self.model.books[lease.provider].slashed += slashed

    # --- time ---

    def time_passes(self, data: st.DataObject) -> None:
        """Up to ~an hour passes; or the next transaction lands exactly at an open lease's deadline,
        a second before it or a second after it."""
        open_ids = self.model.open_ids()
        if not open_ids or data.draw(st.booleans(), label="any time (not a deadline)?"):
            helpers.warp(self.anvil, self.chain, data.draw(st.integers(1, 3000), label="seconds"))
            return
        lease = self.model.leases[data.draw(st.sampled_from(open_ids), label="lease")]
        self.wait_until(lease.deadline + data.draw(st.integers(-1, 1), label="offset"))

    # --- invariants ---

    @invariant()
    def the_chain_and_the_ledger_match_the_model(self) -> None:
        view = self.reader.read([account.address for account in HOLDERS], sorted(self.model.leases))
        self.the_escrow_holds_every_balance(view)
        self.every_account_balances_its_books(view)
        self.every_lease_is_as_modelled(view)
        helpers.sync(self.chain)
        self.the_ledger_mirrors_the_model()

    def the_escrow_holds_every_balance(self, view: helpers.EscrowView) -> None:
        held = 0
        for account in HOLDERS:
            address = account.address
            books, record = self.model.books[address], self.model.stakes.get(address, Stake())
            assert (view.available[address], view.reserved[address], view.lease_cap[address]) == \
                (books.available, books.reserved, books.lease_cap), address
            assert view.providers[address] == helpers.ProviderView(record.stake, record.unbonding_at,
                                                                   record.open_leases, record.registered), address
            held += view.available[address] + view.reserved[address] + view.providers[address].stake
        assert view.escrow_tokens == held, "the escrow's tokens != sum(available) + sum(reservedOf) + sum(stakes)"

    def every_account_balances_its_books(self, view: helpers.EscrowView) -> None:
        for account in HOLDERS:
            address = account.address
            books = self.model.books[address]
            assert books.withdrawn <= books.credited(), f"{address} withdrew more than it was ever credited"
            assert view.available[address] + view.reserved[address] + view.providers[address].stake == \
                books.credited() - books.spent - books.slashed - books.withdrawn, address
            start = 0 if account == TREASURY else MINTED
            assert view.wallet_tokens[address] == start - books.deposited - books.staked + books.withdrawn, address

    def every_lease_is_as_modelled(self, view: helpers.EscrowView) -> None:
        for lease in self.model.leases.values():
            assert view.leases[lease.lease_id] == helpers.LeaseView(
                lease.tenant, lease.opened_at, lease.state, lease.provider, lease.deadline, lease.job_id, lease.rate,
                lease.reserved), lease.lease_id

    def the_ledger_mirrors_the_model(self) -> None:
        rows = {row.address: row for row in Wallet.objects.filter(chain_id=self.chain.chain_id)}
        assert set(rows) <= {account.address for account in HOLDERS}
        for account in HOLDERS:
            books = self.model.books[account.address]
            record = self.model.stakes.get(account.address, Stake())
            expected = (books.available, books.reserved, record.stake, books.lease_cap, books.deposited,
                        books.withdrawn, books.earned, books.fees, books.spent, books.compensated, books.slashed,
                        record.registered, _time(record.unbonding_at), record.open_leases)
            row = rows.get(account.address)
            mirrored = (row.available, row.reserved, row.stake, row.lease_cap, row.deposited, row.withdrawn,
                        row.earned, row.fees, row.spent, row.compensated, row.slashed, row.registered,
                        row.unbonding_at, row.open_leases) if row else (0,) * 11 + (False, None, 0)
            assert mirrored == expected, account.address
        leases = {row.lease_id: row for row in Lease.objects.filter(chain_id=self.chain.chain_id)}
        assert set(leases) == set(self.model.leases)
        for lease in self.model.leases.values():
            mirror = leases[lease.lease_id]
            assert (mirror.state, mirror.tenant, mirror.provider, mirror.job_id_on_chain, mirror.rate_per_hour_wei,
                    mirror.reserved_wei, mirror.deadline, mirror.opened_at, mirror.used_seconds, mirror.payment_wei,
                    mirror.fee_wei, mirror.refund_wei, mirror.slashed_wei) == \
                (lease.state, lease.tenant, lease.provider, lease.job_id, lease.rate, lease.reserved,
                 _time(lease.deadline), _time(lease.opened_at), lease.used_seconds, lease.payment, lease.fee,
                 lease.refund, lease.slashed), lease.lease_id


def test_the_escrow_the_outbox_and_the_ledger_agree_with_a_model_at_every_step(chain, anvil_snapshot):
    helpers.fund(chain)
    with helpers.fix_block_time(anvil_snapshot):
        machine = type("Machine", (EscrowMachine,), {
            "chain": chain, "anvil": anvil_snapshot, "base": {"snapshot": anvil_snapshot.rpc("evm_snapshot")},
            "reader": helpers.ViewReader(chain, anvil_snapshot.url), "tally": Counter()})
        run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
    print("\n".join(f"{count:5d}  {what}" for what, count in sorted(machine.tally.items())))
    assert not [what for what in MUST_COVER if not machine.tally[what]], "the run no longer covers these"


# --- the follower, replayed ----------------------------------------------------------------------

def a_history(chain: Chain, anvil: AnvilProcess) -> None:
    """Every kind of event: deposits, caps, stakes, six leases ending every way (one stays open),
    added stake, a reclaim after the deadline, a provider unbonding to the end, withdrawals by a
    tenant, providers and the treasury; and each refusal the stateful test may miss, which must
    name its error and leave no event."""
    (first, second), (alpha, beta) = TENANTS[:2], PROVIDERS[:2]
    for tenant in (first, second):
        wallets.deposit(chain, tenant.private_key, 5 * ETHER)
        wallets.set_lease_cap(chain, tenant.private_key, 2 * ETHER)
    for provider in (alpha, beta):
        wallets.register_provider(chain, provider.private_key, 2 * MIN_STAKE)

    def call(function: str, lease_id: int, *args: Any, refused: str = "") -> None:
        outcome = helpers.marketplace_call(chain, key=f"{function}:{lease_id}:{refused}", function=function,
                                           args=[lease_id, *args], lease_id=lease_id)
        assert outcome.error == refused

    def reclaim(tenant: DevAccount, lease_id: int, refused: str = "") -> None:
        outcome = helpers.wallet_call(chain, helpers.escrow_call, tenant.private_key, "reclaimLease", lease_id)
        assert outcome.error == refused

    for lease_id, tenant, provider in ((1, first, alpha), (2, second, alpha), (3, first, beta), (4, second, beta),
                                       (5, first, alpha), (6, second, beta)):
        call("openLease", lease_id, 100 + lease_id, tenant.address, provider.address, ETHER // 2, 1800)
    call("openLease", 7, 107, first.address, beta.address, 5 * ETHER, 1800, refused="LeaseCapExceeded")
    wallets.set_lease_cap(chain, second.private_key, 5 * ETHER)
    call("openLease", 7, 107, second.address, beta.address, 10 * ETHER, 1800, refused="InsufficientBalance")
    call("settleLease", 1, 600, evidence(1))
    call("settleLease", 2, 7200, evidence(2))
    call("settleLease", 2, 60, evidence(2), refused="LeaseNotOpen")
    call("releaseLease", 3)
    call("slash", 4, MIN_STAKE // 2, evidence(4))
    helpers.add_stake(chain, beta.private_key, MIN_STAKE)
    helpers.escrow_call(chain, alpha.private_key, "startUnbonding")
    reclaim(first, 5, refused="DeadlineNotReached")
    helpers.warp(anvil, chain, 1800 + SETTLE_WINDOW_S + 1)
    call("settleLease", 5, 60, evidence(5), refused="LeaseExpired")
    assert helpers.wallet_call(chain, helpers.escrow_call, alpha.private_key, "completeUnbonding").error == "OpenLeases"
    reclaim(second, 5, refused="NotTenant")
    reclaim(first, 5)
    helpers.escrow_call(chain, alpha.private_key, "completeUnbonding")  # its leases are all closed now
    too_much = wallets.withdrawable(chain, first.address) + 1
    assert helpers.wallet_call(chain, wallets.withdraw, first.private_key, too_much).error == "InsufficientBalance"
    for account in (alpha, beta, TREASURY, first):
        if wallets.withdrawable(chain, account.address):
            wallets.withdraw(chain, account.private_key, wallets.withdrawable(chain, account.address))


def test_the_follower_applied_twice_or_restarted_half_way_gives_the_same_ledger(chain, anvil_snapshot, monkeypatch):
    helpers.fund(chain)
    a_history(chain, anvil_snapshot)
    first = helpers.sync(chain)
    reference = helpers.ledger_rows(chain.chain_id)
    assert first.applied == len(reference["events"]) > 25
    states = {row[helpers.LEASE_FIELDS.index("state")] for row in reference["leases"]}
    assert states == {"open", "settled", "released", "slashed", "reclaimed"}

    # Applied twice: by the follower, and every event again by hand.
    assert helpers.sync(chain).applied == 0
    for event in ChainEvent.objects.filter(chain_id=chain.chain_id):
        assert ledger.apply_event(chain_id=chain.chain_id, name=event.name, args=event.args, tx_hash=event.tx_hash,
                                  log_index=event.log_index, block_number=event.block_number,
                                  block_time=int(event.block_time.timestamp())) is False
    assert helpers.ledger_rows(chain.chain_id) == reference

    # Killed half-way through a batch, in small chunks, then run again.
    ledger.forget(chain.chain_id)
    apply_event, applied, half = ledger.apply_event, [], len(reference["events"]) // 2

    def dies_half_way(**event: Any) -> bool:
        if len(applied) == half:
            raise ConnectionResetError("the follower's process died")
        applied.append(event)
        return apply_event(**event)

    monkeypatch.setattr(ledger, "apply_event", dies_half_way)
    with pytest.raises(ConnectionResetError):
        helpers.sync(chain, chunk=5)
    monkeypatch.setattr(ledger, "apply_event", apply_event)
    cursor = ChainCursor.objects.get(chain_id=chain.chain_id).last_block
    partial = helpers.ledger_rows(chain.chain_id)["events"]
    block = helpers.EVENT_FIELDS.index("block_number")
    assert partial == [event for event in reference["events"] if event[block] <= cursor]  # whole batches only
    assert 0 < len(partial) < half, "the failed batch's first events must have been rolled back with it"
    assert helpers.sync(chain, chunk=5).applied == len(reference["events"]) - len(partial)
    assert helpers.ledger_rows(chain.chain_id) == reference

    # Forgotten and replayed from the deployment block.
    ledger.forget(chain.chain_id)
    assert not Wallet.objects.filter(chain_id=chain.chain_id).exists()
    assert helpers.sync(chain).applied == len(reference["events"])
    assert helpers.ledger_rows(chain.chain_id) == reference


def test_a_settlement_for_2_63_seconds_or_more_is_mirrored(chain):
    helpers.fund(chain)
    tenant, provider = TENANTS[0], PROVIDERS[0]
    wallets.deposit(chain, tenant.private_key, ETHER)
    wallets.set_lease_cap(chain, tenant.private_key, ETHER)
    wallets.register_provider(chain, provider.private_key, MIN_STAKE)
    for function, args in (("openLease", [1, 1, tenant.address, provider.address, ETHER, 60]),
                           ("settleLease", [1, 2**64 - 1, evidence(1)])):
        assert helpers.marketplace_call(chain, key=f"{function}:1", function=function, args=args, lease_id=1).ok
    helpers.sync(chain)
    assert Lease.objects.get(chain_id=chain.chain_id, lease_id=1).used_seconds == 2**64 - 1
