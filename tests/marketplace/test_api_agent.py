"""The agent's side of the API: joining (GPU verification, where to run) and the drain count in heartbeats."""
from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from marketplace.models import Job, Node, NodeGpu
from tests.conftest import heartbeat, make_node, submit_job

JOIN = "/api/v1/nodes/join/"
RTX = "NVIDIA RTX 4090"
L4 = "NVIDIA L4"


def join(node: dict[str, Any], gpus: list[dict[str, Any]], **extra: Any) -> Any:
    """Join as the node's agent does (``Authorization: Node <join token>``)."""
    return APIClient().post(JOIN, {"gpus": gpus, **extra}, format="json",
                            HTTP_AUTHORIZATION=f"Node {node['join_token']}")


def verified(node: dict[str, Any]) -> dict[str, bool]:
    return dict(NodeGpu.objects.filter(node_id=node["id"]).values_list("model", "verified"))


@pytest.fixture
def rig(provider):
    """A node that declares 2 RTX 4090 and 1 L4."""
    return make_node(provider, "rig-9", gpus=[{"model": RTX, "count": 2}, {"model": L4, "count": 1}])


# --- join ------------------------------------------------------------------------------------------

def test_joining_with_the_declared_gpus_verifies_them_and_says_where_to_run(settings, provider, rig):
    settings.RAY_ADDRESS = "127.0.0.1:6391"
    settings.NODE_HEARTBEAT_INTERVAL_S = 7

    response = join(rig, [{"model": RTX, "vram_gb": 24, "count": 2}, {"model": L4, "vram_gb": 22, "count": 1}],
                    hostname="rig-9.example")

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "node_id": rig["id"], "name": "rig-9", "ray_address": "127.0.0.1:6391", "heartbeat_interval_s": 7,
        "resources": {f"node:{rig['id']}": 100.0, "gpu_model:nvidia-l4": 1.0, "gpu_model:nvidia-rtx-4090": 2.0},
        "gpus": [{"model": L4, "vram_gb": 24, "count": 1, "verified": True},
                 {"model": RTX, "vram_gb": 24, "count": 2, "verified": True}],
    }
    assert verified(rig) == {RTX: True, L4: True}
    assert provider.client.get(f"/api/v1/nodes/{rig['id']}/").json()["status"] == "online"


def test_more_detected_gpus_than_declared_still_verify(rig):
    assert join(rig, [{"model": RTX, "vram_gb": 24, "count": 4}, {"model": L4, "vram_gb": 22, "count": 1}]
                ).status_code == 200
    assert verified(rig) == {RTX: True, L4: True}


def test_fewer_or_other_gpus_than_declared_stay_unverified(rig):
    response = join(rig, [{"model": RTX, "vram_gb": 24, "count": 1}, {"model": "NVIDIA L40S", "vram_gb": 45,
                                                                       "count": 1}])

    assert response.status_code == 200
    assert {gpu["model"]: gpu["verified"] for gpu in response.json()["gpus"]} == {RTX: False, L4: False}
    assert verified(rig) == {RTX: False, L4: False}


def test_a_machine_without_gpus_joins_with_every_gpu_unverified(rig):
    response = join(rig, [])

    assert response.status_code == 200
    assert [gpu["verified"] for gpu in response.json()["gpus"]] == [False, False]
    assert Node.objects.get(pk=rig["id"]).last_heartbeat_at is not None


def test_a_later_join_that_detects_less_takes_the_verification_back(rig):
    join(rig, [{"model": RTX, "vram_gb": 24, "count": 2}, {"model": L4, "vram_gb": 22, "count": 1}])

    join(rig, [{"model": RTX, "vram_gb": 24, "count": 2}])

    assert verified(rig) == {RTX: True, L4: False}


def test_a_model_the_catalog_does_not_know_is_accepted_and_verifies_nothing(rig):
    response = join(rig, [{"model": "NVIDIA GeForce RTX 5090 Engineering Sample", "vram_gb": 32, "count": 8}])

    assert response.status_code == 200
    assert verified(rig) == {RTX: False, L4: False}


def test_joining_ends_a_drain(rig):
    heartbeat(rig, draining=True)

    join(rig, [])

    assert Node.objects.get(pk=rig["id"]).draining is False


def test_joining_touches_only_the_tokens_node(provider, rig):
    other = make_node(provider, "rig-10", gpus=[{"model": RTX, "count": 1}])

    join(rig, [{"model": RTX, "vram_gb": 24, "count": 2}])

    assert verified(other) == {RTX: False}
    assert Node.objects.get(pk=other["id"]).last_heartbeat_at is None


@pytest.mark.parametrize("header", ["Node node_wrong", "Node", "Token node_wrong", None])
def test_a_join_without_a_valid_node_token_is_refused(rig, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.post(JOIN, {"gpus": []}, format="json")

    assert response.status_code == 401
    assert Node.objects.get(pk=rig["id"]).last_heartbeat_at is None


def test_a_join_needs_the_node_token_not_the_providers(provider, rig):
    assert provider.client.post(JOIN, {"gpus": []}, format="json").status_code == 401


@pytest.mark.parametrize("body", [
    {"gpus": [], "surprise": 1},
    {"gpus": [{"model": RTX, "vram_gb": 24, "count": 2, "uuid": "GPU-1"}]},
    {},
    {"gpus": "none"},
    {"gpus": [{"model": RTX, "vram_gb": 24, "count": 0}]},
    {"gpus": [{"model": RTX, "vram_gb": -1, "count": 1}]},
    {"gpus": [{"model": "x" * 129, "vram_gb": 24, "count": 1}]},
    {"gpus": [], "hostname": "h" * 256},
    {"gpus": [{"model": RTX, "vram_gb": 24, "count": 1}] * 65},
])
def test_a_malformed_join_is_refused_and_changes_nothing(rig, body):
    response = APIClient().post(JOIN, body, format="json", HTTP_AUTHORIZATION=f"Node {rig['join_token']}")

    assert response.status_code == 400, response.json()
    assert Node.objects.get(pk=rig["id"]).last_heartbeat_at is None


# --- heartbeat: active jobs --------------------------------------------------------------------

def test_a_heartbeat_counts_the_nodes_dispatched_and_running_jobs(developer, rig, node):
    ids = [submit_job(developer)["id"] for _ in range(5)]
    for job_id, state, on in zip(ids, ["dispatched", "running", "succeeded", "queued", "running"],
                                 [rig, rig, rig, rig, node]):
        Job.objects.filter(pk=job_id).update(state=state, node_id=on["id"])

    assert heartbeat(rig, draining=True).json()["active_jobs"] == 2
    assert heartbeat(node).json()["active_jobs"] == 1


def test_a_heartbeat_of_an_idle_node_says_no_active_jobs(rig):
    body = heartbeat(rig, draining=True).json()

    assert body["active_jobs"] == 0
    assert body["status"] == "draining"
