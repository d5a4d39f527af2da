"""The reference engine: py-evm (the Ethereum Foundation's Python EVM) with exact read/write sets.

py-evm executes the transaction; this module replaces its account database with
`TrackedAccountDB`, which reads from a `StateView` (the state just before the transaction), keeps the
transaction's changes in a journal (so reverted calls undo them) and records every location it read,
inside reverted calls too. Positive balance changes of accounts the transaction has not read become
`Credit`s (the deferred-credit rule, see `workers.evm.state`).

>>> from workers.evm import load_block  # doctest: +SKIP
>>> engine = ReferenceEngine(load_block("../shared/data/mainnet/46147"))  # doctest: +SKIP
>>> engine.execute(0, SequentialState(engine.block.pre_state)).gas_used  # doctest: +SKIP
21000
"""
from __future__ import annotations

from typing import Any

from eth_hash.auto import keccak

from .block import Block
from .engine import TxResult
from .errors import MalformedBlock, MissingState
from .forks import vm_class
from .state import ACCOUNT, CODE, STORAGE, WIPE, Credit, Key, StateView, code_hash, observed

_MISSING = object()
_EMPTY_CODE_HASH = keccak(b"")
BLANK_ROOT_HASH = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")


class TrackedAccountDB:
    """py-evm's account database interface over a `StateView`, journaled, recording reads and writes."""

    def __init__(self, view: StateView) -> None:
        self.view = view
        self.reads: dict[Key, Any] = {}
        self._accounts: dict[bytes, tuple[int, int, bool]] = {}
        self._credits: dict[bytes, int] = {}
        self._code: dict[bytes, bytes] = {}
        self._storage: dict[tuple[bytes, int], int] = {}
        self._wiped: dict[bytes, bool] = {}
        self._warm: dict[Any, bool] = {}
        self._journal: list[tuple[dict[Any, Any], Any, Any]] = []
        self._base_code: dict[bytes, bytes] = {}
        self._checkpoints: dict[int, int] = {}

    # Reads from the view (recorded once: the view does not change during a transaction) --------

    def _read(self, key: Key) -> Any:
        value = self.reads.get(key, _MISSING)
        if value is _MISSING:
            value = self.reads[key] = self.view.read(key)
        return value

    def _account(self, address: bytes) -> tuple[int, int, bool]:
        account = self._accounts.get(address)
        if account is None:
            account = self._read((ACCOUNT, address))
            if address in self._credits:
                account = (account[0] + self._credits[address], account[1], True)
                self._forget(self._credits, address)
            self._put(self._accounts, address, account)
        return account

    # Journal ------------------------------------------------------------------------------------

    def _put(self, container: dict[Any, Any], key: Any, value: Any) -> None:
        self._journal.append((container, key, container.get(key, _MISSING)))
        container[key] = value

    def _forget(self, container: dict[Any, Any], key: Any) -> None:
        if key in container:
            self._journal.append((container, key, container[key]))
            del container[key]

    def record(self) -> int:
        # Checkpoint ids must be unique process-wide: py-evm's transient storage records the same
        # id in its own journal, whose root checkpoint comes from py-evm's global counter.
        from eth.db.journal import get_next_checkpoint

        checkpoint = get_next_checkpoint()
        self._checkpoints[checkpoint] = len(self._journal)
        return checkpoint

    def discard(self, checkpoint: int) -> None:
        length = self._checkpoints[checkpoint]
        while len(self._journal) > length:
            container, key, old = self._journal.pop()
            if old is _MISSING:
                container.pop(key, None)
            else:
                container[key] = old

    def commit(self, checkpoint: int) -> None:
        """Changes since the checkpoint stay; the journal keeps them revertible by outer scopes."""

    def lock_changes(self) -> None:
        self._warm.clear()

    # Balance, nonce, existence --------------------------------------------------------------------

    def get_balance(self, address: bytes) -> int:
        return self._account(address)[0]

    def set_balance(self, address: bytes, balance: int) -> None:
        _, nonce, _ = self._account(address)
        self._put(self._accounts, address, (balance, nonce, True))

    def add_credit(self, address: bytes, amount: int) -> None:
        """A balance addition without reading the balance; resolved if the transaction reads it."""
        if address in self._accounts:
            balance, nonce, _ = self._accounts[address]
            self._put(self._accounts, address, (balance + amount, nonce, True))
        else:
            self._put(self._credits, address, self._credits.get(address, 0) + amount)

    def get_nonce(self, address: bytes) -> int:
        return self._account(address)[1]

    def set_nonce(self, address: bytes, nonce: int) -> None:
        balance, _, _ = self._account(address)
        self._put(self._accounts, address, (balance, nonce, True))

    def increment_nonce(self, address: bytes) -> None:
        self.set_nonce(address, self.get_nonce(address) + 1)

    def account_exists(self, address: bytes) -> bool:
        if address not in self._accounts and address in self._credits:
            return True
        return self._account(address)[2]

    def touch_account(self, address: bytes) -> None:
        if address in self._accounts:
            balance, nonce, _ = self._accounts[address]
            self._put(self._accounts, address, (balance, nonce, True))
        else:
            self.add_credit(address, 0)

    def account_has_code_or_nonce(self, address: bytes) -> bool:
        return self.get_nonce(address) != 0 or self.get_code_hash(address) != _EMPTY_CODE_HASH

    def account_is_empty(self, address: bytes) -> bool:
        if address not in self._accounts and self._credits.get(address, 0) > 0:
            return False  # a positive credit makes it non-empty whatever the balance was
        return not self.account_has_code_or_nonce(address) and self.get_balance(address) == 0

    def delete_account(self, address: bytes) -> None:
        self._forget(self._credits, address)
        self._put(self._accounts, address, (0, 0, False))
        self._put(self._code, address, b"")
        self.delete_storage(address)

    # Code -----------------------------------------------------------------------------------------

    def get_code(self, address: bytes) -> bytes:
        code = self._code.get(address)
        if code is None:
            code = self._base_code.get(address)
        if code is None:
            key = (CODE, address)
            code = self._base_code[address] = self.view.read(key)
            self.reads[key] = code_hash(code)  # read sets hold code by hash
        return code

    def set_code(self, address: bytes, code: bytes) -> None:
        self._put(self._code, address, bytes(code))

    def get_code_hash(self, address: bytes) -> bytes:
        return code_hash(self.get_code(address))

    def delete_code(self, address: bytes) -> None:
        self.set_code(address, b"")

    # Storage --------------------------------------------------------------------------------------

    def get_storage(self, address: bytes, slot: int, from_journal: bool = True) -> int:
        if from_journal:
            value = self._storage.get((address, slot))
            if value is not None:
                return value
            if address in self._wiped:
                return 0
        return int(self._read((STORAGE, address, slot)))

    def set_storage(self, address: bytes, slot: int, value: int) -> None:
        self._put(self._storage, (address, slot), value)

    def delete_storage(self, address: bytes) -> None:
        self._put(self._wiped, address, True)
        for key in [key for key in self._storage if key[0] == address]:
            self._forget(self._storage, key)

    # EIP-2929 warm sets -----------------------------------------------------------------------------

    def is_address_warm(self, address: bytes) -> bool:
        return address in self._warm

    def mark_address_warm(self, address: bytes) -> None:
        self._put(self._warm, address, True)

    def is_storage_warm(self, address: bytes, slot: int) -> bool:
        return (address, slot) in self._warm

    def mark_storage_warm(self, address: bytes, slot: int) -> None:
        self._put(self._warm, (address, slot), True)

    # State roots are not computed: the pre-state is partial ------------------------------------------

    @property
    def state_root(self) -> bytes:
        return BLANK_ROOT_HASH

    @state_root.setter
    def state_root(self, value: bytes) -> None:
        pass

    def make_state_root(self) -> bytes:
        return BLANK_ROOT_HASH

    def has_root(self, state_root: bytes) -> bool:
        return False

    def persist(self) -> Any:
        raise NotImplementedError("the tracked account database is never persisted")

    # The write set --------------------------------------------------------------------------------

    def write_set(self) -> dict[Key, Any]:
        """Locations this transaction changed, with their final values (credits stay credits)."""
        writes: dict[Key, Any] = {(WIPE, address): True for address in self._wiped}
        for address, account in self._accounts.items():
            self._changed(writes, (ACCOUNT, address), account)
        for address, amount in self._credits.items():
            writes[(ACCOUNT, address)] = Credit(amount)
        for address, code in self._code.items():
            self._changed(writes, (CODE, address), code)
        for (address, slot), value in self._storage.items():
            if address in self._wiped:
                if value:
                    writes[(STORAGE, address, slot)] = value
            else:
                self._changed(writes, (STORAGE, address, slot), value)
        return writes

    def _changed(self, writes: dict[Key, Any], key: Key, value: Any) -> None:
        if self.reads.get(key, _MISSING) != observed(key, value):
            writes[key] = value


