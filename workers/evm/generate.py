"""Synthetic blocks with known conflict patterns, in the block directory format of `workers.evm.block`.

Real blocks mix every kind of dependency; these isolate one each, at any size, to test and
benchmark the parallel engines:

- ``transfers``: ETH transfers from distinct funded senders to distinct fresh recipients. No
  dependencies: the only shared location is the beneficiary, which only receives fee credits.
- ``erc20``: ``transfer(to, amount)`` calls on one ERC-20 token between disjoint (sender, recipient)
  pairs; each touches its own two balance slots and emits a ``Transfer`` log. No dependencies.
- ``hot_account``: distinct senders all pay one EOA. Its balance only receives credits, never read:
  independent under the deferred-credit rule.
- ``dex``: every transaction swaps on one constant-product pool, reading and writing its reserves: a
  serial dependency chain (each transaction depends on the previous one).
- ``deploy``: contract creations from distinct senders (a constructor storing two slots). No
  dependencies.

Everything derives from ``(pattern, transactions, seed, number)``, and the files are byte-identical
across runs. Keys are real secp256k1 keys, so senders recover from the signatures. The header's
``gasUsed``, ``logsBloom`` and ``receiptsRoot`` come from running the block through the reference
engine in order, so a correct engine reproduces them; the generator refuses a block in which any
transaction fails.

>>> generate_block("transfers", 3, "/tmp/three-transfers")  # doctest: +SKIP
PosixPath('/tmp/three-transfers')
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rlp
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey

from .block import BLOCK_FILE, BLOCK_HASHES_FILE, PRE_STATE_FILE, parse_block
from .contracts import programs
from .engine import EMPTY_TRIE_ROOT, block_bloom, build_receipts, receipts_root, trie_root
from .execute import execute_sequential
from .forks import FORKS, fork_of
from .reference import ReferenceEngine

PATTERNS = ("transfers", "erc20", "hot_account", "dex", "deploy")

GWEI = 10**9
ETHER = 10**18
CHAIN_ID = 1
BASE_FEE = 10 * GWEI  # London on: every block of the generator has this base fee
LEGACY_GAS_PRICE = 20 * GWEI  # before London: a plain gas price (all of it goes to the beneficiary)
SENDER_FUNDS = 10 * ETHER  # far above any transaction's value + gas * fee
MIN_BLOCK_GAS_LIMIT = 30_000_000
EXTRA_DATA = b"workers.evm.generate"
EMPTY_UNCLES_HASH = keccak(rlp.encode([]))

# Gas limits: comfortably above what each kind of transaction uses in Cancun (measured: 21,000,
# ~51,000, 21,000, ~61,000 and ~102,000), as a wallet's estimate plus margin would be.
GAS_LIMITS = {"transfers": 21_000, "erc20": 90_000, "hot_account": 21_000, "dex": 120_000, "deploy": 200_000}

_FORK_ORDER = {name: position for position, (_, name) in enumerate(FORKS)}
EIP155_BLOCK = 2_675_000  # Spurious Dragon: legacy signatures commit to the chain id
PARIS_BLOCK, PARIS_TIMESTAMP = 15_537_394, 1_663_224_179


def at_least(number: int, fork: str) -> bool:
    """Whether block ``number`` is in ``fork`` or a later one."""
    return _FORK_ORDER[fork_of(number)] >= _FORK_ORDER[fork]


# Deterministic derivation ---------------------------------------------------------------------


def derive(seed: int, label: str, index: int = 0) -> bytes:
    """32 pseudo-random bytes, a pure function of (seed, label, index): the generator's only source
    of randomness, so the same arguments always give the same block."""
    return keccak(f"workers.evm.generate:{seed}:{label}:{index}".encode())


def derive_int(seed: int, label: str, index: int, low: int, high: int) -> int:
    """A deterministic integer in ``[low, high)``."""
    return low + int.from_bytes(derive(seed, label, index), "big") % (high - low)


def derive_address(seed: int, label: str, index: int = 0) -> bytes:
    return derive(seed, label, index)[12:]


_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class Signer:
    """A funded externally owned account: its key, address and nonce before the block."""

    key: PrivateKey
    address: bytes
    nonce: int


def signer(seed: int, index: int) -> Signer:
    """The ``index``-th sender of a seed (the same account in every pattern)."""
    secret = derive(seed, "key", index)
    while not 0 < int.from_bytes(secret, "big") < _SECP256K1_ORDER:  # ~2**-128: never, in practice
        secret = keccak(secret)
    key = PrivateKey(secret)
    # A varied prior nonce, as real senders have (0 would hide nonce-handling bugs).
    return Signer(key, key.public_key.to_canonical_address(), derive_int(seed, "nonce", index, 0, 1_000))


# Workloads: what each transaction does, and the pre-state it needs ----------------------------


@dataclass(frozen=True)
class Call:
    """One transaction before fees and signature."""

    sender: Signer
    to: bytes | None
    value: int
    data: bytes
    gas: int


@dataclass
class Workload:
    """A pattern's transactions (unsigned) and the JSON pre-state they run against."""

    calls: list[Call] = field(default_factory=list)
    pre_state: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fund(self, account: Signer) -> None:
        self.pre_state[_hex_bytes(account.address)] = {"balance": hex(SENDER_FUNDS), "nonce": account.nonce}

    def add_contract(self, address: bytes, code: bytes, storage: dict[int, int], balance: int = 0) -> None:
        self.pre_state[_hex_bytes(address)] = {
            "balance": hex(balance),
            "nonce": 1,  # EIP-161: contracts start at nonce 1
            "code": _hex_bytes(code),
            "storage": {hex(slot): hex(value) for slot, value in sorted(storage.items())},
        }


