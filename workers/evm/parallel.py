"""Parallel block execution that gives exactly the sequential result (optimistic, Block-STM style).

1. Every transaction runs at once, spread over the pool's shards, against the pre-state.
2. The coordinator keeps a multi-version state (`VersionedState`) of every transaction's latest
   write set and validates each transaction's read set against it: a transaction is valid when
   every location it read still has the value it saw, given the write sets of all transactions
   before it. Credits (fees to the beneficiary, value transfers) do not conflict unless read.
3. Invalid transactions run again, against the newer state, and only those whose estimated
   dependencies are settled (no earlier pending transaction writes what they read): a dependency
   chain does not run n times. Write sets that changed are shipped to the shards; each round
   re-validates only the readers of the locations that changed. Repeat until nothing is pending.

When a round would run only one transaction (the lowest pending one, a serial chain) the
coordinator runs a burst of the lowest pending transactions itself: a remote round costs
milliseconds, a transaction far less, and the lowest pending transaction is always final.

At the end every transaction is valid against the final write sets of those before it, so by
induction each one saw exactly what sequential execution shows it: the results are identical.
"""
from __future__ import annotations

import bisect
import contextlib
import gc
import heapq
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .engine import Engine, TxResult
from .errors import InvalidTransaction
from .state import STORAGE, WIPE, Credit, Key, VersionedState, observed

BURST = 64  # transactions the coordinator runs itself once a round degenerates to a serial chain


class ShardPool(Protocol):
    """Where the transactions of a round run: ``run(chunks, updates)`` runs chunk ``i`` on shard
    ``i % workers`` and yields each chunk's results in chunk order. ``updates`` holds the write sets
    that changed since the previous round (by index); every shard receives them first."""

    workers: int

    def run(self, chunks: Sequence[Sequence[int]], updates: Mapping[int, Mapping[Key, Any]]) -> Iterator[list[TxResult]]: ...


@dataclass
class ParallelStats:
    """How the parallel execution went (the dependency figures come from the final results)."""

    transactions: int = 0
    executions: int = 0
    rounds: int = 0
    local_executions: int = 0
    elapsed_s: float = 0.0

    @property
    def reexecuted(self) -> int:
        return self.executions - self.transactions


@dataclass
class _Schedule:
    """The coordinator's bookkeeping: latest results, what is pending, who read what."""

    state: VersionedState
    results: list[TxResult | None]
    pending: set[int] = field(default_factory=set)
    readers: dict[Key, list[int]] = field(default_factory=dict)  # sorted transaction indices
    unsynced: dict[int, Mapping[Key, Any]] = field(default_factory=dict)
    gas_limits: list[int] = field(default_factory=list)
    pending_heap: list[int] = field(default_factory=list)  # lazily pruned: min(pending) in O(log n)
    burst: int = BURST


def execute_parallel(engine: Engine, pool: ShardPool, *, progress: Callable[[int, int], None] | None = None) -> tuple[list[TxResult], ParallelStats]:
    """Execute ``engine.block`` over ``pool``; the results equal sequential execution's."""
    # Results arrive by the thousand and are all acyclic: the cyclic garbage collector, triggered
    # by every 700 allocations, would otherwise walk them over and over (measured: a third of
    # the coordinator's time on a 5,000-transaction block).
    with gc_paused():
        return _execute_parallel(engine, pool, progress)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything acyclic)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _execute_parallel(engine: Engine, pool: ShardPool, progress: Callable[[int, int], None] | None) -> tuple[list[TxResult], ParallelStats]:
    started = time.perf_counter()
    count = len(engine.block.transactions)
    schedule = _Schedule(
        VersionedState(engine.block.pre_state),
        [None] * count,
        pending=set(range(count)),
        gas_limits=[tx.gas for tx in engine.block.transactions],
        pending_heap=list(range(count)),
    )
    stats = ParallelStats(transactions=count)
    ready = list(range(count))
    while ready:
        if len(ready) > 1:
            schedule.burst = BURST
            _run_round(schedule, pool, ready, stats)
        else:
            _run_burst(schedule, engine, stats)
            # A chain that goes on: longer bursts, fewer scans of the pending set.
            schedule.burst = min(schedule.burst * 2, 4096)
        if progress:
            progress(count - len(schedule.pending), count)
        ready = _ready(schedule)
    stats.elapsed_s = time.perf_counter() - started
    results = [result for result in schedule.results if result is not None]
    for result in results:
        if not result.valid:
            raise InvalidTransaction(result.index, result.error or "invalid")
    return results, stats


