"""``python manage.py deploy_contracts``: deploy the token and the escrow to CHAIN_URL and record them."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = ("Deploy the test token (unless CHAIN_TOKEN_ADDRESS names a real one) and the LeaseEscrow to the chain "
            "at CHAIN_URL, grant the marketplace's signer (CHAIN_OPERATOR_KEY) its roles, and record the "
            "addresses for the chain id. Does nothing if they are already there.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fee-bps", type=int, default=settings.CHAIN_FEE_BPS)
        parser.add_argument("--min-stake-wei", type=int, default=settings.CHAIN_MIN_STAKE_WEI)
        parser.add_argument("--unbonding-delay-s", type=int, default=settings.CHAIN_UNBONDING_DELAY_S)
        parser.add_argument("--settle-window-s", type=int, default=settings.CHAIN_SETTLE_WINDOW_S)

    def handle(self, *args: Any, **options: Any) -> None:
        from dataclasses import replace

        from marketplace.chain import context
        from marketplace.chain.client import ChainError
        from marketplace.chain.deploy import DeployParams, deploy

        for name in ("CHAIN_URL", "CHAIN_DEPLOYER_KEY", "CHAIN_OPERATOR_KEY"):
            if not getattr(settings, name):
                raise CommandError(f"{name} is not set")
        params = replace(DeployParams.from_settings(), fee_bps=options["fee_bps"], min_stake=options["min_stake_wei"],
                         unbonding_delay_s=options["unbonding_delay_s"], settle_window_s=options["settle_window_s"])
        try:
            client = context.client()
            if settings.CHAIN_ID and client.chain_id() != settings.CHAIN_ID:
                raise CommandError(f"the node at CHAIN_URL is chain {client.chain_id()}, not CHAIN_ID {settings.CHAIN_ID}")
            addresses = deploy(client, deployer_key=settings.CHAIN_DEPLOYER_KEY, operator=context.operator_address(),
                               params=params)
        except ChainError as exc:
            raise CommandError(f"deploying failed: {exc}") from None
        for name, address in sorted(addresses.items()):
            self.stdout.write(f"{name} {address} (chain {client.chain_id()})")