def _transfers(seed: int, count: int) -> Workload:
    """Each sender pays its own fresh recipient."""
    workload = Workload()
    for i in range(count):
        sender = signer(seed, i)
        workload.fund(sender)
        value = derive_int(seed, "value", i, ETHER // 1000, ETHER // 10)
        workload.calls.append(Call(sender, derive_address(seed, "recipient", i), value, b"", GAS_LIMITS["transfers"]))
    return workload


def _hot_account(seed: int, count: int) -> Workload:
    """Every sender pays the same (already funded) EOA: an exchange deposit address, say."""
    workload = Workload()
    hot = derive_address(seed, "hot-account")
    workload.pre_state[_hex_bytes(hot)] = {"balance": hex(123 * ETHER), "nonce": 0}
    for i in range(count):
        sender = signer(seed, i)
        workload.fund(sender)
        value = derive_int(seed, "value", i, ETHER // 1000, ETHER // 10)
        workload.calls.append(Call(sender, hot, value, b"", GAS_LIMITS["hot_account"]))
    return workload


def _erc20(seed: int, count: int) -> Workload:
    """Sender i moves part of its token balance to fresh recipient i."""
    workload = Workload()
    token = derive_address(seed, "token")
    balances: dict[int, int] = {}
    for i in range(count):
        sender = signer(seed, i)
        workload.fund(sender)
        holding = derive_int(seed, "token-balance", i, 1_000 * ETHER, 10_000 * ETHER)
        balances[programs.mapping_slot(sender.address, programs.ERC20_BALANCES_SLOT)] = holding
        amount = derive_int(seed, "token-amount", i, 1, holding + 1)
        data = programs.erc20_transfer_calldata(derive_address(seed, "token-recipient", i), amount)
        workload.calls.append(Call(sender, token, 0, data, GAS_LIMITS["erc20"]))
    workload.add_contract(token, programs.erc20_runtime(), balances)
    return workload


DEX_RESERVES = (5_000_000 * ETHER, 2_000_000 * ETHER)


def _dex(seed: int, count: int) -> Workload:
    """Every trader sells some token0 to the one pool: each swap moves the price for the next."""
    workload = Workload()
    pool = derive_address(seed, "pool")
    storage = {programs.POOL_RESERVE0_SLOT: DEX_RESERVES[0], programs.POOL_RESERVE1_SLOT: DEX_RESERVES[1]}
    for i in range(count):
        trader = signer(seed, i)
        workload.fund(trader)
        holding = derive_int(seed, "token0-balance", i, 100 * ETHER, 1_000 * ETHER)
        storage[programs.mapping_slot(trader.address, programs.POOL_BALANCE0_SLOT)] = holding
        amount_in = derive_int(seed, "swap-amount", i, ETHER, holding + 1)
        workload.calls.append(Call(trader, pool, 0, programs.pool_swap_calldata(amount_in), GAS_LIMITS["dex"]))
    workload.add_contract(pool, programs.pool_runtime(), storage)
    return workload


def _deploy(seed: int, count: int) -> Workload:
    """Each sender deploys its own ``Stored(value)``."""
    workload = Workload()
    for i in range(count):
        sender = signer(seed, i)
        workload.fund(sender)
        init_code = programs.stored_init_code(derive_int(seed, "stored-value", i, 1, 2**64))
        workload.calls.append(Call(sender, None, 0, init_code, GAS_LIMITS["deploy"]))
    return workload


_WORKLOADS: dict[str, Callable[[int, int], Workload]] = {
    "transfers": _transfers,
    "erc20": _erc20,
    "hot_account": _hot_account,
    "dex": _dex,
    "deploy": _deploy,
}


# Signed transactions --------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedTransaction:
    raw: bytes  # the canonical encoding (what the transactions trie holds)
    json: dict[str, Any]  # the eth_getBlockByNumber(n, true) object, without blockHash


def sign(call: Call, index: int, number: int, seed: int) -> SignedTransaction:
    """Sign one call: EIP-1559 (type 2) from London on, else legacy (EIP-155 from Spurious Dragon)."""
    to = call.to or b""
    if at_least(number, "london"):
        tip = GWEI + derive_int(seed, "tip", index, 0, GWEI)  # 1-2 gwei: the beneficiary earns it
        max_fee = 2 * BASE_FEE + tip
        unsigned = [CHAIN_ID, call.sender.nonce, tip, max_fee, call.gas, to, call.value, call.data, []]
        signature = call.sender.key.sign_msg_hash(keccak(b"\x02" + rlp.encode(unsigned)))
        raw = b"\x02" + rlp.encode(unsigned + [signature.v, signature.r, signature.s])
        fields: dict[str, Any] = {
            "type": "0x2",
            "chainId": hex(CHAIN_ID),
            "maxPriorityFeePerGas": hex(tip),
            "maxFeePerGas": hex(max_fee),
            "gasPrice": hex(BASE_FEE + tip),  # what a node reports: the effective price
            "accessList": [],
            "v": hex(signature.v),
            "yParity": hex(signature.v),
        }
    else:
        gas_price = LEGACY_GAS_PRICE + derive_int(seed, "gas-price", index, 0, GWEI)
        unsigned = [call.sender.nonce, gas_price, call.gas, to, call.value, call.data]
        eip155 = number >= EIP155_BLOCK
        signed_fields = unsigned + [CHAIN_ID, 0, 0] if eip155 else unsigned
        signature = call.sender.key.sign_msg_hash(keccak(rlp.encode(signed_fields)))
        v = signature.v + (35 + 2 * CHAIN_ID if eip155 else 27)
        raw = rlp.encode(unsigned + [v, signature.r, signature.s])
        fields = {"type": "0x0", "gasPrice": hex(gas_price), "v": hex(v)}
        if eip155:
            fields["chainId"] = hex(CHAIN_ID)
    fields.update(
        {
            "blockNumber": hex(number),
            "from": _hex_bytes(call.sender.address),
            "gas": hex(call.gas),
            "hash": _hex_bytes(keccak(raw)),
            "input": _hex_bytes(call.data),
            "nonce": hex(call.sender.nonce),
            "r": hex(signature.r),
            "s": hex(signature.s),
            "to": _hex_bytes(call.to) if call.to is not None else None,
            "transactionIndex": hex(index),
            "value": hex(call.value),
        }
    )
    return SignedTransaction(raw, fields)


# The header -----------------------------------------------------------------------------------


def coinbase(seed: int) -> bytes:
    """The block's beneficiary (fresh: not in the pre-state, so it only ever receives credits)."""
    return derive_address(seed, "beneficiary")


def timestamp_of(number: int) -> int:
    """A plausible timestamp: 12 s slots after the Merge, ~14 s blocks before."""
    if number >= PARIS_BLOCK:
        return PARIS_TIMESTAMP + 12 * (number - PARIS_BLOCK)
    return 1_438_269_973 + 14 * number


def header_fields(number: int, seed: int, gas_limit: int, transactions_root: bytes) -> dict[str, Any]:
    """The header as JSON, with the execution results (gasUsed, logsBloom, receiptsRoot) still zero."""
    merged = at_least(number, "paris")
    header: dict[str, Any] = {
        "parentHash": _hex_bytes(derive(seed, "parent-hash", number)),
        "sha3Uncles": _hex_bytes(EMPTY_UNCLES_HASH),
        "miner": _hex_bytes(coinbase(seed)),
        "stateRoot": _hex_bytes(derive(seed, "state-root", number)),  # unknowable: the pre-state is partial
        "transactionsRoot": _hex_bytes(transactions_root),
        "receiptsRoot": _hex_bytes(EMPTY_TRIE_ROOT),
        "logsBloom": _hex_bytes(bytes(256)),
        "difficulty": "0x0" if merged else hex(2**44 + derive_int(seed, "difficulty", number, 0, 2**40)),
        "number": hex(number),
        "gasLimit": hex(gas_limit),
        "gasUsed": "0x0",
        "timestamp": hex(timestamp_of(number)),
        "extraData": _hex_bytes(EXTRA_DATA),
        "mixHash": _hex_bytes(derive(seed, "mix-hash", number)),  # PREVRANDAO after the Merge
        "nonce": _hex_bytes(bytes(8) if merged else derive(seed, "pow-nonce", number)[:8]),
        "uncles": [],
    }
    if at_least(number, "london"):
        header["baseFeePerGas"] = hex(BASE_FEE)
    if at_least(number, "shanghai"):
        header["withdrawals"] = []
        header["withdrawalsRoot"] = _hex_bytes(EMPTY_TRIE_ROOT)
    if at_least(number, "cancun"):
        header["blobGasUsed"] = "0x0"
        header["excessBlobGas"] = "0x0"
        header["parentBeaconBlockRoot"] = _hex_bytes(derive(seed, "parent-beacon-root", number))
    return header


_HASHED_FIELDS = (
    "parentHash sha3Uncles miner stateRoot transactionsRoot receiptsRoot logsBloom difficulty number gasLimit "
    "gasUsed timestamp extraData mixHash nonce baseFeePerGas withdrawalsRoot blobGasUsed excessBlobGas "
    "parentBeaconBlockRoot"
).split()
_BYTES_FIELDS = frozenset("parentHash sha3Uncles miner stateRoot transactionsRoot receiptsRoot logsBloom extraData mixHash nonce withdrawalsRoot parentBeaconBlockRoot".split())


def header_hash(header: dict[str, Any]) -> bytes:
    """keccak(RLP(header)), the fields in consensus order: the real hash of this header."""
    values = [
        bytes.fromhex(header[name][2:]) if name in _BYTES_FIELDS else int(header[name], 16)
        for name in _HASHED_FIELDS
        if name in header
    ]
    return keccak(rlp.encode(values))


# Generation -----------------------------------------------------------------------------------


def generate_block(pattern: str, transactions: int, out_dir: str | Path, *, seed: int = 0, number: int = 19_500_000) -> Path:
    """Write a synthetic block of ``transactions`` transactions following ``pattern`` (one of
    `PATTERNS`) into ``out_dir`` (``block.json.gz`` + ``pre_state.json.gz``) and return its path.

    The result is a pure function of the arguments. Raises ``ValueError`` on a bad pattern or count,
    ``RuntimeError`` if a generated transaction fails (a generator bug).
    """
    if pattern not in _WORKLOADS:
        raise ValueError(f"unknown pattern {pattern!r}: one of {', '.join(PATTERNS)}")
    if transactions < 1:
        raise ValueError(f"a block needs at least one transaction, not {transactions}")
    if number < 1:
        raise ValueError("block numbers start at 1 (the genesis block has no transactions)")
    workload = _WORKLOADS[pattern](seed, transactions)
    signed = [sign(call, index, number, seed) for index, call in enumerate(workload.calls)]
    gas_limit = max(MIN_BLOCK_GAS_LIMIT, sum(call.gas for call in workload.calls))
    header = header_fields(number, seed, gas_limit, trie_root([tx.raw for tx in signed]))
    document = dict(header, transactions=[tx.json for tx in signed])
    _fill_execution_results(document, workload.pre_state, pattern)
    document["hash"] = _hex_bytes(header_hash(document))
    for tx in document["transactions"]:
        tx["blockHash"] = document["hash"]
    return _write(Path(out_dir), document, workload.pre_state)


def _fill_execution_results(document: dict[str, Any], pre_state: dict[str, Any], pattern: str) -> None:
    """Run the block in order with the reference engine; set gasUsed, logsBloom and receiptsRoot."""
    document["hash"] = _hex_bytes(bytes(32))  # the loader wants one; the real one comes last
    block = parse_block(document, pre_state, {})
    results = execute_sequential(ReferenceEngine(block))
    failed = [result.index for result in results if not result.success]
    if failed:
        raise RuntimeError(f"{pattern}: generated transactions {failed[:10]} failed: a generator bug")
    receipts = build_receipts(block, results)
    document["gasUsed"] = hex(receipts[-1].cumulative_gas_used)
    document["logsBloom"] = _hex_bytes(block_bloom(receipts).to_bytes(256, "big"))
    document["receiptsRoot"] = _hex_bytes(receipts_root(block, receipts))


def _write(out_dir: Path, document: dict[str, Any], pre_state: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BLOCK_HASHES_FILE).unlink(missing_ok=True)  # a stale one from an earlier block
    _write_json(out_dir / BLOCK_FILE, document)
    _write_json(out_dir / PRE_STATE_FILE, pre_state)
    return out_dir


def _write_json(path: Path, document: Any) -> None:
    # Sorted keys and mtime=0: the bytes depend only on the content.
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))


