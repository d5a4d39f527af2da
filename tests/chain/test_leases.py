"""The job flow with money on a real anvil: a matched job's lease opens on chain before it runs,
settles for the time used when the result verifies, is released on failure or cancel, and
slashes the provider when the result is proven wrong. Every balance is read back from the
contract and from the ledger the follower rebuilds, and they must agree to the wei.

Runs come from `scheduling.apply_report` with reports shaped like a node's (the real node and
Ray run in tests/dispatch/test_chain_e2e.py).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from marketplace.chain import follower, outbox, wallets
from marketplace.chain.client import address_of
from marketplace.models import (
    AttemptOutcome,
    ChainDeployment,
    ChainEvent,
    ChainSigner,
    ChainTx,
    Job,
    JobAttempt,
    JobState,
    Lease,
    TxState,
    Wallet,
)
from marketplace.services import accounts, jobs, leases, scheduling
from marketplace.services.jobs import Requirements
from tests.chain.conftest import DEPLOYER, DEVELOPER_WALLET, FEE_BPS, MIN_STAKE, PROVIDER_WALLET, TREASURY
from tests.marketplace.test_scheduling import RTX, node_with_offer
from workers.runtime.spec import RunReport, RunState

PRICE = 10**15  # wei per GPU-hour
DEPOSIT = 10**18
CAP = 10**17
RESERVED = PRICE  # one hour (LEASE_MAX_DURATION_S) at PRICE, one GPU: what a default-budget job reserves


def link(person: Any, wallet: Any) -> None:
    address, signature = accounts.sign_wallet_link(person.user, wallet.private_key)
    accounts.link_wallet(user=person.user, address=address, signature=signature)


def pump(chain: Any, rounds: int = 4) -> None:
    """What the Celery beat does: send the outbox, follow the events, report outcomes."""
    for _ in range(rounds):
        moved = outbox.process(chain)
        applied = follower.sync(chain).applied
        if not moved and not applied:
            return


def ledger(chain: Any, address: str) -> Wallet:
    return Wallet.objects.get(chain_id=chain.chain_id, address=address)


def on_chain(chain: Any, address: str) -> int:
    return wallets.withdrawable(chain, address)


@pytest.fixture
def funded(chain: Any, provider: Any, developer: Any) -> Any:
    """Both wallets linked; the developer deposited DEPOSIT with a CAP, the provider staked."""
    link(developer, DEVELOPER_WALLET)
    link(provider, PROVIDER_WALLET)
    wallets.fund_tenant(chain, minter_key=DEPLOYER.private_key, tenant_key=DEVELOPER_WALLET.private_key,
                        deposit_wei=DEPOSIT, lease_cap=CAP)
    wallets.fund_provider(chain, minter_key=DEPLOYER.private_key, provider_key=PROVIDER_WALLET.private_key,
                          stake=MIN_STAKE)
    pump(chain)
    return chain


def submit(person: Any, **fields: Any) -> Job:
    return jobs.submit_job(owner=person.user, kind="benchmark", requirements=Requirements(gpu_model=RTX), **fields)


def matched(job: Job) -> JobAttempt:
    match = scheduling.match_job(job.pk)
    assert match is not None, Job.objects.get(pk=job.pk).wait_reason
    assert match.lease_pending
    return JobAttempt.objects.get(pk=match.attempt_id)


def report(attempt: JobAttempt, state: str, **fields: Any) -> str:
    return scheduling.apply_report(attempt.pk, RunReport(state=state, **fields))


def run_for(attempt: JobAttempt, seconds: int) -> None:
    report(attempt, RunState.RUNNING)
    JobAttempt.objects.filter(pk=attempt.pk).update(started_at=timezone.now() - timedelta(seconds=seconds))


def test_a_verified_run_is_paid_for_the_time_used_and_the_provider_withdraws_it(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    job = submit(developer)
    attempt = matched(job)
    assert Job.objects.get(pk=job.pk).state == JobState.DISPATCHED
    assert scheduling.startable_attempt(attempt.pk) is None, "no run before the lease is open"
    assert leases.job_lease(job)["state"] == "opening"

    pump(chain)
    lease = Lease.objects.get(lease_id=attempt.pk)
    assert (lease.state, lease.reserved_wei, lease.tenant, lease.provider) == (
        "open", RESERVED, DEVELOPER_WALLET.address, PROVIDER_WALLET.address)
    assert scheduling.startable_attempt(attempt.pk) is not None
    assert ledger(chain, DEVELOPER_WALLET.address).reserved == RESERVED

    run_for(attempt, 90)
    assert report(attempt, RunState.SUCCEEDED, progress=1.0, output={"cpu_gflops": 12.5}) == "succeeded"
    pump(chain)

    lease.refresh_from_db()
    used = lease.used_seconds
    assert used is not None and 90 <= used <= 120
    payment = leases.quote(PRICE, used)
    fee = payment * FEE_BPS // 10_000
    assert (lease.state, lease.payment_wei, lease.fee_wei, lease.refund_wei) == ("settled", payment, fee,
                                                                                 RESERVED - payment)
    assert lease.result_hash == leases.result_hash(_blob(Job.objects.get(pk=job.pk)).read_bytes())
    for address, expected in ((PROVIDER_WALLET.address, payment - fee), (TREASURY.address, fee),
                              (DEVELOPER_WALLET.address, DEPOSIT - payment)):
        assert on_chain(chain, address) == ledger(chain, address).available == expected
    assert ledger(chain, DEVELOPER_WALLET.address).reserved == 0

    body = leases.job_lease(Job.objects.get(pk=job.pk))
    assert body["state"] == "settled" and body["open_tx"] == lease.open_tx and body["settle_tx"] == lease.close_tx
    assert body["payment_wei"] == str(payment)

    before = chain.client.balance_of(chain.token, PROVIDER_WALLET.address)
    wallets.withdraw(chain, PROVIDER_WALLET.private_key, payment - fee)
    pump(chain)
    assert chain.client.balance_of(chain.token, PROVIDER_WALLET.address) == before + payment - fee
    assert ledger(chain, PROVIDER_WALLET.address).available == 0
    assert ledger(chain, PROVIDER_WALLET.address).withdrawn == payment - fee
    assert_solvent(chain)


def assert_solvent(chain: Any) -> None:
    """The escrow holds exactly what the ledger says it owes, and the ledger matches the contract."""
    rows = list(Wallet.objects.filter(chain_id=chain.chain_id))
    held = chain.client.balance_of(chain.token, chain.escrow.address)
    assert held == sum(row.available + row.reserved + row.stake for row in rows)
    for row in rows:
        assert row.available == on_chain(chain, row.address)
        assert row.reserved == chain.client.call(chain.escrow, "reservedOf", row.address)


def test_a_developer_without_enough_balance_waits_in_queued_with_the_reason(chain, provider, developer):
    link(developer, DEVELOPER_WALLET)
    link(provider, PROVIDER_WALLET)
    wallets.fund_provider(chain, minter_key=DEPLOYER.private_key, provider_key=PROVIDER_WALLET.private_key,
                          stake=MIN_STAKE)
    wallets.fund_tenant(chain, minter_key=DEPLOYER.private_key, tenant_key=DEVELOPER_WALLET.private_key,
                        deposit_wei=RESERVED // 2, lease_cap=CAP)
    pump(chain)
    node_with_offer(provider, "rig", price=PRICE)
    job = submit(developer)
    assert scheduling.match_job(job.pk) is None
    waiting = Job.objects.get(pk=job.pk)
    assert waiting.state == JobState.QUEUED
    assert f"deposit at least {RESERVED - RESERVED // 2} wei more" in waiting.wait_reason
    assert not ChainTx.objects.exists()

    wallets.mint(chain, DEPLOYER.private_key, DEVELOPER_WALLET.address, RESERVED)
    wallets.deposit(chain, DEVELOPER_WALLET.private_key, RESERVED)
    pump(chain)
    attempt = matched(job)
    assert Job.objects.get(pk=job.pk).wait_reason == ""
    pump(chain)
    assert Lease.objects.get(lease_id=attempt.pk).state == "open"


def test_a_lease_above_the_developers_cap_or_without_a_wallet_waits(chain, provider, developer):
    link(provider, PROVIDER_WALLET)
    wallets.fund_provider(chain, minter_key=DEPLOYER.private_key, provider_key=PROVIDER_WALLET.private_key,
                          stake=MIN_STAKE)
    pump(chain)
    node_with_offer(provider, "rig", price=PRICE)
    job = submit(developer)
    assert scheduling.match_job(job.pk) is None
    assert "link a wallet" in Job.objects.get(pk=job.pk).wait_reason
    link(developer, DEVELOPER_WALLET)
    wallets.fund_tenant(chain, minter_key=DEPLOYER.private_key, tenant_key=DEVELOPER_WALLET.private_key,
                        deposit_wei=DEPOSIT, lease_cap=RESERVED - 1)
    pump(chain)
    assert scheduling.match_job(job.pk) is None
    assert f"above your lease cap of {RESERVED - 1} wei" in Job.objects.get(pk=job.pk).wait_reason


def test_offers_of_providers_without_stake_are_not_matched(chain, provider, developer):
    link(developer, DEVELOPER_WALLET)
    link(provider, PROVIDER_WALLET)
    wallets.fund_tenant(chain, minter_key=DEPLOYER.private_key, tenant_key=DEVELOPER_WALLET.private_key,
                        deposit_wei=DEPOSIT, lease_cap=CAP)
    pump(chain)
    node_with_offer(provider, "rig", price=PRICE)
    job = submit(developer)
    assert scheduling.match_job(job.pk) is None
    assert "has no active stake" in Job.objects.get(pk=job.pk).wait_reason


def test_a_failed_run_releases_the_whole_reservation(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    attempt = matched(submit(developer))
    pump(chain)
    run_for(attempt, 30)
    report(attempt, RunState.FAILED, error="CUDA error: out of memory")
    pump(chain)
    lease = Lease.objects.get(lease_id=attempt.pk)
    assert (lease.state, lease.refund_wei, lease.payment_wei) == ("released", RESERVED, 0)
    assert on_chain(chain, DEVELOPER_WALLET.address) == ledger(chain, DEVELOPER_WALLET.address).available == DEPOSIT
    assert ledger(chain, PROVIDER_WALLET.address).open_leases == 0
    assert_solvent(chain)


def test_cancel_before_the_lease_is_sent_withdraws_it_and_after_releases_it(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE, count=2)
    early = submit(developer)
    early_attempt = matched(early)
    jobs.cancel_job(owner=developer.user, job_id=early.pk)
    assert ChainTx.objects.get(key=f"openLease:{early_attempt.pk}").state == TxState.CANCELLED
    assert not ChainTx.objects.filter(key=f"releaseLease:{early_attempt.pk}").exists()

    late = submit(developer)
    late_attempt = matched(late)
    pump(chain)
    jobs.cancel_job(owner=developer.user, job_id=late.pk)
    pump(chain)
    assert not Lease.objects.filter(lease_id=early_attempt.pk).exists()
    assert Lease.objects.get(lease_id=late_attempt.pk).state == "released"
    assert on_chain(chain, DEVELOPER_WALLET.address) == DEPOSIT
    assert_solvent(chain)


def test_a_lease_the_chain_refuses_puts_the_job_back_in_the_queue_with_the_error(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    job = submit(developer)
    attempt = matched(job)
    # The developer empties the balance between matching and sending: the preflight catches it.
    wallets.withdraw(chain, DEVELOPER_WALLET.private_key, DEPOSIT)
    pump(chain)
    row = ChainTx.objects.get(key=f"openLease:{attempt.pk}")
    assert (row.state, row.error_code, row.nonce) == (TxState.REJECTED, "InsufficientBalance", None)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert "InsufficientBalance" in job.wait_reason
    assert JobAttempt.objects.get(pk=attempt.pk).outcome == AttemptOutcome.CANCELLED
    assert scheduling.match_job(job.pk) is None  # and the ledger now knows the balance is gone
    assert "deposit at least" in Job.objects.get(pk=job.pk).wait_reason


def test_a_retried_send_never_pays_twice(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    attempt = matched(submit(developer))
    row = ChainTx.objects.get(key=f"openLease:{attempt.pk}")
    signed = outbox._sign(chain, row.pk)  # the worker signs, broadcasts, then dies before recording it
    assert signed is not None
    chain.client.broadcast(signed.raw_tx)
    chain.client.broadcast(signed.raw_tx)  # and a retry sends the same bytes again
    pump(chain)
    row.refresh_from_db()
    assert row.state == TxState.MINED and row.tx_hash == signed.tx_hash
    assert ChainEvent.objects.filter(name="LeaseOpened").count() == 1
    assert ledger(chain, DEVELOPER_WALLET.address).reserved == RESERVED
    signer = ChainSigner.objects.get(address=address_of(settings.CHAIN_OPERATOR_KEY))
    assert signer.next_nonce == chain.client.nonce(signer.address)
    # Deciding the same call twice finds the first row.
    again = outbox.queue(chain_id=chain.chain_id, key=row.key, function="openLease", args=row.args)
    assert again.pk == row.pk


def evm_bundle_job(developer: Any) -> Job:
    from tests.evm.conftest import mainnet_dir
    from workers.evm.block import bundle_directory

    block_dir = sorted(path for path in mainnet_dir().iterdir() if path.is_dir())[0]
    response = developer.client.post("/api/v1/artifacts/", {"file": _file(bundle_directory(block_dir))},
                                     format="multipart")
    assert response.status_code == 201, response.json()
    return jobs.submit_job(owner=developer.user, kind="evm_block", spec={"blocks": [response.json()["id"]]},
                           requirements=Requirements(gpu_model=RTX))


def _file(content: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("block.json.gz", content, content_type="application/gzip")


def evm_output(job: Job, **override: Any) -> dict[str, Any]:
    """A node's report for the job's one block, with the header's values unless overridden."""
    from marketplace.services.verification import _headers

    header = _headers(job)[0]
    block = {"number": header.number, "gas_used": header.gas_used, "verified": True,
             "logs_bloom": "0x" + header.logs_bloom.to_bytes(256, "big").hex(),
             "receipts_root": "0x" + header.receipts_root.hex(), **override}
    return {"blocks": [block], "totals": {"verified": True}}


