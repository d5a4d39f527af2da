"""Nodes over the API: registration with a one-time join token, reads, edits, heartbeats, their jobs."""
from __future__ import annotations

import hashlib

import pytest
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from marketplace.models import Job, Node, NodeGpu, Offer
from tests.conftest import heartbeat, make_node, make_offer

NODES = "/api/v1/nodes/"


# --- registration ------------------------------------------------------------------------------

def test_it_registers_a_node_and_shows_its_join_token_once(provider):
    response = provider.client.post(NODES, {
        "name": "rig-1", "region": "eu-west", "cpu_cores": 32, "ram_gb": 256,
        "gpus": [{"model": "NVIDIA RTX 4090", "count": 2}, {"model": "NVIDIA L4", "count": 1, "vram_gb": 24}],
    }, format="json")

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["join_token"].startswith("node_") and len(body["join_token"]) > 40
    assert {k: body[k] for k in ("name", "region", "cpu_cores", "ram_gb", "status", "last_heartbeat_at")} == {
        "name": "rig-1", "region": "eu-west", "cpu_cores": 32, "ram_gb": 256, "status": "offline",
        "last_heartbeat_at": None}
    assert sorted((g["model"], g["count"], g["vram_gb"], g["verified"]) for g in body["gpus"]) == [
        ("NVIDIA L4", 1, 24, False), ("NVIDIA RTX 4090", 2, 24, False)]
    assert "join_token" not in provider.client.get(f"{NODES}{body['id']}/").json()
    assert all("join_token" not in node for node in provider.client.get(NODES).json()["results"])


def test_it_stores_only_the_sha256_of_the_join_token(provider):
    body = make_node(provider)
    token = body["join_token"]

    node = Node.objects.get(pk=body["id"])
    assert node.join_token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = [str(value) for value in Node.objects.filter(pk=node.pk).values().get().values()]
    assert all(token not in value for value in stored)


def test_every_node_gets_its_own_token(provider):
    assert make_node(provider, "rig-1")["join_token"] != make_node(provider, "rig-2")["join_token"]


def test_it_fills_in_the_catalog_vram(provider):
    body = make_node(provider, gpus=[{"model": "AMD Instinct MI300X", "count": 8}])
    assert body["gpus"] == [{"model": "AMD Instinct MI300X", "vram_gb": 192, "count": 8, "verified": False}]


