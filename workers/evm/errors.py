"""The EVM library's errors: every one carries a stable ``code`` and, for bad input, the ``field``.

>>> raise MalformedBlock("transactions[3].from", "sender cannot be recovered")
Traceback (most recent call last):
...
workers.evm.errors.MalformedBlock: transactions[3].from: sender cannot be recovered
"""
from __future__ import annotations


class EvmError(Exception):
    """Base of every error the EVM library raises on purpose."""

    code = "evm_error"


class MalformedBlock(EvmError):
    """The block, its pre-state or its block hashes are missing, unparsable or inconsistent."""

    code = "malformed_block"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTransaction(EvmError):
    """A transaction cannot be included (bad nonce, unaffordable gas, ...): the block is invalid."""

    code = "invalid_transaction"

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"transaction {index}: {message}")
        self.index = index
        self.message = message


class MissingState(EvmError):
    """Execution needed state the pre-state does not hold (so the result cannot be trusted)."""

    code = "missing_state"


class EngineUnavailable(EvmError):
    """The requested engine is unknown or cannot run on this machine."""

    code = "engine_unavailable"
