"""Small hand-assembled blocks for the differential fuzz test of the native engine (test_native_fuzz).

A `BlockSpec` is everything a block needs, as plain data: the fork, base fee and excess blob gas,
the coinbase, the code, balance, nonce and storage of the fuzzed contracts, and the transactions
(`TxSpec`: sender, target, value, gas, type, fees, access list, blobs, nonce offset, a high-s
signature, a creation collision). `build_block` turns it into a `workers.evm.block.Block` with
`workers.evm.generate`'s signers and header (real signatures: legacy ones without a chain id
before EIP-155 or when asked), and `compare_engines` runs it through the reference and native
engines and lists every difference (`workers.evm.native.diff_result` lines).

The world every block runs in (fixed addresses, so that a failing spec reads by itself):

- ``CONTRACTS[0..3]`` (C0..C3): the fuzzed programs (`Asm` bytecode built from random actions);
- library contracts: `REVERTER`, `INVALIDER`, `OOGER` (each stores, logs and then fails its own
  way), `SUICIDE` (self-destructs to the address in its calldata), `STORER` (stores 1 + CALLVALUE
  at the slot in its calldata), `LOGGER` (logs, returns its calldata);
- plain accounts: `EOA` (funded, no code), `EMPTY` (exists, empty under EIP-161), `STORAGE_ONLY`
  (empty but with storage), `NONEXISTENT` and `FRESH` (not in the pre-state), the precompiles
  1..10 (1 holds dust, 3 exists and is empty: EIP-716), the coinbase;
- `create2_targets()`: the CREATE2 addresses C0 and C1 can create (named CREATED0..7), so that a
  later call or transaction can touch a contract created (and perhaps self-destructed) earlier in
  the block; CREATED2 already holds a balance and storage, CREATED3 a nonce (a collision).

Senders: `senders()` 0..2 and 4..19 are rich (10 ether), 3 is poor (0.001 ether: 20 gwei x 100,000 gas is more).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import rlp
from eth_hash.auto import keccak

from workers.evm.block import Block, parse_block
from workers.evm.errors import EvmError, InvalidTransaction
from workers.evm.forks import FORKS
from workers.evm.generate import (
    BASE_FEE,
    CHAIN_ID,
    EIP155_BLOCK,
    ETHER,
    GWEI,
    MIN_BLOCK_GAS_LIMIT,
    SENDER_FUNDS,
    Signer,
    at_least,
    header_fields,
    signer,
)
from workers.evm.native import NativeEngine, diff_result, diff_results
from workers.evm.reference import ReferenceEngine
from workers.evm.state import SequentialState

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SEED = 4242  # the generator's key seed: the senders (and their prior nonces) are fixed
FORK_NUMBERS: dict[str, int] = {name: start + 300 for start, name in FORKS}  # 300: a full BLOCKHASH window
FUZZED_FORKS = (
    "frontier",
    "homestead",
    "tangerine_whistle",
    "spurious_dragon",
    "byzantium",
    "petersburg",
    "istanbul",
    "berlin",
    "london",
    "paris",
    "shanghai",
    "cancun",
)

# Opcodes ------------------------------------------------------------------------------------------

OP: dict[str, int] = {
    "STOP": 0x00, "ADD": 0x01, "MUL": 0x02, "SUB": 0x03, "LT": 0x10, "EQ": 0x14, "ISZERO": 0x15, "SHL": 0x1B,
    "SHA3": 0x20, "ADDRESS": 0x30, "BALANCE": 0x31, "ORIGIN": 0x32, "CALLER": 0x33, "CALLVALUE": 0x34,
    "CALLDATALOAD": 0x35, "CALLDATASIZE": 0x36, "CODESIZE": 0x38, "CODECOPY": 0x39, "GASPRICE": 0x3A,
    "EXTCODESIZE": 0x3B, "EXTCODECOPY": 0x3C, "RETURNDATASIZE": 0x3D, "RETURNDATACOPY": 0x3E,
    "EXTCODEHASH": 0x3F, "BLOCKHASH": 0x40, "COINBASE": 0x41, "TIMESTAMP": 0x42, "NUMBER": 0x43,
    "DIFFICULTY": 0x44, "GASLIMIT": 0x45, "CHAINID": 0x46, "SELFBALANCE": 0x47, "BASEFEE": 0x48,
    "BLOBHASH": 0x49, "BLOBBASEFEE": 0x4A, "POP": 0x50, "MLOAD": 0x51, "MSTORE": 0x52, "MSTORE8": 0x53,
    "SLOAD": 0x54, "SSTORE": 0x55, "JUMP": 0x56, "JUMPI": 0x57, "PC": 0x58, "MSIZE": 0x59, "GAS": 0x5A,
    "JUMPDEST": 0x5B, "TLOAD": 0x5C, "TSTORE": 0x5D, "MCOPY": 0x5E, "PUSH0": 0x5F,
    "LOG0": 0xA0, "LOG1": 0xA1, "LOG2": 0xA2, "LOG3": 0xA3, "LOG4": 0xA4,
    "CREATE": 0xF0, "CALL": 0xF1, "CALLCODE": 0xF2, "RETURN": 0xF3, "DELEGATECALL": 0xF4, "CREATE2": 0xF5,
    "STATICCALL": 0xFA, "REVERT": 0xFD, "INVALID": 0xFE, "SELFDESTRUCT": 0xFF,
}  # fmt: skip
OP.update({f"DUP{n}": 0x7F + n for n in range(1, 17)})
OP.update({f"SWAP{n}": 0x8F + n for n in range(1, 17)})


class Asm:
    """A tiny assembler: ``Asm().push(1).push(0).op("SSTORE").code``. Never emits PUSH0 (it
    only exists from Shanghai) unless asked for with ``op("PUSH0")``."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def op(self, *names: str) -> Asm:
        for name in names:
            self.buffer.append(OP[name])
        return self

    def push(self, value: int | bytes) -> Asm:
        data = value if isinstance(value, bytes) else value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
        if not 1 <= len(data) <= 32:
            raise ValueError(f"cannot push {len(data)} bytes")
        self.buffer.append(0x5F + len(data))
        self.buffer += data
        return self

    def raw(self, data: bytes) -> Asm:
        self.buffer += data
        return self

    def mstore_bytes(self, offset: int, data: bytes) -> Asm:
        """Write ``data`` into memory at ``offset`` (32-byte words; the tail of the last word is zero)."""
        for start in range(0, len(data), 32):
            self.push(data[start : start + 32].ljust(32, b"\x00")).push(offset + start).op("MSTORE")
        return self

    @property
    def code(self) -> bytes:
        return bytes(self.buffer)