class ReferenceEngine:
    """Executes one transaction of a block against a view, with py-evm."""

    name = "reference"

    def __init__(self, block: Block) -> None:
        self.block = block
        self.fork = block.header.fork
        self.vm = vm_class(self.fork)
        self.state_class = _tracked_state_class(self.vm.get_state_class())
        self.context = _execution_context(block, self.vm)
        self.transactions = [_decode(self.vm, tx) for tx in block.transactions]
        self.stateless_errors = [stateless_error(self.fork, tx) for tx in self.transactions]

    def execute(self, index: int, view: StateView) -> TxResult:
        """Run transaction ``index`` against ``view``; an invalid transaction gives ``valid=False``."""
        from eth_utils import ValidationError

        if self.stateless_errors[index]:
            return TxResult(index=index, valid=False, error=self.stateless_errors[index], reads={}, writes={})
        db = TrackedAccountDB(view)
        state = self.state_class(db, self.context, self.block)
        transaction = self.transactions[index]
        try:
            computation = state.apply_transaction(transaction)
        except ValidationError as exc:
            return TxResult(index=index, valid=False, error=str(exc), reads=db.reads, writes={})
        return TxResult(
            index=index,
            valid=True,
            success=not computation.is_error,
            gas_used=self.vm.finalize_gas_used(transaction, computation),
            logs=tuple((address, tuple(topics), data) for address, topics, data in computation.get_log_entries()),
            reads=db.reads,
            writes=db.write_set(),
        )


