"""The native engine against the reference engine (py-evm, the oracle), transaction by transaction:
receipt fields, read sets and write sets must be equal, sequentially and in parallel (native
threads, and the Python scheduler over shards), and every header check must pass.

The reference results come from `test_mainnet.sequential` (computed once per session).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from workers.evm import LocalPool, load_block, make_engine, run_block
from workers.evm.engine import TxResult
from workers.evm.execute import execute_sequential
from workers.evm.generate import PATTERNS, generate_block
from workers.evm.native import NativeEngine, available, diff_results
from workers.evm.parallel import execute_parallel
from workers.evm.state import SequentialState

from .conftest import mainnet_dir, mainnet_index
from .test_mainnet import sequential

BLOCKS = mainnet_index()
IDS = [str(entry["number"]) for entry in BLOCKS]


@pytest.fixture(scope="module", autouse=True)
def native_is_built() -> None:
    # Not a skip: `make test` builds the extension, so its absence is a failure to report.
    assert available(), "the native engine is not built (run make)"


def assert_same(reference: Sequence[TxResult], native: Sequence[TxResult]) -> None:
    """Equal transaction by transaction: validity, receipt, reads and writes (first differences named)."""
    assert len(native) == len(reference)
    differences = diff_results(list(reference), list(native), limit=10)
    assert not differences, "\n".join(differences)
    for ours, theirs in zip(native, reference):  # and literally equal, in case the differ misses something
        assert (ours.index, ours.valid, ours.receipt_fields()) == (theirs.index, theirs.valid, theirs.receipt_fields())
        assert dict(ours.reads) == dict(theirs.reads) and dict(ours.writes) == dict(theirs.writes)


@lru_cache(maxsize=None)
def native_engine(number: int) -> NativeEngine:
    return NativeEngine(load_block(mainnet_dir() / str(number)))


@pytest.mark.parametrize("entry", BLOCKS, ids=IDS)
def test_native_sequential_equals_the_reference(entry: dict[str, Any]) -> None:
    results, stats = native_engine(entry["number"]).run(1)
    assert_same(sequential(entry["number"]), results)
    assert stats.executions == stats.transactions == entry["transactions"]


@pytest.mark.parametrize("entry", BLOCKS, ids=IDS)
def test_native_parallel_on_two_threads_equals_the_reference(entry: dict[str, Any]) -> None:
    results, stats = native_engine(entry["number"]).run(2)
    assert_same(sequential(entry["number"]), results)
    assert stats.executions >= stats.transactions


@pytest.mark.parametrize("entry", BLOCKS, ids=IDS)
def test_native_passes_the_header_checks(entry: dict[str, Any]) -> None:
    block = load_block(mainnet_dir() / str(entry["number"]))
    for threads in (1, 2):
        report = run_block(block, engine="native", threads=threads)
        assert report.verified, report.mismatch
        assert set(report.checks) == set(entry["checks"])
        assert (report.engine, report.threads, report.gas_used) == ("native", threads, entry["gas_used"])


@pytest.mark.parametrize("entry", BLOCKS[::6], ids=IDS[::6])
def test_native_per_transaction_over_a_python_view_equals_the_reference(entry: dict[str, Any]) -> None:
    """The engine protocol itself (what the shards call): one transaction against a Python view."""
    engine = native_engine(entry["number"])
    state = SequentialState(engine.block.pre_state)
    results = []
    for index in range(len(engine.block.transactions)):
        result = engine.execute(index, state)
        state.apply(result.writes)
        results.append(result)
    assert_same(sequential(entry["number"]), results)


@pytest.mark.parametrize("entry", [BLOCKS[-1], BLOCKS[len(BLOCKS) // 2]], ids=[IDS[-1], IDS[len(BLOCKS) // 2]])
def test_the_python_scheduler_runs_unchanged_on_the_native_engine(entry: dict[str, Any]) -> None:
    block = load_block(mainnet_dir() / str(entry["number"]))
    pool = LocalPool(workers=2, engine="native")
    pool.load(block)
    results, stats = execute_parallel(make_engine("native", block), pool)
    assert_same(sequential(entry["number"]), results)
    assert stats.executions == stats.transactions + stats.reexecuted


@lru_cache(maxsize=None)
def generated(pattern: str, directory: str) -> Path:
    return generate_block(pattern, 300, Path(directory) / pattern, seed=7)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_generated_blocks_of_every_pattern(pattern: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    block = load_block(generated(pattern, str(tmp_path_factory.getbasetemp() / "native-diff")))
    reference = execute_sequential(make_engine("reference", block))
    engine = NativeEngine(block)
    for threads in (1, 2, 4):
        results, _ = engine.run(threads)
        assert_same(reference, results)
    report = run_block(block, engine="native", threads=2)
    assert report.verified, report.mismatch