def _hex_bytes(data: bytes) -> str:
    return "0x" + data.hex()


# Command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workers.evm.generate PATTERN N OUT_DIR [--seed S] [--number B]``; exit 2 on bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m workers.evm.generate", description="Write a synthetic block.")
    parser.add_argument("pattern", help=f"one of: {', '.join(PATTERNS)}")
    parser.add_argument("transactions", type=int, help="number of transactions (at least 1)")
    parser.add_argument("out_dir", help="directory to write block.json.gz and pre_state.json.gz into")
    parser.add_argument("--seed", type=int, default=0, help="varies keys, amounts and addresses (default 0)")
    parser.add_argument("--number", type=int, default=19_500_000, help="block number, which sets the fork (default: 19500000, Cancun)")
    args = parser.parse_args(argv)
    if args.pattern not in PATTERNS:
        parser.error(f"unknown pattern {args.pattern!r}: choose one of {', '.join(PATTERNS)}")
    if args.transactions < 1:
        parser.error(f"N must be at least 1, not {args.transactions}")
    if args.number < 1:
        parser.error("--number must be at least 1")
    started = time.perf_counter()
    path = generate_block(args.pattern, args.transactions, args.out_dir, seed=args.seed, number=args.number)
    print(
        f"{args.pattern}: {args.transactions} transactions, block {args.number} ({fork_of(args.number)}), "
        f"written to {path} in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