MAX_INITCODE_SIZE = 49_152  # EIP-3860 (Shanghai)


def stateless_error(fork: str, decoded: Any) -> str | None:
    """Why a transaction is invalid whatever the state, where py-evm does not say so itself.

    EIP-3860 makes a creation with more than 49,152 bytes of init code invalid; py-evm instead
    raises OutOfGas from deep inside the execution (not a `ValidationError`), which would abort the
    whole block. Both engines check it here first, before reading anything.
    """
    from .forks import FORKS

    shanghai_or_later = [name for _, name in FORKS].index(fork) >= [name for _, name in FORKS].index("shanghai")
    if shanghai_or_later and not decoded.to and len(decoded.data) > MAX_INITCODE_SIZE:
        return f"EIP-3860: init code of {len(decoded.data)} bytes is over the limit of {MAX_INITCODE_SIZE}"
    return None


def _decode(vm: Any, tx: Any) -> Any:
    where = f"transactions[{tx.index}]"
    try:
        decoded = vm.get_transaction_builder().decode(tx.raw)
        sender = decoded.sender
    except Exception as exc:  # py-evm raises many types for a bad signature or encoding
        raise MalformedBlock(f"{where}.from", f"sender cannot be recovered from the signature ({exc})") from None
    if sender != tx.sender:
        raise MalformedBlock(f"{where}.from", f"0x{tx.sender.hex()} is not the signer (0x{sender.hex()})")
    return decoded


