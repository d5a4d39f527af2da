"""State locations, values and the views engines execute against.

A transaction's read set and write set are dicts keyed by *locations*:

- ``(ACCOUNT, address)``: the account's ``(balance, nonce, exists)`` triple;
- ``(CODE, address)``: its code (``b""`` for none);
- ``(STORAGE, address, slot)``: one storage slot (an int);
- ``(WIPE, address)``: written (value ``True``) when the transaction clears the account's whole
  storage (contract creation, self-destruct); never read directly.

A written ACCOUNT value is either an absolute triple or a `Credit`: an addition to the balance that
did not read it. Fee payments to the block's beneficiary and value transfers are credits, so two
transactions paying the same account do not depend on each other; a transaction that reads the
balance afterwards sees every earlier credit. This is the deferred-credit rule of parallel EVMs.

>>> pre = PreState({b"\\x01" * 20: Account(balance=5, nonce=1)})
>>> state = SequentialState(pre)
>>> state.apply({account_key(b"\\x01" * 20): Credit(7)})
>>> state.read(account_key(b"\\x01" * 20))
(12, 1, True)
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from eth_hash.auto import keccak

ACCOUNT, CODE, STORAGE, WIPE = 0, 1, 2, 3
KIND_NAMES = {ACCOUNT: "account", CODE: "code", STORAGE: "storage", WIPE: "wipe"}

Key = tuple[Any, ...]
AccountTriple = tuple[int, int, bool]
EMPTY_ACCOUNT: AccountTriple = (0, 0, False)


class Credit(NamedTuple):
    """A balance addition that did not read the balance (and makes the account exist).

    A named tuple, not a frozen dataclass: write sets carry two per transaction across processes,
    and a tuple is built and unpickled several times faster.
    """

    amount: int


@dataclass(frozen=True)
class Account:
    """One account of a block's pre-state."""

    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: Mapping[int, int] = field(default_factory=dict)
    exists: bool = True


def account_key(address: bytes) -> Key:
    return (ACCOUNT, address)


def code_key(address: bytes) -> Key:
    return (CODE, address)


def storage_key(address: bytes, slot: int) -> Key:
    return (STORAGE, address, slot)


def wipe_key(address: bytes) -> Key:
    return (WIPE, address)


def apply_credit(value: AccountTriple, credit: Credit) -> AccountTriple:
    balance, nonce, _ = value
    return (balance + credit.amount, nonce, True)


@lru_cache(maxsize=4096)
def code_hash(code: bytes) -> bytes:
    return keccak(code)


def observed(key: Key, value: Any) -> Any:
    """What a read set records for a value: code by its hash (read sets cross processes)."""
    return code_hash(value) if key[0] == CODE else value


def describe_key(key: Key) -> str:
    """A location as text, for reports and error messages: ``storage:0xabc…:0x1``."""
    kind, address = key[0], "0x" + key[1].hex()
    if kind == STORAGE:
        return f"storage:{address}:{hex(key[2])}"
    return f"{KIND_NAMES[kind]}:{address}"


class StateView(Protocol):
    """What an engine executes one transaction against: the state just before it."""

    def read(self, key: Key) -> Any: ...


class PreState:
    """The block's pre-state: every account and slot the block touches; absent means empty."""

    def __init__(self, accounts: Mapping[bytes, Account]) -> None:
        self.accounts = dict(accounts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreState) and self.accounts == other.accounts

    __hash__ = None  # type: ignore[assignment]

    def read(self, key: Key) -> Any:
        account = self.accounts.get(key[1])
        kind = key[0]
        if kind == ACCOUNT:
            return (account.balance, account.nonce, account.exists) if account else EMPTY_ACCOUNT
        if kind == CODE:
            return account.code if account else b""
        if kind == STORAGE:
            return account.storage.get(key[2], 0) if account else 0
        raise KeyError(f"{describe_key(key)} cannot be read")


