#!/usr/bin/env python
"""Gas used by each user-facing operation of the escrow, measured on a fresh local anvil.

Starts its own anvil (loopback, a free port, stopped at the end), deploys MarketToken and
LeaseEscrow from contracts/build with `ChainClient` (no database, no Django), and runs a tenant's,
a provider's, the marketplace operator's and the arbiter's calls, reading each receipt's gasUsed.
Where storage makes a first call cost more than a later one (a zero slot written non-zero costs
20,000 more than a non-zero one changed), both are measured: a tenant's first deposit and a later
one, a provider's first payout and a later one, and so on. Each round starts from the same snapshot
(amounts vary a little between rounds); the table shows the median over the rounds.

    scripts/loopback-only .venv/bin/python scripts/gas_report.py [--repeats 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from marketplace.chain.anvil import ANVIL_ACCOUNTS, AnvilError, AnvilProcess, start_anvil  # noqa: E402
from marketplace.chain.client import ChainClient, Contract, Receipt  # noqa: E402

DEPLOYER, OPERATOR, TENANT, PROVIDER, TREASURY, EARLIER_TENANT = ANVIL_ACCOUNTS[:6]
ETHER = 10**18
FEE_BPS, MIN_STAKE, UNBONDING_S, SETTLE_WINDOW_S = 250, ETHER, 60, 600
LEASE_S = 3600
RATE = ETHER // 10  # per hour: a lease of LEASE_S reserves 0.1 token


@dataclass(frozen=True)
class Market:
    client: ChainClient
    anvil: AnvilProcess
    token: Contract
    escrow: Contract


class Recorder:
    """Runs calls and keeps each one's gas under its (operation, case)."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.gas: dict[tuple[str, str], list[int]] = defaultdict(list)

    def call(self, key: str, contract: Contract, function: str, *args: Any, case: str = "") -> Receipt:
        receipt = self.market.client.transact(key, contract, function, *args)
        self.gas[(function, case)].append(receipt.gas_used)
        return receipt

    def setup(self, key: str, contract: Contract, function: str, *args: Any) -> None:
        """A call the round needs but does not measure."""
        self.market.client.transact(key, contract, function, *args)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start() -> AnvilProcess:
    for attempt in range(3):
        try:
            return start_anvil(free_port())
        except AnvilError:  # the port was taken between our probe and anvil's bind
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def deploy(anvil: AnvilProcess) -> Market:
    client = ChainClient(anvil.url)
    key = DEPLOYER.private_key
    token, _ = client.deploy(key, "MarketToken", DEPLOYER.address)
    escrow, _ = client.deploy(key, "LeaseEscrow", token.address, DEPLOYER.address, TREASURY.address, FEE_BPS,
                              MIN_STAKE, UNBONDING_S, SETTLE_WINDOW_S)
    for role in ("OPERATOR_ROLE", "ARBITER_ROLE"):
        client.transact(key, escrow, "grantRole", client.call(escrow, role), OPERATOR.address)
    for account in (TENANT, PROVIDER, EARLIER_TENANT):
        client.transact(key, token, "mint", account.address, 1_000 * ETHER)
    # A market in use: the escrow already holds someone's tokens, so the first deposit measured is a
    # tenant's first, not also the escrow's first token balance.
    client.transact(EARLIER_TENANT.private_key, token, "approve", escrow.address, ETHER)
    client.transact(EARLIER_TENANT.private_key, escrow, "deposit", ETHER)
    return Market(client, anvil, token, escrow)


