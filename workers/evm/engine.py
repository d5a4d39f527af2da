"""The engine interface, a transaction's result, and receipts built from results.

An engine is built for one block and executes one transaction at a time against a `StateView`:

    engine = ReferenceEngine(block)
    result = engine.execute(index, view)   # -> TxResult with the receipt fields, read and write sets

Receipts need the cumulative gas, which only the block order gives, so `build_receipts` makes them
from the final results, in order.

Two engines implement it: `reference.ReferenceEngine` (py-evm, the oracle) and
`native.NativeEngine` (revm's interpreter in Rust, `workers/evm/rust`, whose state layer is a port
of the reference's `TrackedAccountDB` and whose state instructions follow py-evm's, so that it
keeps the contract below location for location; `tests/evm/test_native_diff.py` checks it).

The contract every engine keeps (the parallel scheduler relies on it, and a second engine must give
the reference engine's read and write sets exactly, location for location):

- A read is recorded once, with the value the view gave: an account as ``(balance, nonce, exists)``,
  code by its keccak hash, a slot as an int. Reads inside reverted calls stay recorded. An SSTORE's
  "original value" (EIP-2200) is a read of the slot as the view gives it.
- A non-negative balance change of an account the transaction has not read is a `Credit` (fees to the
  beneficiary, value transfers, and ``touch`` as a credit of 0); reading that balance later in the
  same transaction reads the account and folds the credit in. "Is it empty?" of an account holding a
  positive credit is answered False without a read.
- The write set holds every location whose final value differs from what was read (or that was
  written without being read), a wipe as ``(WIPE, address): True`` when the account's storage was
  cleared (creation, self-destruct), and, for a wiped account, only its non-zero slots.
- An invalid transaction (nonce, balance, intrinsic gas) returns ``valid=False`` with the reads it
  made: in parallel its view may be stale, and only the final view decides.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import rlp
from eth_bloom import BloomFilter
from eth_hash.auto import keccak

from .block import Block
from .forks import has_receipt_status
from .state import Key, StateView

Log = tuple[bytes, tuple[int, ...], bytes]
EMPTY_TRIE_ROOT = keccak(rlp.encode(b""))


class TxResult(NamedTuple):
    """One execution of one transaction: receipt fields plus exactly what it read and wrote.

    ``valid`` is False when the transaction could not be included against the state it saw
    (wrong nonce, unaffordable gas): in parallel execution that view may be stale, and a
    re-execution decides; in the final result it makes the block invalid. A named tuple
    (immutable, and cheap to build and unpickle by the thousand between processes).
    """

    index: int  # type: ignore[assignment]  # (shadows tuple.index, which nothing here uses)
    valid: bool
    success: bool = False
    gas_used: int = 0
    logs: tuple[Log, ...] = ()
    reads: Mapping[Key, Any] = MappingProxyType({})
    writes: Mapping[Key, Any] = MappingProxyType({})
    error: str | None = None

    def receipt_fields(self) -> tuple[bool, int, tuple[Log, ...]]:
        return (self.success, self.gas_used, self.logs)


class Engine(Protocol):
    """What the schedulers need from an engine."""

    name: str
    block: Block

    def execute(self, index: int, view: StateView) -> TxResult: ...


@dataclass(frozen=True)
class Receipt:
    """A transaction receipt as the block commits to it."""

    tx_type: int
    success: bool
    cumulative_gas_used: int
    gas_used: int
    logs: tuple[Log, ...]
    bloom: int

    def encode(self, with_status: bool) -> bytes:
        """The consensus encoding (EIP-2718 typed receipts carry their type byte first)."""
        # Before Byzantium the first field is the intermediate state root, which a partial
        # pre-state cannot give: 32 zero bytes stand in (the receipts root is not checked there).
        first = (b"\x01" if self.success else b"") if with_status else b"\x00" * 32
        logs = [[address, [topic.to_bytes(32, "big") for topic in topics], data] for address, topics, data in self.logs]
        payload = rlp.encode([first, self.cumulative_gas_used, self.bloom.to_bytes(256, "big"), logs])
        return payload if self.tx_type == 0 else bytes([self.tx_type]) + payload


def log_bloom(logs: Sequence[Log]) -> int:
    bloom = BloomFilter()
    for address, topics, _ in logs:
        bloom.add(address)
        for topic in topics:
            bloom.add(topic.to_bytes(32, "big"))
    return int(bloom)


def build_receipts(block: Block, results: Sequence[TxResult]) -> list[Receipt]:
    """The block's receipts from its final results, in block order."""
    receipts, cumulative = [], 0
    for tx, result in zip(block.transactions, results):
        cumulative += result.gas_used
        receipts.append(Receipt(tx.type, result.success, cumulative, result.gas_used, result.logs, log_bloom(result.logs)))
    return receipts


def receipts_root(block: Block, receipts: Sequence[Receipt]) -> bytes:
    """The root of the receipts trie (key: RLP of the index)."""
    with_status = has_receipt_status(block.number)
    return trie_root([receipt.encode(with_status) for receipt in receipts])


def trie_root(items: Sequence[bytes]) -> bytes:
    """The root of a list trie (key: RLP of the index), as transactionsRoot and receiptsRoot use.

    Built in one pass over the sorted keys, without a node database: the same root as
    ``trie.HexaryTrie`` (the tests compare them), ten times faster: it computes every receipts
    root that verification checks, and the generator's transactions roots.
    """
    entries = sorted((_nibbles(rlp.encode(index)), item) for index, item in enumerate(items))
    return keccak(rlp.encode(_trie_node(entries, 0))) if entries else EMPTY_TRIE_ROOT


def _nibbles(key: bytes) -> bytes:
    return bytes(half for byte in key for half in (byte >> 4, byte & 0x0F))


def _trie_node(entries: list[tuple[bytes, bytes]], depth: int) -> Any:
    """The node holding ``entries`` (sorted, sharing their first ``depth`` nibbles)."""
    if len(entries) == 1:
        key, value = entries[0]
        return [_hex_prefix(key[depth:], leaf=True), value]
    first, last = entries[0][0], entries[-1][0]  # sorted: their common prefix is everyone's
    shared = 0
    while depth + shared < min(len(first), len(last)) and first[depth + shared] == last[depth + shared]:
        shared += 1
    if shared:
        return [_hex_prefix(first[depth : depth + shared], leaf=False), _trie_ref(_trie_node(entries, depth + shared))]
    branch: list[Any] = [b""] * 17
    groups: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in entries:
        if len(key) == depth:
            branch[16] = value  # a key ending here (RLP index keys are prefix-free: never, in fact)
        else:
            groups.setdefault(key[depth], []).append((key, value))
    for nibble, group in groups.items():
        branch[nibble] = _trie_ref(_trie_node(group, depth + 1))
    return branch


def _trie_ref(node: Any) -> Any:
    """How a parent refers to a child: inline under 32 bytes of RLP, else by hash."""
    encoded = rlp.encode(node)
    return node if len(encoded) < 32 else keccak(encoded)


def _hex_prefix(nibbles: bytes, leaf: bool) -> bytes:
    """The compact (hex-prefix) encoding of a leaf's or an extension's key part."""
    flag = 2 if leaf else 0
    if len(nibbles) % 2:
        nibbles = bytes([flag + 1]) + nibbles
    else:
        nibbles = bytes([flag, 0]) + nibbles
    return bytes(nibbles[i] << 4 | nibbles[i + 1] for i in range(0, len(nibbles), 2))


def block_bloom(receipts: Sequence[Receipt]) -> int:
    bloom = 0
    for receipt in receipts:
        bloom |= receipt.bloom
    return bloom