def asm() -> Asm:
    return Asm()


# Addresses ----------------------------------------------------------------------------------------


def _address(prefix: str, n: int = 0) -> bytes:
    return bytes.fromhex(prefix.ljust(38, "0") + f"{n:02x}")


CONTRACTS = tuple(_address("c0ffee", i) for i in range(4))
REVERTER = _address("7e7e7e")
INVALIDER = _address("fefefe")
OOGER = _address("0066")
SUICIDE = _address("5d5d5d")
STORER = _address("57057e")
LOGGER = _address("10661e")
EOA = _address("e0a0")
STORAGE_ONLY = _address("5707")  # nonce 0, no code, no balance, but storage: EIP-161 deletes it when touched
EMPTY = _address("e3e3")
NONEXISTENT = _address("abce")
FRESH = _address("f5e5")
PRECOMPILES = tuple(bytes(19) + bytes([n]) for n in range(1, 11))
COINBASE_FRESH = _address("c01b")  # the default coinbase: not in the pre-state
POOR_FUNDS = 10**15  # the poor sender: 21,000 gas at 20 gwei is affordable, 100,000 is not

NAMES: dict[bytes, str] = {
    **{address: f"C{i}" for i, address in enumerate(CONTRACTS)},
    REVERTER: "REVERTER", INVALIDER: "INVALIDER", OOGER: "OOGER", SUICIDE: "SUICIDE", STORER: "STORER",
    LOGGER: "LOGGER", EOA: "EOA", STORAGE_ONLY: "STORAGE_ONLY", EMPTY: "EMPTY", NONEXISTENT: "NONEXISTENT", FRESH: "FRESH",
    COINBASE_FRESH: "COINBASE",
    **{address: f"PRECOMPILE{n + 1}" for n, address in enumerate(PRECOMPILES)},
}  # fmt: skip