def one_round(market: Market, rec: Recorder, variant: int) -> None:
    """Every operation once (twice where the first differs), from a fresh market."""
    token, escrow = market.token, market.escrow
    tenant, provider, operator = TENANT.private_key, PROVIDER.private_key, OPERATOR.private_key
    deposit = 10 * ETHER + variant

    # A tenant: approve and deposit (first and again), set its lease cap (first and a change).
    rec.call(tenant, token, "approve", escrow.address, deposit, case="allowance 0 -> amount")
    rec.call(tenant, escrow, "deposit", deposit, case="first")
    rec.setup(tenant, token, "approve", escrow.address, deposit)
    rec.call(tenant, escrow, "deposit", deposit, case="repeat")
    rec.call(tenant, escrow, "setLeaseCap", ETHER + variant, case="first")
    rec.call(tenant, escrow, "setLeaseCap", 2 * ETHER + variant, case="change")

    # A provider: register with its stake, then add to it.
    rec.setup(provider, token, "approve", escrow.address, 3 * MIN_STAKE)
    rec.call(provider, escrow, "registerProvider", 2 * MIN_STAKE + variant, case="")
    rec.call(provider, escrow, "addStake", MIN_STAKE - variant, case="")

    # The operator opens five leases: the provider's and the tenant's first, then more.
    for lease_id in range(1, 6):
        rec.call(operator, escrow, "openLease", lease_id, 1_000 + lease_id, TENANT.address, PROVIDER.address,
                 RATE + variant, LEASE_S, case="first" if lease_id == 1 else "repeat")
    # Settled (the provider's and the treasury's first payout, then another), released, slashed.
    rec.call(operator, escrow, "settleLease", 1, 1_800 + variant, b"\x01" * 32, case="first payout")
    rec.call(operator, escrow, "settleLease", 2, 900 + variant, b"\x02" * 32, case="repeat")
    rec.call(operator, escrow, "releaseLease", 3, case="")
    rec.call(operator, escrow, "slash", 4, MIN_STAKE // 2 + variant, b"\x04" * 32, case="")
    # The fifth is never settled: its tenant takes it back once the deadline passed.
    market.anvil.rpc("evm_increaseTime", LEASE_S + SETTLE_WINDOW_S + 1)
    market.anvil.rpc("evm_mine")
    rec.call(tenant, escrow, "reclaimLease", 5, case="after the deadline")

    # Withdrawals: part of a balance, then all of it (the slot back to zero earns a refund).
    earned = int(market.client.call(escrow, "available", PROVIDER.address))
    rec.call(provider, escrow, "withdraw", earned // 2, case="part")
    rec.call(provider, escrow, "withdraw", earned - earned // 2, case="all")
    rec.call(TREASURY.private_key, escrow, "withdraw", int(market.client.call(escrow, "available", TREASURY.address)),
             case="all, to an empty wallet")

    # The provider leaves: unbonding starts, and after the delay its stake becomes withdrawable.
    rec.call(provider, escrow, "startUnbonding", case="")
    market.anvil.rpc("evm_increaseTime", UNBONDING_S)
    market.anvil.rpc("evm_mine")
    rec.call(provider, escrow, "completeUnbonding", case="")


ORDER = ("approve", "deposit", "setLeaseCap", "registerProvider", "addStake", "openLease", "settleLease",
         "releaseLease", "slash", "reclaimLease", "withdraw", "startUnbonding", "completeUnbonding")


def measure(repeats: int) -> list[dict[str, Any]]:
    """Each (operation, case) with its gas in every round and the median."""
    with start() as anvil:
        market = deploy(anvil)
        rec = Recorder(market)
        snapshot = anvil.rpc("evm_snapshot")
        for variant in range(repeats):
            one_round(market, rec, variant)
            assert anvil.rpc("evm_revert", snapshot) is True
            snapshot = anvil.rpc("evm_snapshot")
    rows = [{"operation": function, "case": case, "runs": runs, "median": int(statistics.median(runs))}
            for (function, case), runs in rec.gas.items()]
    return sorted(rows, key=lambda row: ORDER.index(row["operation"]) if row["operation"] in ORDER else len(ORDER))


def table(rows: list[dict[str, Any]], repeats: int) -> str:
    lines = [f"{'operation':<20} {'case':<24} {'gas (median of ' + str(repeats) + ')':>20}  {'min':>9} {'max':>9}"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        lines.append(f"{row['operation']:<20} {row['case'] or '-':<24} {row['median']:>20,}  "
                     f"{min(row['runs']):>9,} {max(row['runs']):>9,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds from the same snapshot (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    rows = measure(args.repeats)
    if args.json:
        print(json.dumps({"repeats": args.repeats, "fee_bps": FEE_BPS, "operations": rows}, indent=2))
    else:
        print(table(rows, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