def test_a_proven_wrong_result_slashes_the_provider_and_the_job_runs_elsewhere(funded, provider, developer,
                                                                               other_provider):
    chain = funded
    cheat_node, _ = node_with_offer(provider, "cheat", price=PRICE)
    job = evm_bundle_job(developer)
    attempt = matched(job)
    pump(chain)
    run_for(attempt, 10)
    header_gas = evm_output(job)["blocks"][0]["gas_used"]
    report(attempt, RunState.SUCCEEDED, progress=1.0, output=evm_output(job, gas_used=header_gas + 1))
    pump(chain)

    attempt.refresh_from_db()
    assert attempt.outcome == AttemptOutcome.WRONG and "gas_used" in attempt.reason
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    lease = Lease.objects.get(lease_id=attempt.pk)
    slashed = min(settings.SLASH_AMOUNT_WEI, MIN_STAKE)
    assert (lease.state, lease.slashed_wei, lease.refund_wei) == ("slashed", slashed, RESERVED)
    assert ledger(chain, PROVIDER_WALLET.address).stake == MIN_STAKE - slashed
    assert on_chain(chain, DEVELOPER_WALLET.address) == DEPOSIT + slashed
    assert ledger(chain, DEVELOPER_WALLET.address).compensated == slashed
    assert_solvent(chain)
    # Its stake is now below the minimum, and the node is excluded for this job anyway.
    assert cheat_node.pk not in [offer.node_id for offer in scheduling.candidate_offers(job, timezone.now())]