class SequentialState:
    """Pre-state plus the writes of the transactions applied so far, in order (the oracle's view)."""

    def __init__(self, pre: PreState) -> None:
        self.pre = pre
        self.values: dict[Key, Any] = {}
        self.wiped: set[bytes] = set()

    def read(self, key: Key) -> Any:
        if key in self.values:
            return self.values[key]
        if key[0] == STORAGE and key[1] in self.wiped:
            return 0
        return self.pre.read(key)

    def apply(self, writes: Mapping[Key, Any]) -> None:
        """Apply one transaction's write set (a wipe first: it precedes the slot writes it allows)."""
        for key in writes:
            if key[0] == WIPE:
                self._wipe(key[1])
        for key, value in writes.items():
            if key[0] == WIPE:
                continue
            if isinstance(value, Credit):
                value = apply_credit(self.read(key), value)
            self.values[key] = value

    def _wipe(self, address: bytes) -> None:
        self.wiped.add(address)
        for key in [k for k in self.values if k[0] == STORAGE and k[1] == address]:
            del self.values[key]


class VersionedState:
    """Multi-version state: pre-state plus every transaction's latest write set, by block position.

    ``read(key, i)`` is the value transaction ``i`` must see if every transaction before it ran with
    its current write set: the latest absolute write before ``i`` plus the credits after it. This is
    Block-STM's multi-version memory, without concurrency (one process owns each copy).
    """

    def __init__(self, pre: PreState) -> None:
        self.pre = pre
        self.writes: dict[int, Mapping[Key, Any]] = {}
        self._writers: dict[Key, list[int]] = {}

    def set_writes(self, index: int, writes: Mapping[Key, Any]) -> set[Key]:
        """Replace transaction ``index``'s write set; returns the locations whose written value changed."""
        old = self.writes.get(index)
        if not old:  # the common case: a first execution
            self.writes[index] = writes
            for key in writes:
                bisect.insort(self._writers.setdefault(key, []), index)
            return set(writes)
        changed = {key for key in old.keys() | writes.keys() if old.get(key, _MISSING) != writes.get(key, _MISSING)}
        for key in old.keys() - writes.keys():
            self._writers[key].remove(index)
        for key in writes.keys() - old.keys():
            bisect.insort(self._writers.setdefault(key, []), index)
        self.writes[index] = writes
        return changed

    def writers_of(self, key: Key) -> list[int]:
        """The transactions whose current write set holds ``key``, in block order (do not modify)."""
        return self._writers.get(key, [])

    def update(self, write_sets: Mapping[int, Mapping[Key, Any]]) -> None:
        for index, writes in write_sets.items():
            self.set_writes(index, writes)

    def read(self, key: Key, index: int) -> Any:
        if key[0] == STORAGE:
            return self._read_slot(key, index)
        writers = self._writers.get(key, ())
        position = bisect.bisect_left(writers, index) - 1
        credits, credited = 0, False
        while position >= 0:
            value = self.writes[writers[position]][key]
            if not isinstance(value, Credit):
                break
            credits, credited = credits + value.amount, True
            position -= 1
        else:
            value = self.pre.read(key)
        if credited:
            return (value[0] + credits, value[1], True)
        return value

    def _read_slot(self, key: Key, index: int) -> Any:
        writer = _last_before(self._writers.get(key, ()), index)
        wiper = _last_before(self._writers.get((WIPE, key[1]), ()), index)
        if wiper is not None and (writer is None or wiper > writer):
            return 0
        if writer is None:
            return self.pre.read(key)
        return self.writes[writer][key]

    def view(self, index: int) -> _IndexedView:
        return _IndexedView(self, index)


class _IndexedView:
    __slots__ = ("state", "index")

    def __init__(self, state: VersionedState, index: int) -> None:
        self.state = state
        self.index = index

    def read(self, key: Key) -> Any:
        return self.state.read(key, self.index)


_MISSING = object()


def _last_before(writers: Iterable[int] | list[int], index: int) -> int | None:
    position = bisect.bisect_left(writers, index) - 1  # type: ignore[arg-type]
    return writers[position] if position >= 0 else None  # type: ignore[index]
