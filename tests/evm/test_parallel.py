"""Parallel execution on generated blocks with known conflict patterns, and its building blocks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workers.evm import LocalPool, load_block, make_engine
from workers.evm.engine import TxResult
from workers.evm.execute import execute_sequential
from workers.evm.generate import generate_block
from workers.evm.parallel import dependency_bound, execute_parallel
from workers.evm.state import ACCOUNT, STORAGE, WIPE, Account, Credit, PreState, SequentialState, VersionedState

A, B = b"\x0a" * 20, b"\x0b" * 20


def run_both(path: Path, pool: Any) -> tuple[list[TxResult], list[TxResult], Any]:
    block = load_block(path)
    engine = make_engine("reference", block)
    pool.load(block)
    parallel, stats = execute_parallel(engine, pool)
    return parallel, execute_sequential(engine), stats


def assert_same(parallel: list[TxResult], sequential: list[TxResult]) -> None:
    assert [r.receipt_fields() for r in parallel] == [r.receipt_fields() for r in sequential]
    assert [dict(r.writes) for r in parallel] == [dict(r.writes) for r in sequential]


# Re-executions each pattern implies with two shards: none for independent work (credits to the
# beneficiary and to the hot account create no dependency); the pool chain re-runs the second shard.
EXPECTED_REEXECUTIONS = {"transfers": 0, "erc20": 0, "hot_account": 0, "deploy": 0}


@pytest.mark.parametrize("pattern", ["transfers", "erc20", "hot_account", "dex", "deploy"])
def test_generated_blocks_in_parallel_equal_sequential(pattern: str, tmp_path: Path) -> None:
    parallel, sequential, stats = run_both(generate_block(pattern, 120, tmp_path / pattern), LocalPool(workers=2))
    assert_same(parallel, sequential)
    bound, _ = dependency_bound(sequential)
    if pattern == "dex":
        assert bound == pytest.approx(1.0, abs=0.01)  # every swap reads the previous one's reserves
        assert stats.reexecuted == 60  # the second shard's 60 swaps all saw stale reserves, once each
    else:
        assert stats.reexecuted == EXPECTED_REEXECUTIONS[pattern]
        assert bound == pytest.approx(120.0, rel=0.05)


def test_the_hot_account_receives_credits_not_dependencies(tmp_path: Path) -> None:
    block = load_block(generate_block("hot_account", 50, tmp_path / "hot"))
    results = execute_sequential(make_engine("reference", block))
    hot = {tx.to for tx in block.transactions}
    assert len(hot) == 1
    key = (ACCOUNT, hot.pop())
    assert all(isinstance(r.writes[key], Credit) for r in results)
    assert all(key not in r.reads for r in results)
    assert all(isinstance(r.writes[(ACCOUNT, block.header.coinbase)], Credit) for r in results)


def test_generated_blocks_on_ray_shards(tmp_path: Path, ray_pool: Any) -> None:
    # 1,100 transfers make a round big enough to stream in chunks (two per shard, round robin).
    for pattern, count, reexecuted in (("transfers", 1100, 0), ("dex", 200, 100)):
        parallel, sequential, stats = run_both(generate_block(pattern, count, tmp_path / pattern), ray_pool)
        assert_same(parallel, sequential)
        assert stats.reexecuted == reexecuted


def test_a_large_independent_block_needs_one_round(tmp_path: Path) -> None:
    parallel, sequential, stats = run_both(generate_block("transfers", 2000, tmp_path / "t"), LocalPool(workers=2))
    assert_same(parallel, sequential)
    assert (stats.rounds, stats.reexecuted) == (1, 0)


# The multi-version state ------------------------------------------------------------------------


def test_reads_see_the_latest_write_plus_later_credits() -> None:
    state = VersionedState(PreState({A: Account(balance=100, nonce=1)}))
    state.set_writes(2, {(ACCOUNT, A): Credit(5)})
    state.set_writes(4, {(ACCOUNT, A): (7, 2, True)})
    state.set_writes(6, {(ACCOUNT, A): Credit(1)})
    assert state.read((ACCOUNT, A), 0) == (100, 1, True)
    assert state.read((ACCOUNT, A), 3) == (105, 1, True)
    assert state.read((ACCOUNT, A), 5) == (7, 2, True)
    assert state.read((ACCOUNT, A), 9) == (8, 2, True)
    assert state.read((ACCOUNT, B), 9) == (0, 0, False)


def test_a_zero_credit_makes_an_account_exist() -> None:
    state = VersionedState(PreState({}))
    state.set_writes(1, {(ACCOUNT, B): Credit(0)})
    assert state.read((ACCOUNT, B), 1) == (0, 0, False)
    assert state.read((ACCOUNT, B), 2) == (0, 0, True)


def test_a_wipe_hides_earlier_slots_but_not_its_own_writes() -> None:
    state = VersionedState(PreState({A: Account(storage={1: 11, 2: 22})}))
    state.set_writes(3, {(WIPE, A): True, (STORAGE, A, 2): 5})
    assert state.read((STORAGE, A, 1), 3) == 11
    assert state.read((STORAGE, A, 1), 4) == 0
    assert state.read((STORAGE, A, 2), 4) == 5
    sequential = SequentialState(state.pre)
    sequential.apply({(WIPE, A): True, (STORAGE, A, 2): 5})
    assert (sequential.read((STORAGE, A, 1)), sequential.read((STORAGE, A, 2))) == (0, 5)


def test_replacing_a_write_set_reports_what_changed() -> None:
    state = VersionedState(PreState({}))
    assert state.set_writes(1, {(STORAGE, A, 1): 1, (STORAGE, A, 2): 2}) == {(STORAGE, A, 1), (STORAGE, A, 2)}
    assert state.set_writes(1, {(STORAGE, A, 1): 1, (STORAGE, A, 3): 3}) == {(STORAGE, A, 2), (STORAGE, A, 3)}
    assert state.read((STORAGE, A, 2), 5) == 0


def test_the_critical_path_bound_follows_reads_of_earlier_writes() -> None:
    slot = (STORAGE, A, 1)
    results = [
        TxResult(0, True, gas_used=100, writes={slot: 1}),
        TxResult(1, True, gas_used=100, reads={slot: 1}, writes={slot: 2}),
        TxResult(2, True, gas_used=200),
    ]
    bound, dependencies = dependency_bound(results)
    assert dependencies == [[], [0], []]
    assert bound == pytest.approx(400 / 200)


def test_a_balance_read_depends_on_every_credit_since_the_last_write() -> None:
    key = (ACCOUNT, A)
    results = [
        TxResult(0, True, gas_used=1, writes={key: (1, 0, True)}),
        TxResult(1, True, gas_used=1, writes={key: Credit(1)}),
        TxResult(2, True, gas_used=1, writes={key: Credit(1)}),
        TxResult(3, True, gas_used=1, reads={key: (3, 0, True)}),
    ]
    assert dependency_bound(results)[1][3] == [0, 1, 2]


def test_a_long_chain_re_executes_each_stale_transaction_once(tmp_path: Path) -> None:
    parallel, sequential, stats = run_both(generate_block("dex", 1000, tmp_path / "dex"), LocalPool(workers=2))
    assert_same(parallel, sequential)
    # The second shard's 500 swaps ran once against stale reserves and once more, in local bursts.
    assert (stats.reexecuted, stats.local_executions) == (500, 500)


def test_reads_inside_a_reverted_call_stay_in_the_read_set(tmp_path: Path) -> None:
    block = load_block(generate_block("erc20", 2, tmp_path / "erc20"))
    engine = make_engine("reference", block)
    done = engine.execute(0, SequentialState(block.pre_state))
    slots = {key: value for key, value in done.writes.items() if key[0] == STORAGE}
    sender_slot = min(slots, key=lambda key: slots[key] - done.reads[key])  # the balance that went down
    broke = SequentialState(block.pre_state)
    broke.apply({sender_slot: 0})  # the same transfer, from an empty token balance: the token reverts
    reverted = engine.execute(0, broke)
    assert reverted.valid and not reverted.success and reverted.logs == ()
    assert reverted.reads[sender_slot] == 0
    assert not any(key[0] == STORAGE for key in reverted.writes)


def test_a_mismatch_names_the_first_transaction_that_differs_from_sequential(tmp_path: Path) -> None:
    """A shard that returns a wrong receipt (a faulty or dishonest worker) is caught by the header
    checks, and the report names the transaction."""
    from workers.evm import run_block
    from workers.evm.pool import Shard

    class FaultyShard(Shard):
        def run(self, batch: Any, updates: Any) -> list[TxResult]:
            return [r._replace(gas_used=r.gas_used + 1) if r.index == 7 else r for r in super().run(batch, updates)]

    block = load_block(generate_block("transfers", 20, tmp_path / "t"))
    pool = LocalPool(workers=2)
    pool.shards = [FaultyShard(), FaultyShard()]
    pool.load(block)
    report = run_block(block, pool=pool)
    assert not report.verified and report.checks["gas_used"] is False
    assert "transaction 7 " in (report.mismatch or "") and "first whose receipt differs" in (report.mismatch or "")
