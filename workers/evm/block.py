"""Loading a block with its pre-state, from a directory or from a single-file bundle.

The directory format is the one of ``../shared/data/README.md``: ``block.json.gz`` (the block as
``eth_getBlockByNumber(n, true)`` returns it), ``pre_state.json.gz`` and, when BLOCKHASH is used,
``block_hashes.json.gz``. A *bundle* is the same three documents in one gzipped JSON object
(``{"block": ..., "pre_state": ..., "block_hashes": ...}``): what a job artifact holds.

Everything is checked on load, and a bad input raises `MalformedBlock` naming the field:

>>> parse_block({"number": "0x1"}, {}, {})
Traceback (most recent call last):
...
workers.evm.errors.MalformedBlock: block.hash: missing
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth_hash.auto import keccak

from .errors import MalformedBlock
from .forks import fork_of
from .state import Account, PreState

BLOCK_FILE, PRE_STATE_FILE, BLOCK_HASHES_FILE = "block.json.gz", "pre_state.json.gz", "block_hashes.json.gz"
EMPTY_CODE_HASH = keccak(b"")


@dataclass(frozen=True)
class Header:
    """The header fields execution needs, plus the values verification checks."""

    number: int
    hash: bytes
    coinbase: bytes
    timestamp: int
    difficulty: int
    mix_hash: bytes
    gas_limit: int
    gas_used: int
    logs_bloom: int
    receipts_root: bytes
    base_fee: int | None
    excess_blob_gas: int | None
    parent_beacon_root: bytes | None
    chain_id: int

    @property
    def fork(self) -> str:
        return fork_of(self.number)


@dataclass(frozen=True)
class Transaction:
    """One transaction: its canonical encoding (what py-evm decodes), sender, hash and gas limit."""

    index: int
    type: int
    hash: bytes
    sender: bytes
    to: bytes | None
    gas: int
    raw: bytes


@dataclass(frozen=True)
class Block:
    header: Header
    transactions: tuple[Transaction, ...]
    pre_state: PreState
    block_hashes: Mapping[int, bytes]

    @property
    def number(self) -> int:
        return self.header.number


def load_block(path: str | Path) -> Block:
    """Load a block directory (``block.json.gz`` + ``pre_state.json.gz`` + ...) or a bundle file."""
    path = Path(path)
    if path.is_file():
        return load_bundle(path.read_bytes(), source=str(path))
    if not path.is_dir():
        raise MalformedBlock(str(path), "no such block directory or bundle file")
    block = _read_json(path / BLOCK_FILE, required=True)
    pre_state = _read_json(path / PRE_STATE_FILE, required=True)
    block_hashes = _read_json(path / BLOCK_HASHES_FILE, required=False) or {}
    return parse_block(block, pre_state, block_hashes)


def load_bundle(data: bytes, source: str = "bundle") -> Block:
    """Parse a bundle (gzipped or plain JSON ``{"block", "pre_state", "block_hashes"}``)."""
    document = _decode_json(data, source)
    if not isinstance(document, dict) or "block" not in document or "pre_state" not in document:
        raise MalformedBlock(source, 'a bundle is a JSON object with "block" and "pre_state"')
    return parse_block(document["block"], document["pre_state"], document.get("block_hashes") or {})


def load_bundle_header(data: bytes, source: str = "bundle") -> Header:
    """Only the header of a bundle: what the marketplace checks a provider's result against,
    without parsing the transactions and the state."""
    document = _decode_json(data, source)
    if not isinstance(document, dict) or not isinstance(document.get("block"), dict):
        raise MalformedBlock(source, 'a bundle is a JSON object with "block" and "pre_state"')
    return _parse_header(document["block"])


def bundle_directory(path: str | Path) -> bytes:
    """The bundle (gzipped JSON) of a block directory: one file that a job artifact can carry."""
    path = Path(path)
    document = {
        "block": _read_json(path / BLOCK_FILE, required=True),
        "pre_state": _read_json(path / PRE_STATE_FILE, required=True),
        "block_hashes": _read_json(path / BLOCK_HASHES_FILE, required=False) or {},
    }
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)


def parse_block(block: Any, pre_state: Any, block_hashes: Any) -> Block:
    """Check and convert the three JSON documents into a `Block`."""
    if not isinstance(block, dict):
        raise MalformedBlock("block", "must be a JSON object")
    header = _parse_header(block)
    transactions = _parse_transactions(block, header)
    accounts = _parse_pre_state(pre_state)
    hashes = _parse_block_hashes(block_hashes, header.number)
    _check_consistency(header, transactions)
    _apply_beacon_root(header, accounts)
    return Block(header, tuple(transactions), PreState(accounts), hashes)


# Header --------------------------------------------------------------------------------------


def _parse_header(block: dict[str, Any]) -> Header:
    number = _int(block, "number", "block.number")
    base_fee = _int(block, "baseFeePerGas", "block.baseFeePerGas") if "baseFeePerGas" in block else None
    excess = _int(block, "excessBlobGas", "block.excessBlobGas") if "excessBlobGas" in block else None
    beacon = _bytes(block, "parentBeaconBlockRoot", "block.parentBeaconBlockRoot", 32) if "parentBeaconBlockRoot" in block else None
    header = Header(
        number=number,
        hash=_bytes(block, "hash", "block.hash", 32),
        coinbase=_bytes(block, "miner", "block.miner", 20),
        timestamp=_int(block, "timestamp", "block.timestamp"),
        difficulty=_int(block, "difficulty", "block.difficulty"),
        mix_hash=_bytes(block, "mixHash", "block.mixHash", 32),
        gas_limit=_int(block, "gasLimit", "block.gasLimit"),
        gas_used=_int(block, "gasUsed", "block.gasUsed"),
        logs_bloom=int.from_bytes(_bytes(block, "logsBloom", "block.logsBloom", 256), "big"),
        receipts_root=_bytes(block, "receiptsRoot", "block.receiptsRoot", 32),
        base_fee=base_fee,
        excess_blob_gas=excess,
        parent_beacon_root=beacon,
        chain_id=_int(block, "chainId", "block.chainId") if "chainId" in block else 1,
    )
    _check_fork_fields(header)
    return header


def _check_fork_fields(header: Header) -> None:
    fork = header.fork
    london = fork not in _PRE_LONDON
    if london and header.base_fee is None:
        raise MalformedBlock("block.baseFeePerGas", f"missing: required from London on ({fork} block)")
    if fork == "cancun" and header.excess_blob_gas is None:
        raise MalformedBlock("block.excessBlobGas", "missing: required from Cancun on")
    if header.gas_used > header.gas_limit:
        raise MalformedBlock("block.gasUsed", f"{header.gas_used} is over the block gas limit {header.gas_limit}")


_PRE_LONDON = frozenset(
    "frontier homestead tangerine_whistle spurious_dragon byzantium petersburg istanbul muir_glacier berlin".split()
)


def allowed_types(fork: str) -> set[int]:
    """The transaction types (EIP-2718) valid in a fork: access lists from Berlin, EIP-1559 from
    London, blobs from Cancun."""
    if fork in _PRE_LONDON:
        return {0, 1} if fork == "berlin" else {0}
    return {0, 1, 2, 3} if fork == "cancun" else {0, 1, 2}


# Transactions --------------------------------------------------------------------------------


def _parse_transactions(block: dict[str, Any], header: Header) -> list[Transaction]:
    raw_list = block.get("transactions")
    if not isinstance(raw_list, list):
        raise MalformedBlock("block.transactions", "missing or not a list")
    return [_parse_transaction(item, index, header) for index, item in enumerate(raw_list)]


def _parse_transaction(item: Any, index: int, header: Header) -> Transaction:
    where = f"transactions[{index}]"
    if not isinstance(item, dict):
        raise MalformedBlock(where, "must be a full transaction object (eth_getBlockByNumber(n, true))")
    tx_type = _int(item, "type", f"{where}.type") if "type" in item else 0
    if tx_type not in allowed_types(header.fork):
        raise MalformedBlock(f"{where}.type", f"type {tx_type} is not valid in {header.fork}")
    raw = _encode_transaction(item, tx_type, where)
    tx_hash = keccak(raw)
    if item.get("hash") is not None and _bytes(item, "hash", f"{where}.hash", 32) != tx_hash:
        raise MalformedBlock(f"{where}.hash", "does not match the transaction's fields")
    to = _optional_address(item, "to", f"{where}.to")
    gas = _int(item, "gas", f"{where}.gas")
    if gas > header.gas_limit:
        raise MalformedBlock(f"{where}.gas", f"{gas} is over the block gas limit {header.gas_limit}")
    sender = _bytes(item, "from", f"{where}.from", 20)
    return Transaction(index=index, type=tx_type, hash=tx_hash, sender=sender, to=to, gas=gas, raw=raw)


def _encode_transaction(item: dict[str, Any], tx_type: int, where: str) -> bytes:
    """The canonical (signed) encoding, rebuilt from the JSON fields."""

    def num(name: str) -> int:
        return _int(item, name, f"{where}.{name}")

    to = _optional_address(item, "to", f"{where}.to") or b""
    data = _bytes(item, "input", f"{where}.input")
    if tx_type == 0:
        fields = [num("nonce"), num("gasPrice"), num("gas"), to, num("value"), data, num("v"), num("r"), num("s")]
        return rlp.encode(fields)
    access_list = _access_list(item.get("accessList", []), f"{where}.accessList")
    y_parity = num("yParity") if "yParity" in item else num("v")
    head = [num("chainId"), num("nonce")]
    if tx_type == 1:
        body = head + [num("gasPrice"), num("gas"), to, num("value"), data, access_list]
    else:
        body = head + [num("maxPriorityFeePerGas"), num("maxFeePerGas"), num("gas"), to, num("value"), data, access_list]
    if tx_type == 3:
        hashes = item.get("blobVersionedHashes")
        if not isinstance(hashes, list):
            raise MalformedBlock(f"{where}.blobVersionedHashes", "missing or not a list")
        blob_hashes = [_hex_bytes(h, f"{where}.blobVersionedHashes[{i}]", 32) for i, h in enumerate(hashes)]
        body += [num("maxFeePerBlobGas"), blob_hashes]
    return bytes([tx_type]) + rlp.encode(body + [y_parity, num("r"), num("s")])


def _access_list(value: Any, where: str) -> list[list[Any]]:
    if not isinstance(value, list):
        raise MalformedBlock(where, "must be a list")
    entries = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("storageKeys", []), list):
            raise MalformedBlock(f"{where}[{i}]", "must be {address, storageKeys}")
        address = _bytes(entry, "address", f"{where}[{i}].address", 20)
        keys = [_hex_bytes(k, f"{where}[{i}].storageKeys[{j}]", 32) for j, k in enumerate(entry.get("storageKeys", []))]
        entries.append([address, keys])
    return entries


# Pre-state and block hashes ------------------------------------------------------------------


def _parse_pre_state(pre_state: Any) -> dict[bytes, Account]:
    if not isinstance(pre_state, dict):
        raise MalformedBlock("pre_state", "must be a JSON object {address: account}")
    return {_hex_bytes(address, f"pre_state[{address!r}]", 20): _parse_account(value, address) for address, value in pre_state.items()}


def _parse_account(value: Any, address: str) -> Account:
    where = f"pre_state[{address}]"
    if not isinstance(value, dict):
        raise MalformedBlock(where, "must be an object {balance, nonce, code?, storage?}")
    code = _bytes(value, "code", f"{where}.code") if "code" in value else b""
    declared_hash = value.get("codeHash", value.get("code_hash"))
    if declared_hash is not None:
        expected = _hex_bytes(declared_hash, f"{where}.codeHash", 32)
        if expected != EMPTY_CODE_HASH and "code" not in value:
            raise MalformedBlock(f"{where}.code", "missing: the account has a code hash but no code")
        if keccak(code) != expected:
            raise MalformedBlock(f"{where}.code", "does not match the account's code hash")
    storage = value.get("storage") or {}
    if not isinstance(storage, dict):
        raise MalformedBlock(f"{where}.storage", "must be an object {slot: value}")
    slots = {_hex_int(slot, f"{where}.storage[{slot}]"): _hex_int(v, f"{where}.storage[{slot}]") for slot, v in storage.items()}
    return Account(
        balance=_int(value, "balance", f"{where}.balance"),
        nonce=_int(value, "nonce", f"{where}.nonce"),
        code=code,
        storage={slot: v for slot, v in slots.items() if v},
    )


def _parse_block_hashes(block_hashes: Any, number: int) -> dict[int, bytes]:
    if not isinstance(block_hashes, dict):
        raise MalformedBlock("block_hashes", "must be a JSON object {number: hash}")
    hashes = {}
    for key, value in block_hashes.items():
        where = f"block_hashes[{key}]"
        try:
            ancestor = int(key, 0) if isinstance(key, str) and key.startswith("0x") else int(key)
        except ValueError:
            raise MalformedBlock(where, "the key must be a block number") from None
        if not number - 256 <= ancestor < number:
            raise MalformedBlock(where, f"block {ancestor} is not one of the 256 ancestors of block {number}")
        hashes[ancestor] = _hex_bytes(value, where, 32)
    return hashes


def _check_consistency(header: Header, transactions: list[Transaction]) -> None:
    if not transactions and header.gas_used:
        raise MalformedBlock("block.gasUsed", "a block without transactions cannot use gas")


BEACON_ROOTS_ADDRESS = bytes.fromhex("000f3df6d732807ef1319fb7b8bb8522d0beac02")
HISTORY_BUFFER_LENGTH = 8191


def _apply_beacon_root(header: Header, accounts: dict[bytes, Account]) -> None:
    """EIP-4788: from Cancun on, a system call stores the parent beacon root before the first
    transaction. It writes two slots of the beacon-roots contract and nothing else, so it is folded
    into the pre-state here (only when the pre-state holds the contract: otherwise no transaction
    reads it)."""
    contract = accounts.get(BEACON_ROOTS_ADDRESS)
    if header.fork != "cancun" or header.parent_beacon_root is None or contract is None or not contract.code:
        return
    slot = header.timestamp % HISTORY_BUFFER_LENGTH
    storage = dict(contract.storage)
    storage[slot] = header.timestamp
    storage[slot + HISTORY_BUFFER_LENGTH] = int.from_bytes(header.parent_beacon_root, "big")
    accounts[BEACON_ROOTS_ADDRESS] = Account(contract.balance, contract.nonce, contract.code, storage)


# Field helpers -------------------------------------------------------------------------------


def _read_json(path: Path, required: bool) -> Any:
    if not path.exists():
        if required:
            raise MalformedBlock(path.name, f"missing file {path}")
        return None
    return _decode_json(path.read_bytes(), path.name)


def _decode_json(data: bytes, source: str) -> Any:
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return json.loads(data)
    except (OSError, EOFError, ValueError) as exc:
        raise MalformedBlock(source, f"not valid (gzipped) JSON: {exc}") from None


def _int(mapping: Mapping[str, Any], name: str, where: str) -> int:
    if name not in mapping or mapping[name] is None:
        raise MalformedBlock(where, "missing")
    return _hex_int(mapping[name], where)


def _hex_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise MalformedBlock(where, "must be a number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value, 16) if value[:2] in ("0x", "0X") else int(value)
        except ValueError:
            raise MalformedBlock(where, f"not a number: {value[:40]!r}") from None
    else:
        raise MalformedBlock(where, "must be a hex string or an integer")
    if number < 0 or number >= 2**256:
        raise MalformedBlock(where, "out of range (0 .. 2**256-1)")
    return number


def _bytes(mapping: Mapping[str, Any], name: str, where: str, length: int | None = None) -> bytes:
    if name not in mapping or mapping[name] is None:
        raise MalformedBlock(where, "missing")
    return _hex_bytes(mapping[name], where, length)


def _hex_bytes(value: Any, where: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedBlock(where, "must be a 0x-prefixed hex string")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedBlock(where, "not valid hex") from None
    if length is not None and len(data) != length:
        raise MalformedBlock(where, f"must be {length} bytes, got {len(data)}")
    return data


def _optional_address(mapping: Mapping[str, Any], name: str, where: str) -> bytes | None:
    if mapping.get(name) is None:
        return None
    return _bytes(mapping, name, where, 20)
