"""The native engine: revm's interpreter under a py-evm-exact state layer, in Rust (``workers/evm/rust``).

Same contract as the reference engine (``workers.evm.engine``): ``execute(index, view)`` runs one
transaction against a Python `StateView` and gives a `TxResult` with the reference engine's read and
write sets, location for location. ``run(threads)`` runs the whole block natively, sequentially
(``threads`` <= 1) or on ``threads`` native threads (the GIL released), and gives the results of
sequential execution.

>>> from workers.evm import load_block                                  # doctest: +SKIP
>>> engine = NativeEngine(load_block("../shared/data/mainnet/46147"))   # doctest: +SKIP
>>> engine.execute(0, SequentialState(engine.block.pre_state)).gas_used   # doctest: +SKIP
21000
>>> results, stats = engine.run(threads=2)                              # doctest: +SKIP

The extension module (``workers.evm._native``) is built by ``make`` (maturin); without it,
`NativeEngine` raises `EngineUnavailable`.
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .block import Block
from .engine import TxResult
from .errors import EngineUnavailable, InvalidTransaction
from .parallel import ParallelStats, gc_paused
from .state import CODE, STORAGE, Credit, Key, StateView, describe_key

UNAVAILABLE = "the native engine is not built: run make"

_native_module: Any = None


def native_module() -> Any:
    """The extension module, or `EngineUnavailable` when it is not built (or does not load)."""
    global _native_module
    if _native_module is None:
        try:
            module = importlib.import_module(f"{__package__}._native")
        except ImportError as exc:
            raise EngineUnavailable(f"{UNAVAILABLE} ({exc})") from None
        _native_module = module
    return _native_module


def available() -> bool:
    try:
        native_module()
    except EngineUnavailable:
        return False
    return True


@dataclass
class NativeStats(ParallelStats):
    """How a whole-block native run went: `ParallelStats` (``elapsed_s`` from Python's side, results
    converted) plus the executor's own figures."""

    threads: int = 1
    executor_s: float = 0.0  # the Rust executor alone, the GIL released
    convert_s: float = 0.0  # turning its results into Python `TxResult`s
    details: dict[str, Any] = field(default_factory=dict)  # everything the executor reported


class NativeEngine:
    """Executes the transactions of a block natively (the engine protocol of `workers.evm.engine`)."""

    name = "native"

    def __init__(self, block: Block) -> None:
        module = native_module()
        self.block = block
        self.native = module.NativeBlock(**native_fields(block))

    def execute(self, index: int, view: StateView) -> TxResult:
        """Run transaction ``index`` against ``view``; an invalid transaction gives ``valid=False``.
        An exception the view raises propagates as itself."""
        return self.native.execute(index, view)

    def run(self, threads: int = 1) -> tuple[list[TxResult], NativeStats]:
        """The whole block, natively: sequential results (in block order) and how it went.

        Raises `InvalidTransaction` if a transaction cannot be included in sequential order.
        """
        started = time.perf_counter()
        with gc_paused():  # thousands of acyclic results: the cyclic collector would walk them over and over
            results, info = self.native.run(threads)
        elapsed = time.perf_counter() - started
        for result in results:
            if not result.valid:
                raise InvalidTransaction(result.index, result.error or "invalid")
        stats = NativeStats(
            transactions=info["transactions"],
            executions=info["executions"],
            rounds=info.get("rounds", 1),
            elapsed_s=elapsed,
            threads=info["threads"],
            executor_s=info["elapsed_s"],
            convert_s=info["convert_s"],
            details=info,
        )
        return results, stats


# Block -> the extension's plain data ----------------------------------------------------------


def native_fields(block: Block) -> dict[str, Any]:
    """The keyword arguments of ``_native.NativeBlock`` for ``block`` (senders verified by py-evm)."""
    from .forks import vm_class
    from .reference import _decode

    header = block.header
    vm = vm_class(header.fork)
    return {
        "fork": header.fork,
        "number": header.number,
        "coinbase": header.coinbase,
        "timestamp": header.timestamp,
        "difficulty": header.difficulty,
        "mix_hash": header.mix_hash,
        "gas_limit": header.gas_limit,
        "base_fee": header.base_fee,
        "excess_blob_gas": header.excess_blob_gas,
        "chain_id": header.chain_id,
        "block_hashes": dict(block.block_hashes),
        "transactions": [transaction_fields(header.fork, tx.type, tx.sender, _decode(vm, tx)) for tx in block.transactions],
        "accounts": [
            (address, account.balance, account.nonce, account.exists, account.code, dict(account.storage))
            for address, account in block.pre_state.accounts.items()
        ],
    }


