"""Execute a block (sequentially or in parallel) and verify it against its header.

>>> block = load_block("../shared/data/mainnet/19933597")        # doctest: +SKIP
>>> report = run_block(block)                                     # sequential, reference engine
>>> report.verified, report.gas_used                              # doctest: +SKIP
(True, 12788678)
>>> with LocalPool(workers=2) as pool: report = run_block(block, pool=pool)   # doctest: +SKIP
>>> report = run_block(block, engine="native", threads=2)         # doctest: +SKIP

The native engine runs a whole block in Rust (sequentially, or on ``threads`` native threads with
the GIL released) when no shard pool is given; with a pool it runs each transaction through the
shards like any engine.

A mismatch names the first transaction whose receipt differs from sequential execution's, or
says that sequential execution disagrees with the header too (then the input is wrong).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .block import Block
from .engine import Engine, Receipt, TxResult, block_bloom, build_receipts, receipts_root
from .errors import EvmError, InvalidTransaction
from .forks import has_receipt_status
from .parallel import ParallelStats, ShardPool, dependency_bound, execute_parallel, gc_paused
from .pool import DEFAULT_ENGINE, make_engine
from .state import SequentialState

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BlockReport:
    """What one execution of one block gave, checked against the header. JSON-ready via `as_json`."""

    number: int
    fork: str
    transactions: int
    gas_used: int
    logs_bloom: str
    receipts_root: str
    engine: str
    workers: int
    reexecuted: int
    rounds: int
    elapsed_s: float
    critical_path_bound: float
    checks: dict[str, bool] = field(default_factory=dict)
    mismatch: str | None = None
    threads: int = 1  # native threads of the native engine's in-process execution (else 1)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(self.checks.values()) and self.mismatch is None

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["verified"] = self.verified
        return document


def execute_sequential(engine: Engine, progress: Progress | None = None) -> list[TxResult]:
    """Sequential execution (the oracle): each transaction sees every earlier one's writes."""
    with gc_paused():  # as in parallel execution: fair comparison, and faster
        return _execute_sequential(engine, progress)


def _execute_sequential(engine: Engine, progress: Progress | None) -> list[TxResult]:
    state = SequentialState(engine.block.pre_state)
    results = []
    count = len(engine.block.transactions)
    for index in range(count):
        result = engine.execute(index, state)
        if not result.valid:
            raise InvalidTransaction(index, result.error or "invalid")
        state.apply(result.writes)
        results.append(result)
        if progress and (index % 50 == 49 or index == count - 1):
            progress(index + 1, count)
    return results


def run_block(block: Block, *, engine: str = DEFAULT_ENGINE, pool: ShardPool | None = None, threads: int = 1,
              progress: Progress | None = None) -> BlockReport:
    """Execute ``block`` and verify it: over ``pool`` if given (any engine), else in this process:
    the native engine runs the whole block natively on ``threads`` threads (1: sequentially), the
    reference engine sequentially."""
    if threads < 1:
        raise EvmError("threads must be at least 1")
    executor = make_engine(engine, block)
    native_run = pool is None and hasattr(executor, "run")
    if not native_run:
        threads = 1
    started = time.perf_counter()
    if native_run:
        results, stats = executor.run(threads)  # type: ignore[attr-defined]
        if progress:
            progress(len(results), len(results))
    elif pool is None:
        results = execute_sequential(executor, progress)
        stats = ParallelStats(transactions=len(results), executions=len(results), rounds=1 if results else 0)
    else:
        results, stats = execute_parallel(executor, pool, progress=progress)
    elapsed = time.perf_counter() - started
    check_block_gas(block, results)
    receipts = build_receipts(block, results)
    bound, _ = dependency_bound(results)
    checks, root = header_checks(block, receipts)
    mismatch = None
    if not all(checks.values()):
        mismatch = explain_mismatch(block, executor, results, checks, sequential=pool is None and threads == 1)
    return BlockReport(
        number=block.number,
        fork=block.header.fork,
        transactions=len(results),
        gas_used=receipts[-1].cumulative_gas_used if receipts else 0,
        logs_bloom="0x" + block_bloom(receipts).to_bytes(256, "big").hex(),
        receipts_root="0x" + root.hex(),
        engine=engine,
        workers=pool.workers if pool is not None else 1,
        reexecuted=stats.reexecuted,
        rounds=stats.rounds,
        elapsed_s=round(elapsed, 6),
        critical_path_bound=round(bound, 3),
        checks=checks,
        mismatch=mismatch,
        threads=threads,
    )


def check_block_gas(block: Block, results: Sequence[TxResult]) -> None:
    """A transaction is only valid if its gas limit fits in what the block has left (as a client
    checks before running it): `InvalidTransaction` otherwise."""
    used = 0
    for tx, result in zip(block.transactions, results):
        if used + tx.gas > block.header.gas_limit:
            raise InvalidTransaction(tx.index, f"its gas limit {tx.gas} does not fit in the block: {used} of "
                                               f"{block.header.gas_limit} already used")
        used += result.gas_used


def header_checks(block: Block, receipts: Sequence[Receipt]) -> tuple[dict[str, bool], bytes]:
    """The header checks that apply to the block's fork, and the computed receipts root."""
    header = block.header
    root = receipts_root(block, receipts)
    checks = {
        "gas_used": (receipts[-1].cumulative_gas_used if receipts else 0) == header.gas_used,
        "logs_bloom": block_bloom(receipts) == header.logs_bloom,
    }
    # Before Byzantium receipts embed intermediate state roots, which a partial pre-state cannot give.
    if has_receipt_status(block.number):
        checks["receipts_root"] = root == header.receipts_root
    return checks, root


def explain_mismatch(block: Block, engine: Engine, results: Sequence[TxResult], checks: dict[str, bool], *, sequential: bool) -> str:
    """Name the first transaction whose receipt differs from sequential execution's."""
    failed = ", ".join(name for name, ok in checks.items() if not ok)
    if sequential:
        reference = results
    elif hasattr(engine, "run"):
        reference, _ = engine.run(1)  # type: ignore[attr-defined]
    else:
        reference = execute_sequential(engine)
    for ours, theirs in zip(results, reference):
        if ours.receipt_fields() != theirs.receipt_fields():
            tx = block.transactions[ours.index]
            return (
                f"{failed} differ from the header; transaction {ours.index} (0x{tx.hash.hex()}) is the first "
                f"whose receipt differs from sequential execution (status {int(ours.success)} vs {int(theirs.success)}, "
                f"gas {ours.gas_used} vs {theirs.gas_used}, {len(ours.logs)} vs {len(theirs.logs)} logs)"
            )
    return f"{failed} differ from the header, and sequential execution gives the same receipts: the block's header or pre-state is wrong"