def name_of(address: bytes | str | None) -> str:
    if address is None:
        return "CREATE"
    if isinstance(address, str):
        return address  # "sender", "origin", "caller", ...
    return NAMES.get(address, "0x" + address.hex())


SENDERS = 20


@lru_cache(maxsize=1)
def senders() -> list[Signer]:
    """Rich senders (0..2, and 4..19 for long blocks) and a poor one (3), with their varied prior nonces."""
    return [signer(SEED, i) for i in range(SENDERS)]


# Code snippets ------------------------------------------------------------------------------------

# Runtimes a creation can deploy.
RUNTIME_SUICIDE = asm().push(0).op("CALLDATALOAD", "SELFDESTRUCT").code  # beneficiary = calldata
RUNTIME_STORE = asm().op("CALLVALUE").push(1).op("SSTORE").push(0).push(0).op("LOG0", "STOP").code
RUNTIME_EF = bytes.fromhex("ef00")


def _store_and_log() -> Asm:
    return asm().push(1).push(0).op("SSTORE").push(0).push(0).op("LOG0")


def _deploy(runtime: bytes) -> bytes:
    """Init code: store slot 0 = 1, then return ``runtime`` (at most 32 bytes)."""
    return _store_and_log().push(runtime).push(0).op("MSTORE").push(len(runtime)).push(32 - len(runtime)).op("RETURN").code


INIT_CODES: dict[str, bytes] = {
    "deploy_suicide": _deploy(RUNTIME_SUICIDE),
    "deploy_store": _deploy(RUNTIME_STORE),
    "deploy_ef": _deploy(RUNTIME_EF),  # rejected from London on (EIP-3541)
    "deploy_too_large": _store_and_log().push(24_577).push(0).op("RETURN").code,  # EIP-170 from Spurious Dragon
    "empty": _store_and_log().op("STOP").code,
    "revert": _store_and_log().push(7).push(0).op("MSTORE").push(32).push(0).op("REVERT").code,
    "invalid": _store_and_log().op("INVALID").code,
    "oog": _store_and_log().push(0xFFFFFFFF).op("MLOAD").code,
    "selfdestruct": _store_and_log().op("CALLER", "SELFDESTRUCT").code,
    "selfdestruct_fresh": _store_and_log().push(FRESH).op("SELFDESTRUCT").code,
    "selfdestruct_self": _store_and_log().op("ADDRESS", "SELFDESTRUCT").code,  # burns the endowment
    # A nested call (STORER, slot 0, forwarding the endowment) before deploying.
    "call_deploy": asm().push(0).push(0).push(32).push(0).op("CALLVALUE").push(STORER)
    .op("GAS", "CALL", "POP").raw(_deploy(RUNTIME_STORE)).code,
}

LIBRARY: dict[bytes, bytes] = {
    REVERTER: _store_and_log().push(0xBEEF).push(0).op("MSTORE").push(32).push(0).op("REVERT").code,
    INVALIDER: _store_and_log().op("INVALID").code,
    OOGER: _store_and_log().push(0xFFFFFFFF).op("MLOAD").code,
    SUICIDE: RUNTIME_SUICIDE,
    STORER: asm().push(1).op("CALLVALUE", "ADD").push(0).op("CALLDATALOAD", "SSTORE", "STOP").code,
    LOGGER: asm().push(0).op("CALLDATALOAD").push(0).op("MSTORE").push(0xA).push(0xB).push(32).push(0)
    .op("LOG2").push(32).push(0).op("RETURN").code,
}


def create_address(sender: bytes, nonce: int) -> bytes:
    return keccak(rlp.encode([sender, nonce]))[12:]


def create2_address(sender: bytes, salt: int, init_code: bytes) -> bytes:
    return keccak(b"\xff" + sender + salt.to_bytes(32, "big") + keccak(init_code))[12:]


