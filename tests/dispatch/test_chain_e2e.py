"""Money end to end, from real parts: a developer deposits to the escrow on anvil, submits an
``evm_block`` job over the API, Celery leases it on chain and runs it on a provider node of a real
Ray cluster, the verified result settles the lease, and the provider withdraws its earnings. The
token balances of every party add up to the wei.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from marketplace.chain.anvil import ANVIL_ACCOUNTS, AnvilProcess
from tests.chain.conftest import start_test_anvil
from tests.dispatch.conftest import stack_on_test_database
from tests.dispatch.harness import RTX, Stack, wait_until
from tests.evm.conftest import mainnet_dir

pytestmark = [pytest.mark.dispatch, pytest.mark.django_db]

DEPLOYER, OPERATOR, DEVELOPER_WALLET, PROVIDER_WALLET, TREASURY = ANVIL_ACCOUNTS[:5]
DEPOSIT = 10**18
STAKE = 10**18
BLOCK = 19933122


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    chain = start_test_anvil(tmp_path_factory.mktemp("e2e-anvil") / "anvil.log")
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, anvil: AnvilProcess) -> Iterator[Stack]:
    env = {"CHAIN_URL": anvil.url, "CHAIN_OPERATOR_KEY": OPERATOR.private_key, "CHAIN_CONFIRMATIONS": "0",
           "CHAIN_POLL_S": "1"}
    with stack_on_test_database(django_db_blocker, nodes={"a": [(RTX, 1)]}, agent_cpus=3, prefix="e2e",
                                env=env) as running:
        with django_db_blocker.unblock(), _chain_settings(anvil):
            _deploy_and_fund()
        yield running


class _chain_settings:
    """This process's settings pointed at the stack's chain (the stack's processes get them by env)."""

    def __init__(self, anvil: AnvilProcess) -> None:
        self.values = {"CHAIN_URL": anvil.url, "CHAIN_OPERATOR_KEY": OPERATOR.private_key, "CHAIN_CONFIRMATIONS": 0}

    def __enter__(self) -> None:
        from django.conf import settings

        self.saved = {name: getattr(settings, name) for name in self.values}
        for name, value in self.values.items():
            setattr(settings, name, value)

    def __exit__(self, *exc: object) -> None:
        from django.conf import settings

        for name, value in self.saved.items():
            setattr(settings, name, value)


def _deploy_and_fund() -> None:
    """What an operator and the two users do before any job: deploy, link wallets, deposit, stake."""
    from django.contrib.auth.models import User

    from marketplace.chain import context, wallets
    from marketplace.chain.deploy import DeployParams, deploy
    from marketplace.services import accounts

    deploy(context.client(), deployer_key=DEPLOYER.private_key, operator=OPERATOR.address,
           params=DeployParams(fee_bps=250, min_stake=STAKE, unbonding_delay_s=60, settle_window_s=600,
                               treasury=TREASURY.address))
    for username, wallet in (("e2e-dev", DEVELOPER_WALLET), ("e2e-prov", PROVIDER_WALLET)):
        user = User.objects.get(username=username)
        address, signature = accounts.sign_wallet_link(user, wallet.private_key)
        accounts.link_wallet(user=user, address=address, signature=signature)
    chain = context.connect()
    assert chain is not None
    wallets.fund_tenant(chain, minter_key=DEPLOYER.private_key, tenant_key=DEVELOPER_WALLET.private_key,
                        deposit_wei=DEPOSIT, lease_cap=DEPOSIT)
    wallets.fund_provider(chain, minter_key=DEPLOYER.private_key, provider_key=PROVIDER_WALLET.private_key, stake=STAKE)


def upload(stack: Stack, path: Path) -> int:
    from workers.evm import bundle_directory

    response = requests.post(f"{stack.api}/api/v1/artifacts/", timeout=10,
                             files={"file": (f"{path.name}.json.gz", bundle_directory(path), "application/gzip")},
                             headers={"Authorization": f"Token {stack.developer_token}"})
    assert response.status_code == 201, response.text
    artifact_id: int = response.json()["id"]
    return artifact_id


def lease_of(job_id: int) -> dict[str, Any] | None:
    from marketplace.models import Job
    from marketplace.services import leases

    return leases.job_lease(Job.objects.get(pk=job_id))


def test_deposit_job_settle_withdraw_add_up_to_the_wei(stack: Stack, anvil: AnvilProcess, db_access: None) -> None:
    from marketplace.chain import context, wallets
    from marketplace.models import Wallet

    with _chain_settings(anvil):
        chain = context.connect()
        assert chain is not None
        token_before = {wallet.address: chain.client.balance_of(chain.token, wallet.address)
                        for wallet in (DEVELOPER_WALLET, PROVIDER_WALLET, TREASURY)}
        job = stack.submit({"kind": "evm_block", "spec": {"blocks": [upload(stack, mainnet_dir() / str(BLOCK))],
                                                          "workers": 2}, "requirements": {"gpus": 1}})
        done = stack.wait_state(job["id"], {"succeeded", "failed"}, timeout_s=180)
        assert done["state"] == "succeeded", stack.events(job["id"])
        assert stack.get(f"jobs/{job['id']}/result/")["result"]["totals"]["verified"] is True

        lease = wait_until(lambda: (lambda found: found if found and found["state"] == "settled" else None)(
            lease_of(job["id"])), 60, "the lease to settle on chain")
        payment, fee, refund = int(lease["payment_wei"]), int(lease["fee_wei"]), int(lease["refund_wei"])
        assert payment > 0 and fee == payment * 250 // 10_000 and payment + refund == int(lease["reserved_wei"])
        assert lease["open_tx"] and lease["settle_tx"] and lease["open_tx"] != lease["settle_tx"]
        assert chain.client.receipt(lease["settle_tx"]).succeeded

        earned = payment - fee
        assert wallets.withdrawable(chain, PROVIDER_WALLET.address) == earned
        wallets.withdraw(chain, PROVIDER_WALLET.private_key, earned)
        wallets.withdraw(chain, TREASURY.private_key, fee)
        wallets.withdraw(chain, DEVELOPER_WALLET.private_key, DEPOSIT - payment)
        balances = {wallet.address: chain.client.balance_of(chain.token, wallet.address)
                    for wallet in (DEVELOPER_WALLET, PROVIDER_WALLET, TREASURY)}
        assert balances[PROVIDER_WALLET.address] == token_before[PROVIDER_WALLET.address] + earned
        assert balances[TREASURY.address] == token_before[TREASURY.address] + fee
        assert balances[DEVELOPER_WALLET.address] == token_before[DEVELOPER_WALLET.address] + DEPOSIT - payment
        assert chain.client.balance_of(chain.token, chain.escrow.address) == STAKE  # only the stake is left

        def ledger_caught_up() -> bool:
            rows = {row.address: row for row in Wallet.objects.filter(chain_id=chain.chain_id)}
            return all(address in rows and rows[address].available == 0 and rows[address].reserved == 0
                       for address in balances) and rows[PROVIDER_WALLET.address].earned == earned
        wait_until(ledger_caught_up, 30, "the follower to apply the withdrawals")