def transaction_fields(fork: str, tx_type: int, sender: bytes, decoded: Any) -> tuple[Any, ...]:
    """``(type, sender, to, nonce, gas_limit, max_fee_per_gas, max_priority_fee_per_gas, value, data,
    access_list, max_fee_per_blob_gas, blob_hashes, intrinsic_gas, static_error)`` of a py-evm
    transaction (types 0 and 1 carry their gas price in both fee fields). ``static_error`` holds
    every refusal that reads no state: py-evm's ``validate()``, `reference.stateless_error`, and
    the signature's s check that py-evm makes in its state validation (before any read)."""
    from eth_utils import ValidationError

    from .reference import stateless_error

    if tx_type in (0, 1):
        max_fee = max_priority = decoded.gas_price
    else:
        max_fee, max_priority = decoded.max_fee_per_gas, decoded.max_priority_fee_per_gas
    access_list = [(bytes(address), list(slots)) for address, slots in decoded.access_list] if tx_type else []
    blob_fee, blob_hashes = 0, []
    if tx_type == 3:
        blob_fee = decoded.max_fee_per_blob_gas
        blob_hashes = [bytes(h) for h in decoded.blob_versioned_hashes]
    try:
        decoded.validate()
        static_error = stateless_error(fork, decoded) or _signature_error(fork, decoded)
    except ValidationError as exc:
        static_error = str(exc)
    try:
        intrinsic_gas = decoded.intrinsic_gas
    except Exception:  # noqa: BLE001 - a transaction py-evm refuses anyway (static_error says why)
        intrinsic_gas = 0
    return (
        tx_type,
        sender,
        bytes(decoded.to) or None,
        decoded.nonce,
        decoded.gas,
        max_fee,
        max_priority,
        decoded.value,
        bytes(decoded.data),
        access_list,
        blob_fee,
        blob_hashes,
        intrinsic_gas,
        static_error,
    )


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _signature_error(fork: str, decoded: Any) -> str | None:
    """Homestead's (EIP-2) low-s rule, as py-evm's ``validate_homestead_transaction`` applies it to
    every transaction type (its legacy ``validate()`` already catches legacy ones)."""
    if fork != "frontier" and (decoded.s > SECP256K1_N // 2 or decoded.s == 0):
        return "Invalid signature S value"
    return None


# Comparing two engines' results ---------------------------------------------------------------


def compare_engines(block: Block, threads: int = 1, *, through_view: bool = False, limit: int | None = None) -> list[str]:
    """The differences between the reference engine's sequential results for ``block`` and the
    native engine's: whole-block native execution on ``threads`` threads, or with ``through_view``
    each transaction through `NativeEngine.execute` against a Python `SequentialState` (the path
    the shard pools use). Empty when they agree exactly (see `diff_results`)."""
    from .execute import execute_sequential
    from .pool import make_engine

    reference = execute_sequential(make_engine("reference", block))
    engine = NativeEngine(block)
    if through_view:
        native = execute_sequential(engine)
    else:
        native, _ = engine.run(threads)
    return diff_results(reference, native, limit=limit)



def diff_results(reference: Sequence[TxResult], native: Sequence[TxResult], limit: int | None = None) -> list[str]:
    """Every difference between two engines' results of the same transactions, one line each,
    naming the transaction index, the field or location and both values (reference first).

    Empty when they are identical (the contract of `workers.evm.engine`: same receipt fields,
    same read set and write set, location for location, value for value).
    """
    out: list[str] = []
    if len(reference) != len(native):
        out.append(f"result count: reference {len(reference)}, native {len(native)}")
    for ref, nat in zip(reference, native):
        out.extend(diff_result(ref, nat))
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def diff_result(ref: TxResult, nat: TxResult) -> list[str]:
    """The differences between two results of one transaction (reference first)."""
    where = f"tx {ref.index}"
    out = []
    for name in ("index", "valid", "success", "gas_used", "error"):
        a, b = getattr(ref, name), getattr(nat, name)
        if a != b and not (name == "error" and a and b):  # error texts differ between engines
            out.append(f"{where}: {name}: reference {a!r}, native {b!r}")
    if ref.logs != nat.logs:
        out.append(f"{where}: logs: reference {_logs(ref.logs)}, native {_logs(nat.logs)}")
        for position, (a, b) in enumerate(zip(ref.logs, nat.logs)):
            if a != b:
                out.append(f"{where}: log {position}: reference {_log(a)}, native {_log(b)}")
                break
    for kind, a_set, b_set in (("read", ref.reads, nat.reads), ("write", ref.writes, nat.writes)):
        for key in sorted(a_set.keys() | b_set.keys(), key=_sort_key):
            a, b = a_set.get(key, _ABSENT), b_set.get(key, _ABSENT)
            if a != b or type(a) is not type(b) and (isinstance(a, Credit) or isinstance(b, Credit)):
                out.append(f"{where}: {kind} {_describe(key)}: reference {_value(key, a)}, native {_value(key, b)}")
    return out


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _sort_key(key: Key) -> tuple[Any, ...]:
    return (key[1], key[0], key[2] if len(key) > 2 else -1)


def _describe(key: Key) -> str:
    try:
        return describe_key(key)
    except Exception:  # noqa: BLE001 - a malformed key is itself a difference worth showing
        return repr(key)


def _value(key: Key, value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    if isinstance(value, Credit):
        return f"Credit({value.amount})"
    if isinstance(value, (bytes, bytearray)):
        if key[0] == CODE and len(value) > 40:
            return f"0x{bytes(value[:20]).hex()}... ({len(value)} bytes)"
        return "0x" + bytes(value).hex()
    if isinstance(value, int) and not isinstance(value, bool) and key[0] == STORAGE:
        return hex(value)
    return repr(value)


def _logs(logs: Sequence[Any]) -> str:
    return f"{len(logs)} log(s)"


def _log(log: Any) -> str:
    address, topics, data = log
    return f"(0x{address.hex()}, [{', '.join(hex(t) for t in topics)}], 0x{data.hex()[:80]})"


__all__ = ["UNAVAILABLE", "NativeEngine", "NativeStats", "available", "compare_engines", "diff_result", "diff_results", "native_fields",
           "native_module"]