CREATE2_SALTS = (0, 1)
MAX_INITCODE_SIZE = 49_152  # EIP-3860


def create2_targets() -> list[bytes]:
    """The CREATE2 addresses the fuzzed contracts can create with a deploying init code."""
    return [
        create2_address(contract, salt, INIT_CODES[kind])
        for contract in CONTRACTS[:2]
        for salt in CREATE2_SALTS
        for kind in ("deploy_suicide", "deploy_store")
    ]


for _i, _target in enumerate(create2_targets()):
    NAMES[_target] = f"CREATED{_i}"


def intrinsic_gas(fork: str, to: bytes | None, data: bytes, access_list: Sequence[tuple[bytes, Sequence[int]]] = ()) -> int:
    """A transaction's intrinsic gas in ``fork`` (what a gas limit must cover for it to be valid)."""
    number = FORK_NUMBERS[fork]
    zeros = data.count(0)
    gas = 21_000 + 4 * zeros + (16 if at_least(number, "istanbul") else 68) * (len(data) - zeros)
    if to is None:
        gas += 32_000 if at_least(number, "homestead") else 0  # (py-evm charges EIP-3860's initcode words later)
    return gas + sum(2_400 + 1_900 * len(slots) for _, slots in access_list)


# Specs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractSpec:
    address: bytes
    code: bytes
    balance: int = 0
    storage: tuple[tuple[int, int], ...] = ()
    nonce: int = 1
    listing: tuple[str, ...] = ()  # the actions the code was built from (for reports)

    def __repr__(self) -> str:
        lines = "; ".join(self.listing) if self.listing else "0x" + self.code.hex()
        return (
            f"ContractSpec({name_of(self.address)}, balance={self.balance}, nonce={self.nonce}, "
            f"storage={dict(self.storage)}, code=[{lines}])"
        )


@dataclass(frozen=True)
class TxSpec:
    sender: int  # index into senders()
    to: bytes | str | None  # None: a contract creation; "sender": the sender itself
    value: int = 0
    gas: int = 200_000
    data: bytes = b""
    tx_type: int = 0
    nonce_delta: int = 0  # added to the right nonce: non-zero makes the transaction invalid
    gas_price: int | None = None  # types 0 and 1 (None: a default valid for the fork)
    max_fee: int | None = None  # types 2 and 3
    tip: int | None = None
    access_list: tuple[tuple[bytes, tuple[int, ...]], ...] = ()
    blob_hashes: tuple[bytes, ...] = ()
    max_fee_per_blob_gas: int = 1
    eip155: bool = True  # legacy transactions from Spurious Dragon on: sign with the chain id
    # A creation whose address already holds an account: "nonce" or "code" (a collision), or
    # "storage" or "balance" only (no collision: EIP-7610 is not in these forks).
    collide: str = ""
    high_s: bool = False  # the signature's malleable twin (s > N/2): invalid from Homestead on (EIP-2)

    def __repr__(self) -> str:
        parts = [f"sender={self.sender}", f"to={name_of(self.to)}"]
        for name in ("value", "gas", "data", "tx_type", "nonce_delta", "gas_price", "max_fee", "tip",
                     "access_list", "blob_hashes", "max_fee_per_blob_gas", "eip155", "collide", "high_s"):
            value = getattr(self, name)
            default = TxSpec.__dataclass_fields__[name].default
            if value != default:
                if name == "data":
                    value = "0x" + value.hex() if len(value) <= 64 else f"0x{value[:32].hex()}... ({len(value)} bytes)"
                elif name == "blob_hashes":
                    value = ["0x" + h.hex() for h in value]
                elif name == "access_list":
                    value = [(name_of(a), list(s)) for a, s in value]
                parts.append(f"{name}={value}")
        return f"TxSpec({', '.join(parts)})"