def _execution_context(block: Block, vm: Any) -> Any:
    from eth.vm.execution_context import ExecutionContext

    header = block.header
    context_class: Any = ExecutionContext  # py-evm's NewTypes (Address, Hash32) are plain bytes
    return context_class(
        coinbase=header.coinbase,
        timestamp=header.timestamp,
        block_number=header.number,
        difficulty=header.difficulty,
        mix_hash=header.mix_hash,
        gas_limit=header.gas_limit,
        prev_hashes=(),
        chain_id=header.chain_id,
        base_fee_per_gas=header.base_fee,
        excess_blob_gas=header.excess_blob_gas,
    )


_STATE_CLASSES: dict[type, type] = {}


def _tracked_state_class(base: type) -> type:
    """The fork's py-evm state class, over a `TrackedAccountDB`, with deferred credits and the
    consensus MODEXP (see `_consensus_computation_class`)."""
    if base not in _STATE_CLASSES:
        fork_state: Any = base  # a py-evm state class (typed as a plain type here)
        computation = _consensus_computation_class(fork_state.computation_class)
        _STATE_CLASSES[base] = type(f"Tracked{base.__name__}", (_TrackedStateMixin, base), {"computation_class": computation})
    return _STATE_CLASSES[base]


MODEXP_ADDRESS = b"\x00" * 19 + b"\x05"


def _consensus_computation_class(base: Any) -> Any:
    """The fork's computation class with MODEXP (from Byzantium) giving what every client gives.

    py-evm answers 0 for any empty base, but EIP-198's clients compute 0 ** 0 = 1: an empty base
    with a zero exponent and a modulus above 1 returns 1 (found by the differential fuzz test
    against revm, which follows geth).
    """
    precompiles = base.get_precompiles()
    if MODEXP_ADDRESS not in precompiles:
        return base
    fixed = {**precompiles, MODEXP_ADDRESS: _zero_base_modexp(precompiles[MODEXP_ADDRESS])}
    return type(f"Consensus{base.__name__}", (base,), {"_precompiles": fixed})


def _zero_base_modexp(original: Any) -> Any:
    def modexp(computation: Any) -> Any:
        from eth.precompiles.modexp import extract_lengths

        computation = original(computation)  # charges the gas (or raises OutOfGas) and sets the output
        data = computation.msg.data_as_bytes
        base_length, exponent_length, modulus_length = extract_lengths(data)
        if base_length or not modulus_length or any(data[96 : 96 + exponent_length]):
            return computation
        # The gas was paid, so the modulus is small enough to read.
        modulus_bytes = data[96 + exponent_length : 96 + exponent_length + modulus_length]
        modulus = int.from_bytes(modulus_bytes.ljust(modulus_length, b"\x00"), "big")
        if modulus > 1:
            computation.output = (1).to_bytes(modulus_length, "big")
        return computation

    return modexp


class _TrackedStateMixin:
    """Overrides of py-evm's ``BaseState`` (mixed in before the fork's state class)."""

    _account_db: TrackedAccountDB

    def __init__(self, account_db: TrackedAccountDB, execution_context: Any, block: Block) -> None:
        self._db = None
        self.execution_context = execution_context
        self._account_db = account_db
        self._block = block

    def set_system_contracts(self) -> None:
        """Nothing to install: the beacon-roots system call is folded into the pre-state by the loader."""

    def delta_balance(self, address: bytes, delta: int) -> None:
        if delta >= 0:
            self._account_db.add_credit(address, delta)
        else:
            db = self._account_db
            db.set_balance(address, db.get_balance(address) + delta)

    def get_ancestor_hash(self, block_number: int) -> bytes:
        number = self._block.header.number
        if not number - 256 <= block_number < number:
            return b""
        try:
            return self._block.block_hashes[block_number]
        except KeyError:
            raise MissingState(f"BLOCKHASH({block_number}) is read but not in block_hashes") from None
