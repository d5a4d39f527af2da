"""Driving the escrow the way the marketplace does, for the stateful and follower tests.

Wallets we hold the keys of act through `marketplace.chain.wallets` (approve + deposit, ...); the
marketplace's own calls (open, settle, release, slash) go through the outbox (`outbox.queue`, then
`outbox.process`), signed by ``CHAIN_OPERATOR_KEY`` with nonces from ``ChainSigner``. A refused
wallet call comes back as the decoded error's name; a refused outbox call as its row's state and
``error_code``.

Time is deterministic: `fix_block_time` makes anvil stamp every block one second after the last
(``anvil_setBlockTimestampInterval``), so "the next transaction's block time" is known in advance
and a deadline one second away is never a race with the wall clock. `warp` jumps with
``evm_setNextBlockTimestamp`` + ``evm_mine`` (``evm_increaseTime`` is ignored while an interval
is set).
"""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from marketplace.chain import follower, outbox, wallets
from marketplace.chain.anvil import ANVIL_ACCOUNTS, AnvilProcess, DevAccount
from marketplace.chain.client import ContractRevert
from marketplace.chain.context import Chain
from marketplace.models import ChainCursor, ChainEvent, ChainSigner, ChainTx, Lease, TxState, Wallet
from marketplace.services import ledger

DEPLOYER, OPERATOR = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[1]
TREASURY = ANVIL_ACCOUNTS[4]
# Account 6 is both a tenant and a provider: one `available` balance fed from both sides.
TENANTS: tuple[DevAccount, ...] = (ANVIL_ACCOUNTS[2], ANVIL_ACCOUNTS[5], ANVIL_ACCOUNTS[6])
PROVIDERS: tuple[DevAccount, ...] = (ANVIL_ACCOUNTS[3], ANVIL_ACCOUNTS[7], ANVIL_ACCOUNTS[6])
HOLDERS: tuple[DevAccount, ...] = tuple(dict.fromkeys(TENANTS + PROVIDERS + (TREASURY,)))  # every possible balance
MINTED = 10**24  # each tenant's and provider's wallet, before the first step

HOUR_S = 3600
STATE_NAMES = ("none", "open", "settled", "released", "reclaimed", "slashed")  # ILeaseEscrow.LeaseState


