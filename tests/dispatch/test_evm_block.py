"""``evm_block`` jobs end to end with real parts: block bundles uploaded as artifacts, a job submitted
over the API, dispatched by Celery to a provider node of a real Ray cluster, its blocks run there on
shard actors, and the verified result stored and served like any job's.

Its own stack: two nodes with 4 CPUs each (a run takes one, its two shards one each), so the shards
are placed at once; the second node is dearer, and there for the job split across nodes. Its blocks come from ../shared/data/mainnet, or from the copy under tests/data when that is absent.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.evm.conftest import mainnet_dir
from tests.dispatch.conftest import stack_on_test_database
from tests.dispatch.harness import RTX, Stack

MAINNET = mainnet_dir()
SMALL_BLOCKS = (19933122, 19923400)

pytestmark = [pytest.mark.dispatch, pytest.mark.django_db]


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any) -> Iterator[Stack]:
    with stack_on_test_database(django_db_blocker, nodes={"a": [(RTX, 2)], "b": [(RTX, 2)]}, agent_cpus=4, prefix="evm") as running:
        yield running


@pytest.fixture(scope="module")
def bundles() -> dict[int, bytes]:
    from workers.evm import bundle_directory

    return {number: bundle_directory(MAINNET / str(number)) for number in SMALL_BLOCKS}


def header_gas_used(bundle: bytes) -> int:
    return int(json.loads(gzip.decompress(bundle))["block"]["gasUsed"], 16)


def upload(stack: Stack, content: bytes, name: str) -> int:
    response = requests.post(f"{stack.api}/api/v1/artifacts/", files={"file": (name, content, "application/gzip")},
                             headers={"Authorization": f"Token {stack.developer_token}"}, timeout=10)
    assert response.status_code in (200, 201), response.text
    artifact_id: int = response.json()["id"]
    return artifact_id


def evm_job(blocks: list[int], workers: int, engine: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"blocks": blocks, "workers": workers}
    if engine:
        spec["engine"] = engine
    return {"kind": "evm_block", "spec": spec, "requirements": {"gpus": 1}}


def test_two_mainnet_blocks_run_natively_by_default_on_native_threads_and_verify(
        stack: Stack, bundles: dict[int, bytes]) -> None:
    ids = [upload(stack, bundles[number], f"{number}.json.gz") for number in SMALL_BLOCKS]
    job = stack.submit(evm_job(ids, workers=2))

    done = stack.wait_state(job["id"], {"succeeded"}, timeout_s=60)

    assert done["spec"]["engine"] == "native" and done["progress"] == 1.0
    result = stack.get(f"jobs/{job['id']}/result/")["result"]
    assert [(b["number"], b["gas_used"], b["verified"]) for b in result["blocks"]] == [
        (number, header_gas_used(bundles[number]), True) for number in SMALL_BLOCKS]
    assert result["engine"] == "native" and 1 <= result["workers"] <= 2 and result["workers_requested"] == 2
    logs = [event["reason"] for event in stack.events(job["id"]) if event["type"] == "log"]
    assert any("engine native" in line for line in logs), logs
    assert not any("workers ready on this node" in line for line in logs)  # no Ray shards: threads in the run


def test_two_mainnet_blocks_run_on_the_nodes_shards_and_verify(stack: Stack, bundles: dict[int, bytes]) -> None:
    ids = [upload(stack, bundles[number], f"{number}.json.gz") for number in SMALL_BLOCKS]
    job = stack.submit(evm_job(ids, workers=2, engine="reference"))

    done = stack.wait_state(job["id"], {"succeeded"}, timeout_s=60)

    assert done["node"] == stack.node_ids["a"] and done["progress"] == 1.0
    result = stack.get(f"jobs/{job['id']}/result/")
    blocks = result["result"]["blocks"]
    assert [(b["artifact"], b["number"], b["gas_used"], b["verified"], b["workers"]) for b in blocks] == [
        (artifact, number, header_gas_used(bundles[number]), True, 2) for artifact, number in zip(ids, SMALL_BLOCKS)]
    assert result["result"]["totals"]["verified"] and result["result"]["workers"] == 2
    logs = [event["reason"] for event in stack.events(job["id"]) if event["type"] == "log"]
    assert "2 workers ready on this node" in logs
    assert any(line.startswith("block 19933122 (cancun") and line.endswith("verified") for line in logs)
    stored = requests.get(f"{stack.api}/api/v1/artifacts/{result['result_artifact']}/download/", timeout=10,
                          headers={"Authorization": f"Token {stack.developer_token}"})
    assert stored.status_code == 200 and stored.json() == result["result"]


def test_a_block_whose_header_was_tampered_with_fails_the_job_naming_the_mismatch(
        stack: Stack, bundles: dict[int, bytes]) -> None:
    document = json.loads(gzip.decompress(bundles[19923400]))
    document["block"]["gasUsed"] = hex(header_gas_used(bundles[19923400]) + 1000)
    good = upload(stack, bundles[19933122], "19933122.json.gz")
    bad = upload(stack, gzip.compress(json.dumps(document).encode()), "tampered.json.gz")
    job = stack.submit(evm_job([good, bad], workers=1))

    failed = stack.wait_state(job["id"], {"failed"}, timeout_s=60)

    assert failed["attempts"] == 1  # the input is wrong, not the node: no second attempt
    reason = stack.events(job["id"])[-1]["reason"]
    assert reason.startswith(f"BlockMismatch: block 19923400 (artifact {bad}) does not match its header: "
                             "gas_used differ from the header"), reason
    assert requests.get(f"{stack.api}/api/v1/jobs/{job['id']}/result/", timeout=10, headers={
        "Authorization": f"Token {stack.developer_token}"}).json()["code"] == "result_not_ready"


def test_more_workers_than_the_node_has_cpus_are_capped_to_what_it_can_hold(
        stack: Stack, bundles: dict[int, bytes]) -> None:
    block = upload(stack, bundles[19923400], "19923400.json.gz")
    job = stack.submit(evm_job([block], workers=64, engine="reference"))

    stack.wait_state(job["id"], {"succeeded"}, timeout_s=60)

    result = stack.get(f"jobs/{job['id']}/result/")["result"]
    assert (result["workers"], result["workers_requested"], result["blocks"][0]["verified"]) == (3, 64, True)
    logs = [event["reason"] for event in stack.events(job["id"]) if event["type"] == "log"]
    assert "the node has 4 CPU(s), one of them this run's: 3 worker(s), not 64" in logs


def test_two_blocks_split_over_two_nodes_run_as_two_child_jobs_there_and_combine(
        stack: Stack, bundles: dict[int, bytes]) -> None:
    ids = [upload(stack, bundles[number], f"{number}.json.gz") for number in SMALL_BLOCKS]
    parent = stack.submit({**evm_job(ids, workers=1), "spec": {"blocks": ids, "workers": 1, "nodes": 2}})
    assert parent["state"] == "dispatched" and len(parent["children"]) == 2

    done = stack.wait_state(parent["id"], {"succeeded", "failed", "cancelled"}, timeout_s=60)

    assert done["state"] == "succeeded", stack.events(parent["id"])
    children = [stack.job(child) for child in parent["children"]]
    assert [child["state"] for child in children] == ["succeeded", "succeeded"]
    assert {child["node"] for child in children} == {stack.node_ids["a"], stack.node_ids["b"]}
    assert [child["spec"]["blocks"] for child in children] == [[ids[0]], [ids[1]]]
    result = stack.get(f"jobs/{parent['id']}/result/")["result"]
    assert [(b["artifact"], b["number"], b["gas_used"], b["verified"]) for b in result["blocks"]] == [
        (artifact, number, header_gas_used(bundles[number]), True) for artifact, number in zip(ids, SMALL_BLOCKS)]
    assert result["totals"]["verified"] and result["totals"]["blocks"] == 2
    assert result["children"] == parent["children"] and done["progress"] == 1.0