@dataclass(frozen=True)
class BlockSpec:
    fork: str
    contracts: tuple[ContractSpec, ...] = ()
    txs: tuple[TxSpec, ...] = ()
    coinbase: bytes = COINBASE_FRESH
    extra_accounts: tuple[ContractSpec, ...] = ()  # e.g. a collision target
    base_fee: int = BASE_FEE  # London on
    excess_blob_gas: int = 0  # Cancun

    @property
    def blob_base_fee(self) -> int:
        return blob_base_fee(self.excess_blob_gas)

    @property
    def number(self) -> int:
        return FORK_NUMBERS[self.fork]

    def __repr__(self) -> str:
        lines = [f"BlockSpec(fork={self.fork!r}, coinbase={name_of(self.coinbase)}, base_fee={self.base_fee}, "
                 f"excess_blob_gas={self.excess_blob_gas},"]
        lines += [f"  {contract!r}," for contract in self.contracts + self.extra_accounts]
        lines += [f"  {tx!r}," for tx in self.txs]
        return "\n".join(lines) + ")"


# Blocks -----------------------------------------------------------------------------------------


def block_hashes(number: int) -> dict[int, bytes]:
    """The ancestors BLOCKHASH may ask for: the last two and the oldest of the window."""
    return {n: keccak(f"fuzz-ancestor-{n}".encode()) for n in (number - 1, number - 2, number - 256)}


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _account_json(balance: int, nonce: int, code: bytes = b"", storage: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    return {
        "balance": hex(balance),
        "nonce": hex(nonce),
        "code": _hex(code),
        "storage": {hex(slot): hex(value) for slot, value in storage},
    }


def pre_state_json(spec: BlockSpec) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for index, account in enumerate(senders()):
        state[_hex(account.address)] = _account_json(POOR_FUNDS if index == 3 else SENDER_FUNDS, account.nonce)
    for address, code in LIBRARY.items():
        state[_hex(address)] = _account_json(10**6, 1, code)
    state[_hex(EOA)] = _account_json(ETHER, 5)
    state[_hex(EMPTY)] = _account_json(0, 0)
    state[_hex(STORAGE_ONLY)] = _account_json(0, 0, b"", ((0, 1), (1, 2)))
    state[_hex(PRECOMPILES[0])] = _account_json(1, 0)  # precompiles hold dust on mainnet
    state[_hex(PRECOMPILES[2])] = _account_json(0, 0)  # and RIPEMD-160 was once empty (EIP-716)
    targets = create2_targets()
    state[_hex(targets[2])] = _account_json(7, 0, b"", ((0, 5), (5, 5)))  # a CREATE2 target with balance and storage
    state[_hex(targets[3])] = _account_json(0, 1)  # a CREATE2 target that collides (nonce 1)
    for contract in spec.contracts + spec.extra_accounts:
        state[_hex(contract.address)] = _account_json(contract.balance, contract.nonce, contract.code, contract.storage)
    return state


def sign(tx: TxSpec, nonce: int, number: int, sender: Signer) -> dict[str, Any]:
    """The JSON transaction (eth_getBlockByNumber(n, true) style) of ``tx``, signed by ``sender``."""
    to = tx.to or b""
    access_list = [[address, [slot.to_bytes(32, "big") for slot in slots]] for address, slots in tx.access_list]
    fields: dict[str, Any] = {"type": hex(tx.tx_type)}
    if tx.tx_type == 0:
        gas_price = tx.gas_price if tx.gas_price is not None else default_gas_price_at(number)
        unsigned = [nonce, gas_price, tx.gas, to, tx.value, tx.data]
        eip155 = tx.eip155 and number >= EIP155_BLOCK
        signature = sender.key.sign_msg_hash(keccak(rlp.encode(unsigned + [CHAIN_ID, 0, 0] if eip155 else unsigned)))
        v = signature.v + (35 + 2 * CHAIN_ID if eip155 else 27)
        fields.update(gasPrice=hex(gas_price), v=hex(v))
    else:
        if tx.tx_type == 1:
            gas_price = tx.gas_price if tx.gas_price is not None else default_gas_price_at(number)
            unsigned = [CHAIN_ID, nonce, gas_price, tx.gas, to, tx.value, tx.data, access_list]
            fields.update(gasPrice=hex(gas_price))
        else:
            tip = tx.tip if tx.tip is not None else GWEI
            max_fee = tx.max_fee if tx.max_fee is not None else 2 * BASE_FEE + tip
            unsigned = [CHAIN_ID, nonce, tip, max_fee, tx.gas, to, tx.value, tx.data, access_list]
            fields.update(maxPriorityFeePerGas=hex(tip), maxFeePerGas=hex(max_fee))
            if tx.tx_type == 3:
                unsigned += [tx.max_fee_per_blob_gas, list(tx.blob_hashes)]
                fields.update(maxFeePerBlobGas=hex(tx.max_fee_per_blob_gas),
                              blobVersionedHashes=[_hex(h) for h in tx.blob_hashes])
        signature = sender.key.sign_msg_hash(keccak(bytes([tx.tx_type]) + rlp.encode(unsigned)))
        v = signature.v
        fields.update(
            chainId=hex(CHAIN_ID),
            yParity=hex(v),
            v=hex(v),
            accessList=[{"address": _hex(a), "storageKeys": [_hex(s.to_bytes(32, "big")) for s in slots]}
                        for a, slots in tx.access_list],
        )
    r, s = signature.r, signature.s
    if tx.high_s:  # (r, N - s) with the other parity recovers the same sender
        s = SECP256K1_N - s
        v = int(fields["v"], 16)
        if tx.tx_type:
            fields["v"] = fields["yParity"] = hex(v ^ 1)
        else:
            base = 27 if v in (27, 28) else 35 + 2 * CHAIN_ID
            fields["v"] = hex(base + 1 - (v - base))
    fields.update(
        {
            "from": _hex(sender.address),
            "gas": hex(tx.gas),
            "input": _hex(tx.data),
            "nonce": hex(nonce),
            "r": hex(r),
            "s": hex(s),
            "to": _hex(tx.to) if tx.to is not None else None,
            "value": hex(tx.value),
        }
    )
    return fields


def default_gas_price_at(number: int) -> int:
    return 2 * BASE_FEE if at_least(number, "london") else 20 * GWEI


def build_documents(spec: BlockSpec) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The block JSON, pre-state JSON and block hashes JSON of ``spec`` (what `parse_block` takes)."""
    number = spec.number
    accounts = senders()
    nonces = [account.nonce for account in accounts]
    balances = [POOR_FUNDS if index == 3 else SENDER_FUNDS for index in range(len(accounts))]
    pre_state = pre_state_json(spec)
    transactions = []
    for tx in spec.txs:
        sender = accounts[tx.sender]
        nonce = max(0, nonces[tx.sender] + tx.nonce_delta)
        if tx.to is None and tx.collide:
            collision = create_address(sender.address, nonce)
            pre_state[_hex(collision)] = {
                "nonce": _account_json(0, 1),
                "code": _account_json(0, 0, b"\x00"),
                "storage": _account_json(0, 0, b"", ((0, 7), (9, 9))),
                "balance": _account_json(12345, 0),
            }[tx.collide]
        if tx.to == "sender":
            tx = replace(tx, to=sender.address)
        transactions.append(sign(tx, nonce, number, sender))
        # The next transaction of this sender gets the next nonce only if this one is included
        # (predicted: an invalid transaction leaves the nonce, and the rest of the sender's
        # transactions would be invalid too, which hides what they do).
        cost = predicted_cost(spec, tx, balances[tx.sender])
        if cost is not None:
            nonces[tx.sender] += 1
            balances[tx.sender] -= cost
    header = header_fields(number, SEED, MIN_BLOCK_GAS_LIMIT, bytes(32))  # (the roots are not checked)
    header["miner"] = _hex(spec.coinbase)
    if "baseFeePerGas" in header:
        header["baseFeePerGas"] = hex(spec.base_fee)
    if "excessBlobGas" in header:
        header["excessBlobGas"] = hex(spec.excess_blob_gas)
    document = dict(header, transactions=transactions, hash=_hex(keccak(f"fuzz-block-{number}".encode())))
    hashes = {str(n): _hex(h) for n, h in block_hashes(number).items()}
    return document, pre_state, hashes


def blob_base_fee(excess_blob_gas: int) -> int:
    """EIP-4844's fake_exponential(1, excess, 3338477)."""
    i, output, accumulator = 1, 0, 3_338_477
    while accumulator:
        output += accumulator
        accumulator = accumulator * excess_blob_gas // (3_338_477 * i)
        i += 1
    return output // 3_338_477


def predicted_cost(spec: BlockSpec, tx: TxSpec, balance: int) -> int | None:
    """The most ``tx`` can cost its sender if it is valid (py-evm's checks), None if it is not."""
    fork, base_fee = spec.fork, spec.base_fee
    number = FORK_NUMBERS[fork]
    london = at_least(number, "london")
    if tx.nonce_delta or tx.gas < intrinsic_gas(fork, tx.to, tx.data, tx.access_list):
        return None
    if tx.high_s and at_least(number, "homestead"):
        return None
    if tx.to is None and at_least(number, "shanghai") and len(tx.data) > MAX_INITCODE_SIZE:
        return None
    if tx.tx_type in (0, 1):
        price = max_fee = tx.gas_price if tx.gas_price is not None else default_gas_price_at(number)
    else:
        tip = tx.tip if tx.tip is not None else GWEI
        max_fee = tx.max_fee if tx.max_fee is not None else 2 * BASE_FEE + tip
        if tip > max_fee:
            return None
        price = min(max_fee, base_fee + tip)
    if london and max_fee < base_fee:
        return None
    cost = tx.gas * price + tx.value
    if tx.tx_type == 3:
        blob_gas = 131_072 * len(tx.blob_hashes)
        if not tx.blob_hashes or any(h[0] != 1 for h in tx.blob_hashes) or tx.max_fee_per_blob_gas < spec.blob_base_fee:
            return None
        if balance < tx.gas * max_fee + blob_gas * tx.max_fee_per_blob_gas:
            return None
        cost += blob_gas * spec.blob_base_fee
    return cost if cost <= balance else None


def build_block(spec: BlockSpec) -> Block:
    return parse_block(*build_documents(spec))


# Comparing the engines ----------------------------------------------------------------------------


@dataclass
class Comparison:
    """What running one block through both engines gave."""

    diffs: list[str] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)


