"""Synthetic blocks (workers.evm.generate): valid, self-consistent, deterministic, with the
dependency structure each pattern promises."""
from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import rlp

from workers.evm.block import Block, load_block
from workers.evm.contracts import AssemblyError, assemble, stored_runtime
from workers.evm.contracts.programs import TRANSFER_TOPIC, pool_amount_out
from workers.evm.engine import TxResult, block_bloom, build_receipts, receipts_root
from workers.evm.engine import trie_root
from workers.evm.execute import execute_sequential
from workers.evm.generate import DEX_RESERVES, PATTERNS, generate_block, main
from workers.evm.reference import ReferenceEngine
from workers.evm.state import ACCOUNT, CODE, STORAGE, Credit

TXS = 100


def run(path: Path) -> tuple[Block, list[TxResult]]:
    """Load a generated block, execute it in order (the engine recovers every sender from its
    signature first) and check its header."""
    block = load_block(path)
    results = execute_sequential(ReferenceEngine(block))
    assert all(result.success for result in results)
    receipts = build_receipts(block, results)
    assert receipts[-1].cumulative_gas_used == block.header.gas_used
    assert block_bloom(receipts) == block.header.logs_bloom
    assert receipts_root(block, receipts) == block.header.receipts_root
    return block, results


def dependencies(results: Sequence[TxResult]) -> list[tuple[int, int, tuple]]:
    """(reader, writer, location) for every location a transaction read after an earlier one wrote
    it. A credit that is never read is no dependency; a read one is."""
    last_writer: dict[tuple, int] = {}
    found = []
    for result in results:
        found += [(result.index, last_writer[key], key) for key in result.reads if key in last_writer]
        last_writer.update((key, result.index) for key in result.writes)
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Block, list[TxResult]]]:
    """Every pattern at 100 transactions, generated and executed once for the module."""
    root = tmp_path_factory.mktemp("generated")
    return {pattern: run(generate_block(pattern, TXS, root / pattern)) for pattern in PATTERNS}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_is_a_valid_cancun_block(pattern: str, generated: dict) -> None:
    block, results = generated[pattern]
    assert block.header.fork == "cancun" and len(results) == TXS
    assert {tx.type for tx in block.transactions} == {2}
    assert len({tx.sender for tx in block.transactions}) == TXS  # distinct senders everywhere
    assert block.header.gas_limit >= sum(tx.gas for tx in block.transactions)
    coinbase = (ACCOUNT, block.header.coinbase)
    # The beneficiary earns priority fees as credits and nobody reads its balance.
    assert all(isinstance(result.writes[coinbase], Credit) and coinbase not in result.reads for result in results)


@pytest.mark.parametrize("pattern", ["transfers", "erc20", "hot_account", "deploy"])
def test_independent_patterns_have_no_dependencies(pattern: str, generated: dict) -> None:
    _, results = generated[pattern]
    assert dependencies(results) == []


def test_hot_account_only_receives_credits(generated: dict) -> None:
    block, results = generated["hot_account"]
    hot = {tx.to for tx in block.transactions}
    assert len(hot) == 1
    key = (ACCOUNT, hot.pop())
    assert all(isinstance(result.writes[key], Credit) and key not in result.reads for result in results)


def test_erc20_transfers_emit_one_transfer_log_each(generated: dict) -> None:
    block, results = generated["erc20"]
    logs = [log for result in results for log in result.logs]
    assert len(logs) == TXS
    assert len({tx.to for tx in block.transactions}) == 1  # one token
    for tx, result in zip(block.transactions, results):
        (address, topics, data), = result.logs
        assert address == tx.to and topics[0] == TRANSFER_TOPIC and topics[1] == int.from_bytes(tx.sender, "big")
        assert len(data) == 32 and int.from_bytes(data, "big") > 0
        # Two balance slots change: the sender's and its recipient's.
        assert len([key for key in result.writes if key[0] == STORAGE]) == 2


def test_dex_is_a_serial_chain(generated: dict) -> None:
    _, results = generated["dex"]
    for previous, result in zip(results, results[1:]):
        written = {key for key in previous.writes if key[0] == STORAGE}
        assert written & result.reads.keys(), f"transaction {result.index} does not read what {previous.index} wrote"
    assert all(len(result.logs) == 1 for result in results)


def test_dex_swaps_follow_the_constant_product_formula(generated: dict) -> None:
    block, results = generated["dex"]
    pool = block.transactions[0].to
    reserve0, reserve1 = DEX_RESERVES
    engine = ReferenceEngine(block)
    for tx, result in zip(engine.transactions, results):
        amount_in = int.from_bytes(tx.data[4:36], "big")
        amount_out = pool_amount_out(amount_in, reserve0, reserve1)
        (_, _, data), = result.logs
        assert data == amount_in.to_bytes(32, "big") + amount_out.to_bytes(32, "big")
        reserve0, reserve1 = reserve0 + amount_in, reserve1 - amount_out
        assert result.writes[(STORAGE, pool, 0)] == reserve0 and result.writes[(STORAGE, pool, 1)] == reserve1


