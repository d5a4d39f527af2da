"""Every mainnet block: sequential execution matches the header checks of ``index.json``, and
parallel execution on two Ray workers equals sequential receipt for receipt, write set for write set."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest

from workers.evm import load_block, make_engine, run_block
from workers.evm.engine import TxResult
from workers.evm.execute import execute_sequential
from workers.evm.parallel import execute_parallel

from .conftest import mainnet_dir, mainnet_index

BLOCKS = mainnet_index()
IDS = [str(entry["number"]) for entry in BLOCKS]


@lru_cache(maxsize=None)
def sequential(number: int) -> tuple[TxResult, ...]:
    engine = make_engine("reference", load_block(mainnet_dir() / str(number)))
    return tuple(execute_sequential(engine))


@pytest.mark.parametrize("entry", BLOCKS, ids=IDS)
def test_sequential_matches_the_header(entry: dict[str, Any]) -> None:
    report = run_block(load_block(mainnet_dir() / str(entry["number"])))
    assert report.fork == entry["fork"]
    assert report.transactions == entry["transactions"]
    expected = {"gas_used": entry["gas_used"], "logs_bloom": entry["logs_bloom"], "receipts_root": entry["receipts_root"]}
    for check in entry["checks"]:
        assert report.checks[check], f"{check} differs from the header"
        assert getattr(report, check) == expected[check]
    assert set(report.checks) == set(entry["checks"])
    assert report.verified and report.mismatch is None


@pytest.mark.parametrize("entry", BLOCKS, ids=IDS)
def test_parallel_on_two_ray_workers_equals_sequential(entry: dict[str, Any], ray_pool: Any) -> None:
    block = load_block(mainnet_dir() / str(entry["number"]))
    ray_pool.load(block)
    results, stats = execute_parallel(make_engine("reference", block), ray_pool)
    expected = sequential(entry["number"])
    assert len(results) == len(expected) == entry["transactions"]
    for ours, theirs in zip(results, expected):
        assert ours.receipt_fields() == theirs.receipt_fields(), f"transaction {ours.index}"
        assert dict(ours.writes) == dict(theirs.writes), f"transaction {ours.index}"
    assert stats.executions == stats.transactions + stats.reexecuted


def test_the_verify_command_passes_on_every_block(ray_cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    from workers.evm.cli import main

    paths = [str(mainnet_dir() / str(entry["number"])) for entry in BLOCKS[:3]]
    assert main(["verify", *paths, "--workers", "2", "--ray-address", ray_cluster]) == 0
    assert f"{len(paths)} of {len(paths)} blocks verified" in capsys.readouterr().out


def test_bench_prints_the_table_for_blocks_and_generated_ones(ray_cluster: str, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    from workers.evm.cli import main

    block = str(mainnet_dir() / str(BLOCKS[-1]["number"]))
    rows = tmp_path / "rows.json"
    argv = ["bench", block, "--engine", "reference", "--generate", "transfers:60,dex:20", "--repeat", "1",
            "--ray-address", ray_cluster, "--json", str(rows)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for heading in ("seq s", "par s", "speedup", "bound", "of bound", "transfers:60", "dex:20", "machine capacity"):
        assert heading in out
    import json

    document = json.loads(rows.read_text())
    assert [row["block"] for row in document["rows"]] == [block, "transfers:60", "dex:20"]
    assert document["rows"][1]["bound"] > 50 and document["rows"][2]["bound"] == 1.0
