"""The ``evm_block`` executor on this machine: blocks arrive as bundles in the spec's inputs, run
sequentially or over a shard pool, and the job's output has one entry per block plus totals; a
block that does not match its header, or a bundle that is not one, fails the run with the reason.

Synthetic blocks (`workers.evm.generate`) need nothing outside the repository; the two mainnet
blocks come from ../shared/data when it is there.
"""
from __future__ import annotations

import base64
import gzip
import json
import time
from typing import Any

import pytest

from tests.evm.conftest import mainnet_dir
from workers.evm import ENGINES, LocalPool, bundle_directory
from workers.evm.generate import generate_block
from workers.evm.pool import DEFAULT_ENGINE
from workers.runtime import kinds
from workers.runtime.evm_job import BlockMismatch, BlockRejected, execute_blocks, run_evm_blocks
from workers.runtime.executors import executor_for
from workers.runtime.runner import JobRunner, ProgressReporter
from workers.runtime.spec import JobSpec, RunReport, RunState

MAINNET = mainnet_dir()  # ../shared/data/mainnet, or the copy under tests/data


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Bundles of two generated blocks: independent transfers, and a serial chain of swaps."""
    root = tmp_path_factory.mktemp("blocks")
    return {pattern: bundle_directory(generate_block(pattern, 6, root / pattern, number=19_500_000 + index))
            for index, pattern in enumerate(("transfers", "dex"))}


def job(bundles: list[bytes], workers: int = 1, first_id: int = 11) -> JobSpec:
    ids = list(range(first_id, first_id + len(bundles)))
    return JobSpec(job_id=3, attempt=1, kind="evm_block", spec={"blocks": ids, "workers": workers,
                                                                 "engine": "reference"},
                   gpus=1, node_id=7, inputs={str(i): base64.b64encode(b).decode() for i, b in zip(ids, bundles)})


def local_pool(workers: int, engine: str, reporter: ProgressReporter) -> LocalPool:
    return LocalPool(workers, engine)


def tampered(bundle: bytes, **header: Any) -> bytes:
    """The bundle with header fields changed (still a valid bundle)."""
    document = json.loads(gzip.decompress(bundle))
    document["block"].update(header)
    return gzip.compress(json.dumps(document).encode())


def gas_used_of(bundle: bytes) -> int:
    return int(json.loads(gzip.decompress(bundle))["block"]["gasUsed"], 16)


def test_every_block_runs_in_order_and_verifies(synthetic: dict[str, bytes]) -> None:
    reporter = ProgressReporter()
    output = run_evm_blocks(job([synthetic["transfers"], synthetic["dex"]]), reporter)

    assert [(b["artifact"], b["transactions"], b["verified"]) for b in output["blocks"]] == [
        (11, 6, True), (12, 6, True)]
    assert [b["gas_used"] for b in output["blocks"]] == [gas_used_of(synthetic["transfers"]),
                                                          gas_used_of(synthetic["dex"])]
    assert output["totals"] == {"blocks": 2, "transactions": 12, "verified": True, "reexecuted": 0,
                                "gas_used": sum(b["gas_used"] for b in output["blocks"]),
                                "elapsed_s": output["totals"]["elapsed_s"]}
    assert (output["engine"], output["workers"], output["workers_requested"]) == ("reference", 1, 1)
    assert {"receipts_root", "logs_bloom", "checks", "mismatch", "elapsed_s", "rounds"} <= set(output["blocks"][0])
    assert reporter.fraction == 1.0
    assert [line.split(":")[0] for line in reporter.lines[1:]] == [
        f"block {b['number']} (cancun, artifact {b['artifact']})" for b in output["blocks"]]
    json.dumps(output)  # what the marketplace stores


def test_shards_give_the_figures_sequential_execution_gives(synthetic: dict[str, bytes]) -> None:
    bundles = [synthetic["transfers"], synthetic["dex"]]
    sequential = run_evm_blocks(job(bundles), ProgressReporter())
    parallel = execute_blocks(job(bundles, workers=3), ProgressReporter(), local_pool)

    assert parallel["workers"] == 3 and parallel["totals"]["verified"]
    keys = ("number", "gas_used", "logs_bloom", "receipts_root", "verified")
    assert [{k: b[k] for k in keys} for b in parallel["blocks"]] == [{k: b[k] for k in keys}
                                                                      for b in sequential["blocks"]]
    assert parallel["blocks"][1]["reexecuted"] > 0  # the swaps form a chain: shards had to redo some


def test_a_block_that_does_not_match_its_header_fails_the_job_with_the_mismatch(synthetic: dict[str, bytes]) -> None:
    wrong = tampered(synthetic["dex"], gasUsed=hex(gas_used_of(synthetic["dex"]) - 1))
    reporter = ProgressReporter()

    with pytest.raises(BlockMismatch) as raised:
        execute_blocks(job([synthetic["transfers"], wrong], workers=2), reporter, local_pool)

    assert ("block 19500001 (artifact 12) does not match its header: gas_used differ from the header"
            in str(raised.value))
    assert "verified" in reporter.lines[1] and "MISMATCH" in reporter.lines[2]


def test_a_bundle_that_is_not_one_fails_the_job_before_any_block_runs(synthetic: dict[str, bytes]) -> None:
    reporter = ProgressReporter()
    with pytest.raises(BlockRejected, match=r"blocks\[1\] \(artifact 12\) is not a valid block bundle"):
        run_evm_blocks(job([synthetic["transfers"], b"not a bundle"]), reporter)
    assert reporter.lines == []

    no_hash = tampered(synthetic["transfers"], hash="0x12")
    with pytest.raises(BlockRejected, match=r"block\.hash"):
        run_evm_blocks(job([no_hash]), ProgressReporter())


def test_a_block_whose_bytes_did_not_come_with_the_run_fails_it(synthetic: dict[str, bytes]) -> None:
    spec = job([synthetic["transfers"]])
    with pytest.raises(BlockRejected, match="did not come with the run"):
        run_evm_blocks(JobSpec(**{**spec.__dict__, "inputs": {}}), ProgressReporter())


def test_through_the_runner_a_mismatch_is_the_runs_error(synthetic: dict[str, bytes]) -> None:
    wrong = tampered(synthetic["transfers"], gasUsed=hex(gas_used_of(synthetic["transfers"]) + 1))
    runner = JobRunner(job([wrong]).to_json())
    runner.start()
    deadline = time.monotonic() + 60
    report = RunReport.from_json(runner.report())
    while not report.finished and time.monotonic() < deadline:
        time.sleep(0.05)
        report = RunReport.from_json(runner.report())

    assert report.state == RunState.FAILED
    assert report.error.startswith("BlockMismatch: block 19500000 (artifact 11) does not match its header: gas_used")
    assert report.output is None


def test_outside_a_ray_node_a_pool_request_runs_sequentially(synthetic: dict[str, bytes]) -> None:
    import ray

    if ray.is_initialized():
        pytest.skip("this process is a Ray driver: the pool would be real")
    reporter = ProgressReporter()
    output = run_evm_blocks(job([synthetic["transfers"]], workers=4), reporter)
    assert (output["workers"], output["workers_requested"]) == (1, 4)
    assert "not running on a Ray node: running sequentially" in reporter.lines


def test_the_kind_is_registered_with_an_executor_and_the_librarys_engines() -> None:
    assert executor_for("evm_block") is run_evm_blocks
    assert kinds.EVM_ENGINES == ENGINES
    assert kinds.get_kind("evm_block").available
    assert kinds.validate_spec("evm_block", {"blocks": [5]}) == {"blocks": [5], "workers": 1, "nodes": 1,
                                                                "engine": DEFAULT_ENGINE}
    assert DEFAULT_ENGINE == "native"


def test_a_spec_carries_its_inputs_through_json_and_omits_none() -> None:
    spec = job([b"\x00\xffbytes"])
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and again.input_bytes(11) == b"\x00\xffbytes"
    plain = JobSpec(job_id=1, attempt=1, kind="benchmark", spec={}, gpus=1, node_id=1)
    assert "inputs" not in json.loads(plain.to_json()) and JobSpec.from_json(plain.to_json()) == plain


def test_two_mainnet_blocks_verify_against_their_headers() -> None:
    numbers = (19933122, 19923400)
    index = {entry["number"]: entry for entry in json.loads((MAINNET / "index.json").read_text())}
    bundles = [bundle_directory(MAINNET / str(number)) for number in numbers]

    output = execute_blocks(job(bundles, workers=2), ProgressReporter(), local_pool)

    assert [(b["number"], b["gas_used"], b["transactions"], b["verified"]) for b in output["blocks"]] == [
        (n, index[n]["gas_used"], index[n]["transactions"], True) for n in numbers]
    assert all(b["receipts_root"] == index[b["number"]]["receipts_root"] for b in output["blocks"])
