"""``python manage.py sync_chain_events``: apply the escrow's confirmed events to the ledger."""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = ("Apply the escrow contract's events to the database, each exactly once, up to the head minus "
            "--confirmations blocks. --follow keeps going (and sends the outbox); --rebuild forgets what was "
            "learnt from this chain and replays every event from the deployment block.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--confirmations", type=int, default=settings.CHAIN_CONFIRMATIONS)
        parser.add_argument("--follow", action="store_true", help="keep following the chain until interrupted")
        parser.add_argument("--rebuild", action="store_true", help="replay every event from the deployment block")
        parser.add_argument("--interval", type=float, default=float(settings.CHAIN_POLL_S))

    def handle(self, *args: Any, **options: Any) -> None:
        from marketplace.chain import context, follower, outbox
        from marketplace.chain.client import ChainError, ChainUnavailable
        from marketplace.services import ledger

        if options["confirmations"] < 0:
            raise CommandError("--confirmations must be 0 or more")
        try:
            chain = context.connect()
        except (ChainError, context.NotDeployed) as exc:
            raise CommandError(str(exc)) from None
        if chain is None:
            raise CommandError("CHAIN_URL is not set: there is no chain to follow")
        if options["rebuild"]:
            ledger.forget(chain.chain_id)
        while True:
            try:
                result = follower.sync(chain, confirmations=options["confirmations"])
                if options["follow"]:
                    outbox.process(chain)
            except ChainUnavailable as exc:
                if not options["follow"]:
                    raise CommandError(str(exc)) from None
                self.stderr.write(f"{exc}; retrying")
            else:
                if result.applied or not options["follow"]:
                    self.stdout.write(f"applied {result.applied} event(s) up to block {result.to_block} "
                                      f"(head {result.head}, chain {chain.chain_id})")
            if not options["follow"]:
                return
            time.sleep(options["interval"])