def test_a_verified_evm_result_settles_with_its_hash(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    job = evm_bundle_job(developer)
    attempt = matched(job)
    pump(chain)
    run_for(attempt, 5)
    assert report(attempt, RunState.SUCCEEDED, progress=1.0, output=evm_output(job)) == "succeeded"
    pump(chain)
    lease = Lease.objects.get(lease_id=attempt.pk)
    assert lease.state == "settled"
    job.refresh_from_db()
    assert lease.result_hash == leases.result_hash(_blob(job).read_bytes())


def _blob(job: Job) -> Any:
    from marketplace.services.artifacts import blob_path

    return blob_path(job.result_artifact.sha256)


def test_deploy_is_idempotent_and_the_ledger_rebuilds_from_events_alone(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    attempt = matched(submit(developer))
    pump(chain)
    run_for(attempt, 40)
    report(attempt, RunState.SUCCEEDED, progress=1.0, output={"cpu_gflops": 1.0})
    pump(chain)

    def snapshot() -> Any:
        wallets_ = sorted((w.address, w.available, w.reserved, w.stake, w.earned, w.fees, w.spent, w.deposited)
                          for w in Wallet.objects.all())
        leases_ = sorted((l.lease_id, l.state, l.payment_wei, l.fee_wei, l.open_tx, l.close_tx, l.job_id)
                         for l in Lease.objects.all())
        return wallets_, leases_, ChainEvent.objects.count()

    before = snapshot()
    call_command("sync_chain_events", "--rebuild", stdout=open("/dev/null", "w"))
    assert snapshot() == before
    call_command("sync_chain_events", stdout=open("/dev/null", "w"))
    assert snapshot() == before

    from marketplace.chain import context
    from marketplace.chain.deploy import DeployParams, deploy

    addresses = deploy(context.client(), deployer_key=DEPLOYER.private_key, operator=chain.deployment.settings["operator"],
                       params=DeployParams())
    assert addresses == {"LeaseEscrow": chain.escrow.address, "MarketToken": chain.token.address}
    assert ChainDeployment.objects.count() == 2


def test_a_lease_that_never_opens_gives_the_gpus_back_and_is_withdrawn(funded, provider, developer):
    chain = funded
    _, offer = node_with_offer(provider, "rig", price=PRICE, count=1)
    job = submit(developer)
    attempt = matched(job)
    later = attempt.created_at + scheduling.LEASE_OPEN_TIMEOUT + timedelta(seconds=1)
    assert not scheduling.lease_overdue(attempt, attempt.created_at + timedelta(seconds=30))
    assert scheduling.lease_overdue(attempt, later)  # the outbox never sent it (chain down)
    assert scheduling.requeue_unleased(attempt.pk, "the lease did not open on chain within 5 minutes")
    offer.refresh_from_db()
    assert offer.reserved_gpus == 0 and Job.objects.get(pk=job.pk).state == JobState.QUEUED
    assert ChainTx.objects.get(key=f"openLease:{attempt.pk}").state == TxState.CANCELLED
    pump(chain)
    assert not Lease.objects.exists() and on_chain(chain, DEVELOPER_WALLET.address) == DEPOSIT


def test_a_lease_that_opens_after_its_attempt_gave_up_is_released(funded, provider, developer):
    chain = funded
    node_with_offer(provider, "rig", price=PRICE)
    attempt = matched(submit(developer))
    row = ChainTx.objects.get(key=f"openLease:{attempt.pk}")
    outbox._sign(chain, row.pk)  # signed: on its way, it can no longer be withdrawn
    scheduling.requeue_unleased(attempt.pk, "the lease did not open on chain within 5 minutes")
    pump(chain)
    assert Lease.objects.get(lease_id=attempt.pk).state == "released"
    assert on_chain(chain, DEVELOPER_WALLET.address) == DEPOSIT
    assert_solvent(chain)


def test_contracts_gone_from_the_chain_are_redeployed_and_the_old_calls_and_nonces_forgotten(chain, developer):
    from marketplace.chain import context
    from marketplace.chain.deploy import DeployParams, deploy

    ChainSigner.objects.create(chain_id=chain.chain_id, address=address_of(settings.CHAIN_OPERATOR_KEY),
                               next_nonce=50)  # as left by a chain that was since restarted empty
    stale = outbox.queue(chain_id=chain.chain_id, key="releaseLease:9", function="releaseLease", args=[9], lease_id=9)
    ChainDeployment.objects.filter(name="LeaseEscrow").update(address="0x000000000000000000000000000000000000dEaD")  # no code
    addresses = deploy(context.client(), deployer_key=DEPLOYER.private_key, operator=address_of(
        settings.CHAIN_OPERATOR_KEY), params=DeployParams(min_stake=MIN_STAKE, treasury=TREASURY.address))
    assert addresses["LeaseEscrow"] != chain.escrow.address
    stale.refresh_from_db()
    assert stale.state == TxState.CANCELLED and not ChainSigner.objects.exists()