def _run_round(schedule: _Schedule, pool: ShardPool, ready: list[int], stats: ParallelStats) -> None:
    chunks = _split(ready, schedule.results, _chunk_count(len(ready), pool.workers), schedule.gas_limits)
    updates, schedule.unsynced = schedule.unsynced, {}
    stats.rounds += 1
    stats.executions += len(ready)
    earlier = _RoundWrites()
    for results in pool.run(chunks, updates):
        _apply(schedule, results, earlier)


def _chunk_count(ready: int, workers: int) -> int:
    """Shards get one contiguous chunk each, or for a big round several, round robin: the
    coordinator then validates early chunks while the shards run later ones. Every chunk boundary
    between shards is a place where a transaction may miss an earlier one's writes, so small
    rounds are not cut further."""
    return workers * max(1, min(8, ready // 512))


def _run_burst(schedule: _Schedule, engine: Engine, stats: ParallelStats) -> None:
    """Run the lowest pending transactions here, one after another: each is final when it runs."""
    stats.rounds += 1
    heap = schedule.pending_heap
    for _ in range(schedule.burst):
        while heap and heap[0] not in schedule.pending:
            heapq.heappop(heap)
        if not heap:
            return
        index = heap[0]
        result = engine.execute(index, schedule.state.view(index))
        stats.executions += 1
        stats.local_executions += 1
        _apply(schedule, [result])


@dataclass
class _RoundWrites:
    """What the chunks of the current round applied so far wrote (see `_apply`)."""

    keys: set[Key] = field(default_factory=set)
    wiped: bool = False


def _apply(schedule: _Schedule, results: list[TxResult], earlier: _RoundWrites | None = None) -> None:
    """Record new results (one chunk, in block order), then re-validate every transaction whose
    reads may have changed.

    Chunks of a round arrive in block order. A shard ran its chunk against the state of the round's
    start plus its own earlier chunks, so a transaction can only have missed the writes of earlier
    chunks of the same round: one whose reads avoid every location those wrote needs no validation
    here (a set test instead of a read per location). Transactions of earlier rounds are
    re-validated through the readers index.
    """
    earlier = earlier if earlier is not None else _RoundWrites()
    to_validate: set[int] = set()
    for result in results:
        index = result.index
        _forget_reads(schedule, index)
        schedule.results[index] = result
        schedule.pending.discard(index)
        changed = schedule.state.set_writes(index, result.writes)
        if changed:
            schedule.unsynced[index] = result.writes
        for key in changed:
            to_validate.update(_affected_readers(schedule, key, index))
        _index_reads(schedule, index, result)
        if earlier.wiped or not earlier.keys.isdisjoint(result.reads):
            to_validate.add(index)
    for result in results:
        earlier.keys.update(result.writes)
        earlier.wiped = earlier.wiped or any(key[0] == WIPE for key in result.writes)
    for index in sorted(to_validate):
        if index not in schedule.pending and not _valid(schedule, index):
            schedule.pending.add(index)
            heapq.heappush(schedule.pending_heap, index)
            _forget_reads(schedule, index)


def _valid(schedule: _Schedule, index: int) -> bool:
    result = schedule.results[index]
    assert result is not None
    read = schedule.state.read
    return all(observed(key, read(key, index)) == value for key, value in result.reads.items())


def _read_index_keys(key: Key) -> tuple[Key, ...]:
    # A wipe changes every slot of the account: storage readers are also indexed under it.
    return (key, (WIPE, key[1])) if key[0] == STORAGE else (key,)


def _index_reads(schedule: _Schedule, index: int, result: TxResult) -> None:
    for key in result.reads:
        for indexed in _read_index_keys(key):
            bisect.insort(schedule.readers.setdefault(indexed, []), index)


def _forget_reads(schedule: _Schedule, index: int) -> None:
    """Pending transactions leave the readers index: they run again anyway."""
    result = schedule.results[index]
    if result is None:
        return
    for key in result.reads:
        for indexed in _read_index_keys(key):
            readers = schedule.readers.get(indexed)
            if readers:
                position = bisect.bisect_left(readers, index)
                if position < len(readers) and readers[position] == index:
                    del readers[position]


def _affected_readers(schedule: _Schedule, key: Key, index: int) -> list[int]:
    """Readers of ``key`` that may have seen ``index``'s write: those after it, up to and including
    the next transaction that overwrites the key (later readers see that one's value instead).
    A credit does not hide an earlier write, and a wipe is followed up to the next wipe."""
    readers = schedule.readers.get(key)
    if not readers:
        return []
    start = bisect.bisect_right(readers, index)
    if start == len(readers):
        return []
    end = _next_overwrite(schedule.state, key, index)
    stop = len(readers) if end is None else bisect.bisect_right(readers, end)
    return readers[start:stop]


def _next_overwrite(state: VersionedState, key: Key, index: int) -> int | None:
    writers = state.writers_of(key)
    position = bisect.bisect_right(writers, index)
    while position < len(writers):
        writer = writers[position]
        if not isinstance(state.writes[writer][key], Credit):
            return writer
        position += 1
    return None


def _ready(schedule: _Schedule) -> list[int]:
    """Pending transactions none of whose reads an earlier pending transaction (last) wrote.

    The lowest pending transaction is always ready: everything before it is final.
    """
    ready: list[int] = []
    blocked: set[Key] = set()
    for index in sorted(schedule.pending):
        result = schedule.results[index]
        assert result is not None
        depends = any(indexed in blocked for key in result.reads for indexed in _read_index_keys(key))
        if not ready or not depends:
            ready.append(index)
        blocked.update(result.writes)
    return ready


def _split(indices: list[int], results: Sequence[TxResult | None], parts: int, gas_limits: Sequence[int]) -> list[list[int]]:
    """Contiguous chunks of about equal estimated gas: the last known gas use, else the gas limit."""
    if parts <= 1 or len(indices) <= 1:
        return [list(indices)]
    weights = [_weight(results[index], gas_limits[index]) for index in indices]
    total, target = sum(weights), sum(weights) / parts
    batches: list[list[int]] = [[] for _ in range(parts)]
    running = 0.0
    for index, weight in zip(indices, weights):
        slot = min(int(running / target), parts - 1) if total else 0
        batches[slot].append(index)
        running += weight
    return [batch for batch in batches if batch]


def _weight(result: TxResult | None, gas_limit: int) -> float:
    # A gas limit overstates use (often 1.5x), but it ranks transactions well before they run.
    return float(result.gas_used if result is not None and result.gas_used else gas_limit)


def dependency_bound(results: Sequence[TxResult]) -> tuple[float, list[list[int]]]:
    """The critical-path bound on speedup: total gas / gas on the longest dependency chain.

    Transaction ``i`` depends on ``j < i`` when ``i`` read a location whose value came from ``j``'s
    final write set: the latest absolute writer before ``i`` and every credit after it (for
    storage, also the latest wipe). Returns the bound and each transaction's dependencies.
    """
    writers: dict[Key, list[int]] = {}
    for result in results:
        for key in result.writes:
            writers.setdefault(key, []).append(result.index)
    writes = {result.index: result.writes for result in results}
    dependencies = [sorted(_sources(result, writers, writes)) for result in results]
    chain: list[int] = []
    for result, deps in zip(results, dependencies):
        chain.append(max(1, result.gas_used) + max((chain[j] for j in deps), default=0))
    total = sum(max(1, result.gas_used) for result in results)
    return (total / max(chain) if chain else 1.0), dependencies


def _sources(result: TxResult, writers: Mapping[Key, list[int]], writes: Mapping[int, Mapping[Key, Any]]) -> set[int]:
    sources: set[int] = set()
    for key in result.reads:
        found = writers.get(key, [])
        position = bisect.bisect_left(found, result.index) - 1
        # Walk back over credits to the latest absolute write: the value read is the sum of them all.
        while position >= 0:
            writer = found[position]
            sources.add(writer)
            if not isinstance(writes[writer][key], Credit):
                break
            position -= 1
        if key[0] == STORAGE:
            wipes = writers.get((WIPE, key[1]), [])
            position = bisect.bisect_left(wipes, result.index) - 1
            if position >= 0:
                sources.add(wipes[position])
    return sources
