"""``manage.py fund_demo``: the demo accounts' money on a local chain, idempotent.

Links the demo developer's and provider's wallets (anvil's public dev accounts 2 and 3: never
for real money), gives the developer a deposit with a lease cap and the provider a stake, applies
the events to the ledger, and adds the chain's URL, contract addresses and the demo wallets to
``demo.json``. Run after ``seed_demo`` and ``deploy_contracts``; running it again tops nothing up
twice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEVELOPER_DEPOSIT_WEI = 100 * 10**18
DEVELOPER_LEASE_CAP_WEI = 10 * 10**18


class Command(BaseCommand):
    help = "Link the demo users' wallets, deposit for the developer, stake for the provider (local chains only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", default=str(Path(settings.RUN_DIR) / "demo.json"))

    def handle(self, *args: Any, output: str, **options: Any) -> None:
        from marketplace.chain import context, follower
        from marketplace.chain.anvil import ANVIL_ACCOUNTS
        from marketplace.chain.client import ChainError

        chain = context.connect() if context.enabled() else None
        if chain is None:
            raise CommandError("CHAIN_URL is not set")
        if chain.chain_id != 31337:
            raise CommandError(f"fund_demo uses anvil's public dev keys: refusing chain {chain.chain_id}")
        deployer, developer_wallet, provider_wallet = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[2], ANVIL_ACCOUNTS[3]
        try:
            _link("demo-developer", developer_wallet.private_key)
            _link("demo-provider", provider_wallet.private_key)
            _fund(chain, deployer.private_key, developer_wallet, provider_wallet)
            follower.sync(chain, confirmations=0)
        except ChainError as exc:
            raise CommandError(f"funding the demo accounts failed: {exc}") from None
        _extend_demo_file(Path(output), {
            "chain_url": settings.CHAIN_URL, "chain_id": chain.chain_id, "escrow_address": chain.escrow.address,
            "token_address": chain.token.address,
            "developer_wallet": developer_wallet.address, "developer_wallet_key": developer_wallet.private_key,
            "provider_wallet": provider_wallet.address, "provider_wallet_key": provider_wallet.private_key,
        })
        self.stdout.write(f"demo wallets funded on chain {chain.chain_id} (escrow {chain.escrow.address})")


def _link(username: str, key: str) -> None:
    from marketplace.services import accounts

    user = User.objects.get(username=username)
    address, signature = accounts.sign_wallet_link(user, key)
    if accounts.account_of(user).wallet_address != address:
        accounts.link_wallet(user=user, address=address, signature=signature)


def _fund(chain: Any, minter_key: str, developer: Any, provider: Any) -> None:
    from marketplace.chain import wallets

    if chain.client.call(chain.escrow, "leaseCap", developer.address) == 0:
        wallets.fund_tenant(chain, minter_key=minter_key, tenant_key=developer.private_key,
                            deposit_wei=DEVELOPER_DEPOSIT_WEI, lease_cap=DEVELOPER_LEASE_CAP_WEI)
    if not chain.client.call(chain.escrow, "getProvider", provider.address)[3]:  # registered
        stake = int(chain.client.call(chain.escrow, "minStake"))
        wallets.fund_provider(chain, minter_key=minter_key, provider_key=provider.private_key, stake=stake)


def _extend_demo_file(path: Path, extra: dict[str, Any]) -> None:
    from marketplace.management.commands.seed_demo import _write_private

    try:
        demo = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise CommandError(f"{path} is missing: run seed_demo first") from None
    _write_private(path, {**demo, **extra})