def quote(rate_per_hour: int, seconds: int) -> int:
    """`LeaseEscrow.quote`: rounded up to the wei."""
    return -(-rate_per_hour * seconds // HOUR_S)


@dataclass(frozen=True)
class Outcome:
    """What became of one call: ``error`` is the contract's decoded error name, '' if it succeeded."""

    error: str = ""
    tx: ChainTx | None = None  # the outbox row, for the marketplace's own calls

    @property
    def ok(self) -> bool:
        return not self.error


# --- time ----------------------------------------------------------------------------------------

@contextmanager
def fix_block_time(anvil: AnvilProcess) -> Iterator[None]:
    """Each new block one second after the previous one, while the context lasts."""
    anvil.rpc("anvil_setBlockTimestampInterval", 1)
    try:
        yield
    finally:
        anvil.rpc("anvil_removeBlockTimestampInterval")


def latest_time(chain: Chain) -> int:
    return chain.client.block_time("latest")


def warp(anvil: AnvilProcess, chain: Chain, seconds: int) -> int:
    """Mine one block ``seconds`` after the latest; its timestamp."""
    target = latest_time(chain) + seconds
    anvil.rpc("evm_setNextBlockTimestamp", target)
    anvil.rpc("evm_mine")
    return target


# --- calls ---------------------------------------------------------------------------------------

def wallet_call(chain: Chain, action: Any, *args: Any) -> Outcome:
    """Run a `wallets` function (or any transact) as ``action(chain, *args)``; its refusal as the
    decoded error's name. A refused call must leave no trace in the escrow's logs."""
    before = chain.client.head()
    try:
        action(chain, *args)
    except ContractRevert as exc:
        after = chain.client.head()
        assert after == before or not chain.client.events(chain.escrow, before + 1, after), \
            f"{exc.error}: the escrow logged events for a refused call"
        return Outcome(error=exc.error)
    return Outcome()


def add_stake(chain: Chain, key: str, amount: int) -> None:
    chain.client.transact(key, chain.token, "approve", chain.escrow.address, amount)
    chain.client.transact(key, chain.escrow, "addStake", amount)


def escrow_call(chain: Chain, key: str, function: str, *args: Any) -> None:
    chain.client.transact(key, chain.escrow, function, *args)


def marketplace_call(chain: Chain, *, key: str, function: str, args: list[Any],
                     lease_id: int | None = None) -> Outcome:
    """Queue a call in the outbox and process it until it ends; a refusal must cost no nonce."""
    nonce_before = chain.client.nonce(OPERATOR.address)
    row = outbox.queue(chain_id=chain.chain_id, key=key, function=function, args=args, lease_id=lease_id)
    for _ in range(50):
        outbox.process(chain)
        row.refresh_from_db()
        if row.state not in outbox.LIVE_STATES:
            break
    else:
        raise AssertionError(f"outbox row {row.key} is still {row.state}")
    again = outbox.queue(chain_id=chain.chain_id, key=key, function=function, args=args, lease_id=lease_id)
    assert again.pk == row.pk and outbox.process(chain) == 0, "a second decision with the same key sent again"
    if row.state == TxState.MINED:
        assert chain.client.nonce(OPERATOR.address) == nonce_before + 1
        return Outcome(tx=row)
    assert row.state == TxState.REJECTED, f"{row.key} ended {row.state} ({row.error}): the preflight missed it"
    assert row.error_code and row.nonce is None and not row.raw_tx
    assert chain.client.nonce(OPERATOR.address) == nonce_before, "a refused call used a nonce"
    return Outcome(error=row.error_code, tx=row)


# --- what the chain says -------------------------------------------------------------------------

@dataclass(frozen=True)
class ProviderView:
    stake: int
    unbonding_at: int
    open_leases: int
    registered: bool


@dataclass(frozen=True)
class LeaseView:
    tenant: str
    opened_at: int
    state: str
    provider: str
    deadline: int
    job_id: int
    rate_per_hour: int
    reserved: int


@dataclass(frozen=True)
class EscrowView:
    """Every balance the escrow reports for some addresses and leases, read at one block."""

    block: int
    escrow_tokens: int
    wallet_tokens: dict[str, int]
    available: dict[str, int]
    reserved: dict[str, int]
    lease_cap: dict[str, int]
    providers: dict[str, ProviderView]
    leases: dict[int, LeaseView]


def _abi_type(argument: dict[str, Any]) -> str:
    kind = str(argument["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(part) for part in argument["components"]) + ")" + kind[len("tuple"):]
    return kind


class ViewReader:
    """The escrow's and the token's views, many at once: one JSON-RPC batch of ``eth_call`` at a
    pinned block (through web3 each call costs ~5 ms of Python; the invariants read ~40 per step).

    >>> ViewReader(chain).read(addresses, lease_ids).available[address]
    """

    def __init__(self, chain: Chain, url: str) -> None:
        from eth_utils import function_signature_to_4byte_selector

        self.chain, self.url = chain, url
        self.functions: dict[tuple[str, str], tuple[bytes, list[str], list[str]]] = {}
        for contract in (chain.escrow, chain.token):
            for item in contract.handle.abi:
                if item.get("type") == "function":
                    inputs = [_abi_type(arg) for arg in item["inputs"]]
                    selector = bytes(function_signature_to_4byte_selector(f"{item['name']}({','.join(inputs)})"))
                    self.functions[(contract.address, item["name"])] = (
                        selector, inputs, [_abi_type(arg) for arg in item["outputs"]])

    def read(self, addresses: Sequence[str], lease_ids: Sequence[int]) -> EscrowView:
        from eth_utils import to_checksum_address

        escrow, token = self.chain.escrow.address, self.chain.token.address
        block = hex(self.chain.client.head())
        calls: list[tuple[str, str, tuple[Any, ...]]] = [(token, "balanceOf", (escrow,))]
        for address in addresses:
            calls += [(token, "balanceOf", (address,)), (escrow, "available", (address,)),
                      (escrow, "reservedOf", (address,)), (escrow, "leaseCap", (address,)),
                      (escrow, "getProvider", (address,))]
        calls += [(escrow, "getLease", (lease_id,)) for lease_id in lease_ids]
        results = iter(self._batch(calls, block))
        escrow_tokens = next(results)
        view = EscrowView(int(block, 16), escrow_tokens, {}, {}, {}, {}, {}, {})
        for address in addresses:
            view.wallet_tokens[address] = next(results)
            view.available[address] = next(results)
            view.reserved[address] = next(results)
            view.lease_cap[address] = next(results)
            stake, unbonding_at, open_leases, registered = next(results)
            view.providers[address] = ProviderView(stake, unbonding_at, open_leases, registered)
        for lease_id in lease_ids:
            tenant, opened_at, state, provider, deadline, job_id, rate, reserved = next(results)
            view.leases[lease_id] = LeaseView(to_checksum_address(tenant), opened_at, STATE_NAMES[state],
                                              to_checksum_address(provider), deadline, job_id, rate, reserved)
        return view

    def _batch(self, calls: Sequence[tuple[str, str, tuple[Any, ...]]], block: str) -> list[Any]:
        from eth_abi import decode, encode

        payload = []
        for number, (contract, function, args) in enumerate(calls):
            selector, inputs, _ = self.functions[(contract, function)]
            data = "0x" + (selector + encode(inputs, list(args))).hex()
            payload.append({"jsonrpc": "2.0", "id": number, "method": "eth_call",
                            "params": [{"to": contract, "data": data}, block]})
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=10) as response:
            answers = sorted(json.loads(response.read()), key=lambda answer: answer["id"])
        values = []
        for (contract, function, _), answer in zip(calls, answers, strict=True):
            assert "error" not in answer, f"{function}: {answer['error']}"
            outputs = self.functions[(contract, function)][2]
            decoded = decode(outputs, bytes.fromhex(answer["result"][2:]))
            values.append(decoded[0] if len(outputs) == 1 else decoded)
        return values


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


# --- what the ledger says ------------------------------------------------------------------------

WALLET_FIELDS = ("address", "available", "reserved", "stake", "lease_cap", "deposited", "withdrawn", "earned", "fees",
                 "spent", "compensated", "slashed", "registered", "unbonding_at", "open_leases")
LEASE_FIELDS = ("lease_id", "job_id_on_chain", "job_id", "tenant", "provider", "rate_per_hour_wei", "reserved_wei",
                "deadline", "state", "used_seconds", "payment_wei", "fee_wei", "refund_wei", "slashed_wei",
                "result_hash", "open_tx", "close_tx", "opened_at", "closed_at")
EVENT_FIELDS = ("tx_hash", "log_index", "block_number", "block_time", "name", "args")


def ledger_rows(chain_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the follower writes for one chain, without ids and bookkeeping times: two
    ledgers built from the same events must be equal on this, to the wei and the second."""
    return {
        "wallets": list(Wallet.objects.filter(chain_id=chain_id).order_by("address").values_list(*WALLET_FIELDS)),
        "leases": list(Lease.objects.filter(chain_id=chain_id).order_by("lease_id").values_list(*LEASE_FIELDS)),
        "events": list(ChainEvent.objects.filter(chain_id=chain_id).order_by("block_number", "log_index")
                       .values_list(*EVENT_FIELDS)),
    }


def reset_database(chain_id: int) -> None:
    """Forget the ledger, the outbox and the signer's nonce (the chain was just reverted under them)."""
    ledger.forget(chain_id)
    ChainTx.objects.filter(chain_id=chain_id).delete()
    ChainSigner.objects.filter(chain_id=chain_id).delete()
    assert not ChainCursor.objects.filter(chain_id=chain_id).exists()


def sync(chain: Chain, **options: Any) -> follower.SyncResult:
    return follower.sync(chain, confirmations=0, **options)


def fund(chain: Chain) -> None:
    """Mint every tenant and provider wallet its tokens (the deployer owns the test token)."""
    for account in dict.fromkeys(TENANTS + PROVIDERS):
        wallets.mint(chain, DEPLOYER.private_key, account.address, MINTED)