def test_it_refuses_a_second_node_of_the_same_name(provider):
    make_node(provider, "rig-1")

    response = provider.client.post(NODES, {"name": "rig-1", "region": "eu-west", "cpu_cores": 1, "ram_gb": 1,
                                            "gpus": [{"model": "NVIDIA L4", "count": 1}]}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "node_name_taken"
    assert Node.objects.count() == 1 and NodeGpu.objects.count() == 1


def test_two_providers_may_use_the_same_node_name(provider, other_provider):
    make_node(provider, "rig-1")
    make_node(other_provider, "rig-1")
    assert Node.objects.filter(name="rig-1").count() == 2


@pytest.mark.parametrize(("gpus", "code"), [
    ([{"model": "NVIDIA RTX 9999", "count": 1}], "invalid_choice"),
    ([{"model": "NVIDIA RTX 4090", "count": 1, "vram_gb": 48}], "vram_mismatch"),
    ([{"model": "NVIDIA L4", "count": 1}, {"model": "NVIDIA L4", "count": 2}], "duplicate_gpu_model"),
    ([{"model": "NVIDIA L4", "count": 40}, {"model": "NVIDIA T4", "count": 40}], "too_many_gpus"),
    ([{"model": "NVIDIA L4", "count": 0}], "min_value"),
    ([{"model": "NVIDIA L4", "count": 65}], "max_value"),
    ([], "empty"),
])
def test_it_refuses_gpus_that_cannot_be_in_the_machine(provider, gpus, code):
    response = provider.client.post(NODES, {"name": "rig", "region": "eu-west", "cpu_cores": 8, "ram_gb": 64,
                                            "gpus": gpus}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Node.objects.exists() and not NodeGpu.objects.exists()


@pytest.mark.parametrize(("field", "value"), [
    ("name", "bad name"), ("name", "-leading-dash"), ("name", "x" * 65), ("name", ""),
    ("region", "EU-West"), ("region", "eu_west"), ("region", "x" * 33),
    ("cpu_cores", 0), ("ram_gb", -1),
])
def test_it_refuses_a_malformed_name_region_or_size(provider, field, value):
    body = {"name": "rig", "region": "eu-west", "cpu_cores": 8, "ram_gb": 64,
            "gpus": [{"model": "NVIDIA L4", "count": 1}], field: value}

    response = provider.client.post(NODES, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Node.objects.exists()


# --- reads and edits ---------------------------------------------------------------------------

def test_it_lists_only_the_callers_nodes_oldest_first(provider, other_provider):
    first, second = make_node(provider, "rig-1"), make_node(provider, "rig-2")
    make_node(other_provider, "theirs")

    body = provider.client.get(NODES).json()

    assert body["count"] == 2
    assert [node["id"] for node in body["results"]] == [first["id"], second["id"]]


def test_it_reads_one_node(provider, node):
    response = provider.client.get(f"{NODES}{node['id']}/")

    assert response.status_code == 200
    assert response.json()["name"] == "rig-1"
    assert response.json()["gpus"] == node["gpus"]


def test_it_renames_a_node(provider, node):
    response = provider.client.patch(f"{NODES}{node['id']}/", {"name": "renamed"}, format="json")

    assert response.status_code == 200
    assert response.json()["name"] == "renamed"
    assert Node.objects.get(pk=node["id"]).name == "renamed"


def test_renaming_to_the_same_name_is_fine(provider, node):
    assert provider.client.patch(f"{NODES}{node['id']}/", {"name": "rig-1"}, format="json").status_code == 200


def test_it_refuses_to_rename_a_node_to_a_name_already_used(provider, node):
    make_node(provider, "rig-2")

    response = provider.client.patch(f"{NODES}{node['id']}/", {"name": "rig-2"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "node_name_taken"
    assert Node.objects.get(pk=node["id"]).name == "rig-1"


def test_moving_a_node_moves_its_offers(provider, node):
    offer = make_offer(provider, node["id"])

    response = provider.client.patch(f"{NODES}{node['id']}/", {"region": "us-east"}, format="json")

    assert response.status_code == 200 and response.json()["region"] == "us-east"
    assert Offer.objects.get(pk=offer["id"]).region == "us-east"
    assert provider.client.get(f"/api/v1/offers/{offer['id']}/").json()["region"] == "us-east"


@pytest.mark.parametrize("body", [{"cpu_cores": 64}, {"gpus": []}, {"join_token_hash": "0" * 64}])
def test_it_refuses_to_patch_fields_that_are_not_editable(provider, node, body):
    response = provider.client.patch(f"{NODES}{node['id']}/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_field"
    assert Node.objects.get(pk=node["id"]).cpu_cores == 32


def test_a_node_cannot_be_replaced_or_deleted_over_the_api(provider, node):
    assert provider.client.put(f"{NODES}{node['id']}/", {}, format="json").status_code == 405
    assert provider.client.delete(f"{NODES}{node['id']}/").status_code == 405
    assert Node.objects.filter(pk=node["id"]).exists()


# --- heartbeats --------------------------------------------------------------------------------

def test_a_heartbeat_turns_the_node_online(provider, node):
    response = heartbeat(node)

    assert response.status_code == 200
    assert response.json()["status"] == "online"
    assert response.json()["last_heartbeat_at"] is not None
    assert provider.client.get(f"{NODES}{node['id']}/").json()["status"] == "online"


def test_a_heartbeat_can_say_the_node_is_draining_and_the_next_one_can_take_it_back(provider, node):
    assert heartbeat(node, draining=True).json()["status"] == "draining"
    assert provider.client.get(f"{NODES}{node['id']}/").json()["status"] == "draining"
    assert Node.objects.get(pk=node["id"]).draining is True

    assert heartbeat(node, draining=False).json()["status"] == "online"
    assert Node.objects.get(pk=node["id"]).draining is False


def test_a_heartbeat_moves_only_its_own_node(provider, node):
    other = make_node(provider, "rig-2")

    heartbeat(node)

    assert Node.objects.get(pk=other["id"]).last_heartbeat_at is None


def test_a_node_whose_heartbeats_stopped_goes_offline(settings, provider, node):
    heartbeat(node)
    settings.NODE_HEARTBEAT_TIMEOUT_S = 1
    Node.objects.filter(pk=node["id"]).update(last_heartbeat_at=Node.objects.get(pk=node["id"]).last_heartbeat_at
                                               .replace(year=2000))

    assert provider.client.get(f"{NODES}{node['id']}/").json()["status"] == "offline"


@pytest.mark.parametrize("header", [
    "Node node_wrong", "Node ", "Node", "Node a b", "node node_wrong",
])
def test_a_heartbeat_with_a_bad_node_token_is_refused(provider, node, header):
    response = APIClient().post(f"{NODES}heartbeat/", {}, format="json", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["code"] in {"authentication_failed", "not_authenticated"}
    assert response["WWW-Authenticate"] == "Node"
    assert Node.objects.get(pk=node["id"]).last_heartbeat_at is None


def test_a_heartbeat_needs_the_node_token_not_the_providers(provider, node):
    response = provider.client.post(f"{NODES}heartbeat/", {}, format="json")

    assert response.status_code == 401
    assert Node.objects.get(pk=node["id"]).last_heartbeat_at is None


def test_a_heartbeat_accepts_the_keyword_in_any_case(node):
    response = APIClient().post(f"{NODES}heartbeat/", {}, format="json",
                                HTTP_AUTHORIZATION=f"NODE {node['join_token']}")
    assert response.status_code == 200


@pytest.mark.parametrize("body", [{"draining": "perhaps"}, {"status": "online"}, [True]])
def test_a_heartbeat_with_a_malformed_body_is_refused(node, body):
    response = APIClient().post(f"{NODES}heartbeat/", body, format="json",
                                HTTP_AUTHORIZATION=f"Node {node['join_token']}")

    assert response.status_code == 400
    assert Node.objects.get(pk=node["id"]).last_heartbeat_at is None


def test_heartbeats_are_throttled_per_node(monkeypatch, provider, node):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"heartbeat": "3/min"})
    other = make_node(provider, "rig-2")
    for _ in range(3):
        assert heartbeat(node).status_code == 200

    throttled = heartbeat(node)

    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert heartbeat(other).status_code == 200


# --- the jobs a node ran -----------------------------------------------------------------------

def test_a_provider_sees_the_jobs_its_node_ran_without_their_spec(provider, developer, node):
    other = make_node(provider, "rig-2")
    ran_here = [Job.objects.create(owner=developer.user, kind="benchmark", spec={"secret": i}, budget_wei=1,
                                   node_id=node["id"], state="running") for i in range(3)]
    Job.objects.create(owner=developer.user, kind="benchmark", budget_wei=1, node_id=other["id"])
    Job.objects.create(owner=developer.user, kind="benchmark", budget_wei=1)

    response = provider.client.get(f"{NODES}{node['id']}/jobs/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [job["id"] for job in body["results"]] == [job.pk for job in reversed(ran_here)]
    assert set(body["results"][0]) == {"id", "kind", "state", "gpus", "created_at", "finished_at"}


def test_a_new_node_has_run_no_jobs(provider, node):
    assert provider.client.get(f"{NODES}{node['id']}/jobs/").json()["results"] == []


@pytest.mark.django_db(transaction=True)
def test_racing_renames_to_one_name_give_one_success_and_conflicts(provider):
    """Six nodes renamed to the same name at once, each request on its own connection."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connection

    ids = [make_node(provider, f"rig-{i}")["id"] for i in range(6)]
    start = Barrier(6)

    def rename(node_id: int) -> int:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {provider.token}")
            start.wait()
            return client.patch(f"{NODES}{node_id}/", {"name": "the-one"}, format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(rename, ids))

    assert statuses == [200] + [409] * 5
    assert Node.objects.filter(name="the-one").count() == 1