# Whole-block native runs: sequential, the machine's two threads, and eight (on two cores, small
# blocks only get speculation, validations and aborts with more threads than cores).
WHOLE_BLOCK_THREADS = (1, 2, 8)


def compare_engines(spec: BlockSpec, whole_block: bool = True) -> Comparison:
    """Run ``spec`` through both engines transaction by transaction over one `SequentialState`
    (applying the reference write set after each), then (``whole_block``) the native engine's
    ``run(threads)`` for each of `WHOLE_BLOCK_THREADS` against the reference sequence. Every
    difference is a line of ``diffs``."""
    block = build_block(spec)
    reference = ReferenceEngine(block)
    native = NativeEngine(block)
    state = SequentialState(block.pre_state)
    out = Comparison()
    results = []
    for index in range(len(block.transactions)):
        ref = reference.execute(index, state)
        try:
            nat = native.execute(index, state)
        except EvmError as exc:
            out.diffs.append(f"tx {index}: native raised {type(exc).__name__}: {exc}")
            nat = None
        if nat is not None:
            out.diffs.extend(diff_result(ref, nat))
        out.valid.append(ref.valid)
        out.success.append(ref.success)
        results.append(ref)
        if ref.valid:
            state.apply(ref.writes)
    if not whole_block:
        return out
    first_invalid = next((r.index for r in results if not r.valid), None)
    for threads in WHOLE_BLOCK_THREADS:
        try:
            native_results, _ = native.run(threads)
        except InvalidTransaction as exc:
            if exc.index != first_invalid:
                out.diffs.append(f"run({threads}): raised InvalidTransaction at tx {exc.index}, reference at {first_invalid}")
            continue
        except EvmError as exc:
            out.diffs.append(f"run({threads}): native raised {type(exc).__name__}: {exc}")
            continue
        if first_invalid is not None:
            out.diffs.append(f"run({threads}): no InvalidTransaction, but reference tx {first_invalid} is invalid")
            continue
        out.diffs.extend(f"run({threads}): {line}" for line in diff_results(results, native_results))
    return out