def test_deploy_creates_contracts(generated: dict) -> None:
    block, results = generated["deploy"]
    assert all(tx.to is None for tx in block.transactions)
    for result in results:
        codes = [value for key, value in result.writes.items() if key[0] == CODE]
        slots = [key for key in result.writes if key[0] == STORAGE]
        assert codes == [stored_runtime()] and len(slots) == 2


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = generate_block("erc20", 20, tmp_path / "a", seed=7)
    second = generate_block("erc20", 20, tmp_path / "b", seed=7)
    other = generate_block("erc20", 20, tmp_path / "c", seed=8)
    for name in ("block.json.gz", "pre_state.json.gz"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()


def test_header_looks_like_a_node_s(tmp_path: Path) -> None:
    path = generate_block("transfers", 3, tmp_path / "b")
    block = json.loads(gzip.decompress((path / "block.json.gz").read_bytes()))
    for name in ("baseFeePerGas", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot", "withdrawals", "withdrawalsRoot"):
        assert name in block
    assert block["excessBlobGas"] == "0x0" and block["withdrawals"] == [] and block["difficulty"] == "0x0"
    assert all(tx["blockHash"] == block["hash"] for tx in block["transactions"])
    raw = [load_block(path).transactions[i].raw for i in range(3)]
    assert block["transactionsRoot"] == "0x" + trie_root(raw).hex()


# (block number, fork, transaction type, v of a legacy signature: 27/28 or EIP-155's 37/38)
OLD_FORKS = [
    (46_147, "frontier", 0, {27, 28}),
    (1_150_000, "homestead", 0, {27, 28}),
    (2_675_000, "spurious_dragon", 0, {37, 38}),
    (12_244_000, "berlin", 0, {37, 38}),
    (12_965_000, "london", 2, {0, 1}),
    (17_034_870, "shanghai", 2, {0, 1}),
]


@pytest.mark.parametrize(("number", "fork", "tx_type", "vs"), OLD_FORKS)
def test_transfers_in_older_forks(tmp_path: Path, number: int, fork: str, tx_type: int, vs: set[int]) -> None:
    path = generate_block("transfers", 20, tmp_path / "b", number=number)
    block, results = run(path)
    assert block.header.fork == fork and {tx.type for tx in block.transactions} == {tx_type}
    document = json.loads(gzip.decompress((path / "block.json.gz").read_bytes()))
    assert {int(tx["v"], 16) for tx in document["transactions"]} <= vs
    assert ("baseFeePerGas" in document) == (tx_type == 2)
    assert dependencies(results) == []


@pytest.mark.parametrize("pattern", ["erc20", "dex", "deploy"])
def test_contract_patterns_run_before_byzantium_and_london(tmp_path: Path, pattern: str) -> None:
    for number in (1_150_000, 4_370_000):  # no REVERT opcode yet; then no EIP-1559
        run(generate_block(pattern, 10, tmp_path / f"{pattern}-{number}", number=number))


def test_a_large_block_raises_the_gas_limit(tmp_path: Path) -> None:
    block, results = run(generate_block("dex", 300, tmp_path / "b"))  # 300 * 120,000 > 30,000,000
    assert block.header.gas_limit == sum(tx.gas for tx in block.transactions) > 30_000_000
    assert len(dependencies(results)) >= 299


def test_trie_root_matches_py_trie() -> None:
    from trie import HexaryTrie

    for count in (0, 1, 2, 16, 17, 128, 129, 300):
        items = [bytes([i % 251]) * (1 + i % 70) for i in range(count)]  # short values make inline nodes
        reference = HexaryTrie({})
        for index, item in enumerate(items):
            reference[rlp.encode(index)] = item
        assert trie_root(items) == reference.root_hash


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown pattern"):
        generate_block("nft", 10, tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        generate_block("transfers", 0, tmp_path)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "2", str(tmp_path / "b"), "--seed", "3", "--number", "19426587"]) == 0
    assert "deploy: 2 transactions" in capsys.readouterr().out
    run(tmp_path / "b")
    for argv in (["nft", "5", str(tmp_path)], ["transfers", "0", str(tmp_path)], ["transfers", "x", str(tmp_path)]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "unknown pattern" in capsys.readouterr().err


def test_assembler_resolves_labels_and_rejects_mistakes() -> None:
    assert assemble("@end JUMP end: STOP") == bytes.fromhex("610004565b00")
    assert assemble("data:: $N", {"N": 2**255}) == bytes([0x7F]) + (2**255).to_bytes(32, "big")
    for source in ("@nowhere JUMP", "a: a:", "$MISSING", "PUSH1", "FROB"):
        with pytest.raises(AssemblyError):
            assemble(source)
