"""The native engine's bindings (`workers.evm._native`, `workers.evm.native`) and its integration.

Bindings-level tests: bad input raises ValueError/TypeError/MalformedBlock naming the field (never a
panic), an exception a Python view raises comes back as itself, results convert to the reference
engine's types. The differential tests (native against reference on every mainnet block) live
elsewhere; `diff_results` is their helper and is tested here on synthetic results.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.evm.conftest import mainnet_dir
from workers.evm import EngineUnavailable, EvmError, MalformedBlock, load_block, make_engine, run_block
from workers.evm import native as native_py
from workers.evm.engine import TxResult
from workers.evm.native import UNAVAILABLE, diff_results, native_fields
from workers.evm.state import Credit, SequentialState

needs_native = pytest.mark.skipif(not native_py.available(), reason=UNAVAILABLE)

FRONTIER = 46147  # one plain transfer
CANCUN = 19933122  # 45 transactions: contracts, logs, credits


def block(number: int) -> Any:
    return load_block(mainnet_dir() / str(number))


def executor_works() -> bool:
    """Whether `evm::execute_tx` is implemented in this build (the bindings are tested either way)."""
    engine = make_engine("native", block(FRONTIER))
    try:
        engine.execute(0, SequentialState(engine.block.pre_state))
    except EvmError as exc:
        return "not implemented" not in str(exc)
    return True


needs_executor = pytest.mark.skipif(not native_py.available() or not executor_works(),
                                    reason="the native executor is not implemented in this build")


# Without the extension ------------------------------------------------------------------------------


def test_without_the_extension_the_native_engine_is_unavailable_and_says_how_to_build_it(monkeypatch) -> None:
    monkeypatch.setattr(native_py, "_native_module", None)
    monkeypatch.setitem(sys.modules, "workers.evm._native", None)  # makes the import fail
    with pytest.raises(EngineUnavailable, match="the native engine is not built: run make"):
        make_engine("native", block(FRONTIER))
    assert not native_py.available()


def test_an_unknown_engine_is_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="unknown engine 'pyevm'; available: native, reference"):
        make_engine("pyevm", block(FRONTIER))


# diff_results ---------------------------------------------------------------------------------------


def test_diff_results_names_the_transaction_the_location_and_both_values() -> None:
    address = bytes.fromhex("aa" * 20)
    ref = TxResult(index=3, valid=True, success=True, gas_used=21000, logs=(),
                   reads={(0, address): (5, 1, True), (2, address, 1): 7},
                   writes={(0, address): Credit(10), (2, address, 1): 8})
    same = TxResult(*ref)
    assert diff_results([ref], [same]) == []
    nat = ref._replace(gas_used=21001, reads={(0, address): (5, 1, True)},
                       writes={(0, address): (10, 0, True), (2, address, 1): 9})
    lines = diff_results([ref], [nat])
    assert "tx 3: gas_used: reference 21000, native 21001" in lines
    assert f"tx 3: read storage:0x{'aa' * 20}:0x1: reference 0x7, native absent" in lines
    assert f"tx 3: write account:0x{'aa' * 20}: reference Credit(10), native (10, 0, True)" in lines
    assert f"tx 3: write storage:0x{'aa' * 20}:0x1: reference 0x8, native 0x9" in lines
    assert diff_results([ref], []) == ["result count: reference 1, native 0"]
    assert len(diff_results([ref], [nat], limit=2)) == 2


def test_diff_results_tells_a_credit_from_the_same_amount_as_a_plain_value() -> None:
    address = bytes(20)
    ref = TxResult(index=0, valid=True, writes={(0, address): Credit(5)})
    nat = TxResult(index=0, valid=True, writes={(0, address): (5,)})  # equal as tuples
    assert diff_results([ref], [nat]) == [f"tx 0: write account:0x{'00' * 20}: reference Credit(5), native (5,)"]


# NativeBlock: bad input -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fields() -> dict[str, Any]:
    return native_fields(block(CANCUN))


def build(fields: dict[str, Any], **changes: Any) -> Any:
    return native_py.native_module().NativeBlock(**{**fields, **changes})


def with_tx(fields: dict[str, Any], position: int, value: Any) -> list[Any]:
    tx = list(fields["transactions"][0])
    tx[position] = value
    return [tuple(tx)] + fields["transactions"][1:]


def with_account(fields: dict[str, Any], position: int, value: Any) -> list[Any]:
    account = list(fields["accounts"][0])
    account[position] = value
    return [tuple(account)] + fields["accounts"][1:]


@needs_native
def test_a_valid_block_builds(fields) -> None:
    native_block = build(fields)
    assert len(native_block) == 45 and native_block.number == CANCUN


@needs_native
@pytest.mark.parametrize(("change", "error", "message"), [
    (lambda f: {"gas_limit": -1}, ValueError, "block.gas_limit: must not be negative"),
    (lambda f: {"gas_limit": 2**64}, ValueError, "block.gas_limit: over 2\\*\\*64-1"),
    (lambda f: {"difficulty": 2**256}, ValueError, "block.difficulty: over 2\\*\\*256-1"),
    (lambda f: {"difficulty": -5}, ValueError, "block.difficulty: must not be negative"),
    (lambda f: {"difficulty": "1"}, TypeError, "block.difficulty: must be an int, not str"),
    (lambda f: {"base_fee": 1.5}, TypeError, "block.base_fee: must be an int, not float"),
    (lambda f: {"coinbase": b"\x01" * 19}, ValueError, "block.coinbase: an address is 20 bytes, got 19"),
    (lambda f: {"coinbase": "0x" + "00" * 20}, TypeError, "block.coinbase: must be bytes"),
    (lambda f: {"mix_hash": b""}, ValueError, "block.mix_hash: must be 32 bytes, got 0"),
    (lambda f: {"block_hashes": {1: b"\x00"}}, ValueError, "block_hashes\\[1\\]: must be 32 bytes"),
    (lambda f: {"block_hashes": [1]}, TypeError, "block.block_hashes: must be a dict"),
    (lambda f: {"transactions": [(0, 1)]}, ValueError, "transactions\\[0\\]: must be a tuple of 14 fields, got 2"),
    (lambda f: {"transactions": 5}, TypeError, "transactions: must be a sequence"),
    (lambda f: {"transactions": with_tx(f, 7, -1)}, ValueError, "transactions\\[0\\].value: must not be negative"),
    (lambda f: {"transactions": with_tx(f, 7, 2**256)}, ValueError, "transactions\\[0\\].value: over 2\\*\\*256-1"),
    (lambda f: {"transactions": with_tx(f, 3, 2**64)}, ValueError, "transactions\\[0\\].nonce: over 2\\*\\*64-1"),
    (lambda f: {"transactions": with_tx(f, 0, 4)}, ValueError, "transactions\\[0\\].type: unknown transaction type 4"),
    (lambda f: {"transactions": with_tx(f, 2, b"\x00")}, ValueError, "transactions\\[0\\].to: an address is 20 bytes"),
    (lambda f: {"transactions": with_tx(f, 9, [(b"\x00" * 20, [-1])])}, ValueError,
     "transactions\\[0\\].access_list\\[0\\].slots\\[0\\]: must not be negative"),
    (lambda f: {"transactions": with_tx(f, 11, [b"\x01"])}, ValueError,
     "transactions\\[0\\].blob_hashes\\[0\\]: must be 32 bytes"),
    (lambda f: {"transactions": with_tx(f, 13, 5)}, TypeError, "transactions\\[0\\].static_error: must be a str or None"),
    (lambda f: {"accounts": with_account(f, 1, -1)}, ValueError, "accounts\\[0x[0-9a-f]{40}\\].balance: must not be negative"),
    (lambda f: {"accounts": with_account(f, 5, {2**256: 1})}, ValueError, "storage key: over 2\\*\\*256-1"),
    (lambda f: {"accounts": with_account(f, 5, {1: -1})}, ValueError, "storage\\[1\\]: must not be negative"),
    (lambda f: {"accounts": with_account(f, 4, None)}, TypeError, "code: must be bytes"),
    (lambda f: {"accounts": [(b"\x00" * 20,)]}, ValueError, "accounts\\[0\\]: must be a tuple of 6 fields, got 1"),
])
def test_bad_input_raises_an_error_naming_the_field_never_a_panic(fields, change, error, message) -> None:
    with pytest.raises(error, match=message):
        build(fields, **change(fields))


@needs_native
def test_an_unknown_fork_is_a_malformed_block(fields) -> None:
    with pytest.raises(MalformedBlock, match='block.fork: unknown fork "prague"') as caught:
        build(fields, fork="prague")
    assert caught.value.field == "block.fork"


@needs_native
def test_the_largest_values_are_accepted(fields) -> None:
    accounts = with_account(fields, 1, 2**256 - 1)
    first = accounts[0]
    accounts = [(*first[:5], {2**256 - 1: 2**256 - 1, 0: 1})] + accounts[1:]
    assert len(build(fields, accounts=accounts, difficulty=2**256 - 1, gas_limit=2**64 - 1))


@needs_native
def test_an_index_out_of_range_is_an_index_error() -> None:
    engine = make_engine("native", block(FRONTIER))
    with pytest.raises(IndexError):
        engine.execute(1, SequentialState(engine.block.pre_state))


# Execution through a Python view --------------------------------------------------------------------


class Boom(Exception):
    pass


class FailingView:
    """Raises on the n-th read (0: the first)."""

    def __init__(self, inner: Any, after: int = 0) -> None:
        self.inner, self.after, self.reads, self.error = inner, after, 0, Boom("the view broke")

    def read(self, key: Any) -> Any:
        self.reads += 1
        if self.reads > self.after:
            raise self.error
        return self.inner.read(key)


@needs_executor
@pytest.mark.parametrize("after", [0, 1, 3])
def test_an_exception_the_view_raises_propagates_as_itself(after) -> None:
    engine = make_engine("native", block(CANCUN))
    view = FailingView(SequentialState(engine.block.pre_state), after)
    with pytest.raises(Boom) as caught:
        engine.execute(0, view)
    assert caught.value is view.error


@needs_executor
def test_a_view_value_of_the_wrong_type_is_a_type_error() -> None:
    engine = make_engine("native", block(FRONTIER))

    class Garbage:
        def read(self, key: Any) -> Any:
            return "not an account"

    with pytest.raises((TypeError, ValueError), match="the view's value of account"):
        engine.execute(0, Garbage())


@needs_executor
@pytest.mark.parametrize("number", [FRONTIER, CANCUN])
def test_results_through_a_python_view_are_the_reference_engines(number) -> None:
    reference = make_engine("reference", block(number))
    native = make_engine("native", reference.block)
    ref_state, nat_state = SequentialState(reference.block.pre_state), SequentialState(reference.block.pre_state)
    ref_results, nat_results = [], []
    for index in range(len(reference.block.transactions)):
        ref_results.append(reference.execute(index, ref_state))
        nat_results.append(native.execute(index, nat_state))
        ref_state.apply(ref_results[-1].writes)
        nat_state.apply(nat_results[-1].writes)
    assert diff_results(ref_results, nat_results) == []
    for result in nat_results:
        assert type(result) is TxResult and type(result.reads) is dict and type(result.writes) is dict
        for key, value in result.writes.items():
            assert type(key) is tuple
            if key[0] == 0:
                assert type(value) in (tuple, Credit)
        for address, topics, data in result.logs:
            assert type(address) is bytes and type(topics) is tuple and type(data) is bytes
            assert all(type(topic) is int for topic in topics)


@needs_executor
@pytest.mark.parametrize("threads", [1, 2])
def test_a_whole_block_runs_natively_with_the_sequential_results(threads) -> None:
    engine = make_engine("native", block(CANCUN))
    results, stats = engine.run(threads)
    from workers.evm.execute import execute_sequential

    assert diff_results(execute_sequential(make_engine("reference", engine.block)), results) == []
    assert stats.transactions == len(results) == 45 and stats.executions >= 45


@needs_executor
@pytest.mark.parametrize("threads", [1, 2])
def test_run_block_with_the_native_engine_verifies_and_reports_its_threads(threads) -> None:
    report = run_block(block(CANCUN), engine="native", threads=threads)
    assert report.verified and report.engine == "native" and report.threads == threads
    assert report.as_json()["threads"] == threads


@needs_executor
def test_the_shard_pool_path_runs_the_native_engine_per_transaction() -> None:
    from workers.evm import LocalPool

    pool = LocalPool(workers=2, engine="native")
    target = block(CANCUN)
    pool.load(target)
    report = run_block(target, engine="native", pool=pool)
    assert report.verified and report.workers == 2 and report.threads == 1


@needs_executor
def test_the_cli_benches_the_native_engine_side_by_side(capsys, tmp_path: Path) -> None:
    from workers.evm.cli import main

    out = tmp_path / "bench.json"
    code = main(["bench", str(mainnet_dir() / str(CANCUN)), "--engine", "native", "--repeat", "1",
                 "--generate", "", "--threads", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "ref s" in printed and "native s" in printed and "par speedup" in printed and "bound" in printed
    assert "median native/reference speedup" in printed
    assert '"same": "yes"' in out.read_text()


@needs_executor
def test_the_cli_runs_a_block_on_native_threads(capsys) -> None:
    from workers.evm.cli import main

    assert main(["run", str(mainnet_dir() / str(CANCUN)), "--engine", "native", "--threads", "2"]) == 0
    assert "on 2 thread(s) [native]" in capsys.readouterr().out


@needs_executor
@pytest.mark.parametrize("threads", [1, 2])
def test_a_missing_block_hash_is_missing_state(threads) -> None:
    from dataclasses import replace

    from workers.evm import MissingState

    target = replace(block(19923400), block_hashes={})  # reads BLOCKHASH
    with pytest.raises(MissingState, match="BLOCKHASH"):
        make_engine("native", target).run(threads)



@needs_executor
def test_an_evm_block_job_runs_the_native_engine_on_threads_without_shards() -> None:
    import base64

    from workers.evm import bundle_directory
    from workers.runtime.evm_job import execute_blocks
    from workers.runtime.runner import ProgressReporter
    from workers.runtime.spec import JobSpec

    bundle = bundle_directory(mainnet_dir() / str(CANCUN))
    spec = JobSpec(job_id=3, attempt=1, kind="evm_block", spec={"blocks": [11], "workers": 2, "engine": "native"},
                   gpus=1, node_id=7, inputs={"11": base64.b64encode(bundle).decode()})

    def no_shards(workers: int, engine: str, reporter: ProgressReporter) -> None:
        raise AssertionError("the native engine runs on threads, not on shards")

    reporter = ProgressReporter()
    output = execute_blocks(spec, reporter, no_shards)
    assert output["engine"] == "native" and output["totals"]["verified"]
    threads = output["blocks"][0]["threads"]
    assert output["workers"] == threads and 1 <= threads <= 2


@needs_executor
@pytest.mark.parametrize(("threads", "through_view"), [(1, False), (2, False), (1, True)])
def test_compare_engines_finds_no_difference_on_a_mainnet_block(threads, through_view) -> None:
    from workers.evm.native import compare_engines

    assert compare_engines(block(CANCUN), threads, through_view=through_view) == []


@needs_executor
def test_python_threads_may_execute_at_once() -> None:
    """Each `execute` runs on the one big-stack thread, which takes the GIL only while it runs."""
    from concurrent.futures import ThreadPoolExecutor

    engine = make_engine("native", block(CANCUN))

    def whole_block(_: int) -> list[TxResult]:
        state, results = SequentialState(engine.block.pre_state), []
        for index in range(len(engine.block.transactions)):
            results.append(engine.execute(index, state))
            state.apply(results[-1].writes)
        return results

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(whole_block, range(4)))
    expected, _ = engine.run(1)
    assert all(run == expected for run in runs)
