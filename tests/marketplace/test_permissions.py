"""Every permission boundary, with two providers and two developers.

Other people's objects are 404, never 403 (and answer exactly like ids that do not exist), so
nobody can probe which ids are in use. Roles are 403 ``provider_only``. No token is 401.
"""
from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from marketplace.models import Artifact, Job, Node, Offer
from tests.conftest import make_node, make_offer, submit_job, upload

MISSING = 987654321


@pytest.fixture
def world(provider, developer) -> dict[str, Any]:
    """A node with an active and a paused offer (the provider's), a job and an artifact (the developer's)."""
    node = make_node(provider, gpus=[{"model": "NVIDIA RTX 4090", "count": 2}])
    active = make_offer(provider, node["id"])
    paused = make_offer(provider, node["id"])
    provider.client.post(f"/api/v1/offers/{paused['id']}/pause/")
    job = submit_job(developer)
    Job.objects.filter(pk=job["id"]).update(node_id=node["id"])
    artifact = upload(developer, b"private bytes").json()
    return {"node": node["id"], "offer": active["id"], "paused": paused["id"], "job": job["id"],
            "artifact": artifact["id"]}


def call(person: Any, method: str, path: str, body: Any = None) -> Any:
    return getattr(person.client, method)(path, body, format="json")


def snapshot() -> list[Any]:
    return [list(model.objects.order_by("pk").values()) for model in (Node, Offer, Job, Artifact)]


# (method, path template, body); {id} is filled with the world's object of that kind.
NODE_CALLS = [
    ("get", "/api/v1/nodes/{node}/", None),
    ("patch", "/api/v1/nodes/{node}/", {"name": "stolen"}),
    ("get", "/api/v1/nodes/{node}/jobs/", None),
]
OFFER_WRITES = [
    ("patch", "/api/v1/offers/{offer}/", {"price_per_gpu_hour_wei": 1}),
    ("post", "/api/v1/offers/{offer}/pause/", None),
    ("post", "/api/v1/offers/{paused}/resume/", None),
    ("delete", "/api/v1/offers/{offer}/", None),
]
JOB_CALLS = [
    ("get", "/api/v1/jobs/{job}/", None),
    ("post", "/api/v1/jobs/{job}/cancel/", None),
    ("get", "/api/v1/jobs/{job}/events/", None),
    ("get", "/api/v1/jobs/{job}/result/", None),
]
ARTIFACT_CALLS = [
    ("get", "/api/v1/artifacts/{artifact}/", None),
    ("get", "/api/v1/artifacts/{artifact}/download/", None),
]


def fill(template: str, world: dict[str, Any], missing: bool = False) -> str:
    return template.format(**{key: MISSING if missing else value for key, value in world.items()})


# --- another person's objects are not found ----------------------------------------------------

@pytest.mark.parametrize(("method", "template", "body"), NODE_CALLS + OFFER_WRITES)
def test_a_provider_cannot_touch_another_providers_node_or_offer(world, other_provider, method, template, body):
    before = snapshot()

    response = call(other_provider, method, fill(template, world), body)

    assert response.status_code == 404
    assert response.json() == call(other_provider, method, fill(template, world, missing=True), body).json()
    assert snapshot() == before


@pytest.mark.parametrize(("method", "template", "body"), JOB_CALLS + ARTIFACT_CALLS)
@pytest.mark.parametrize("stranger", ["other_developer", "provider"])
def test_nobody_else_reads_or_cancels_a_developers_job_or_artifact(world, request, stranger, method, template,
                                                                    body):
    person = request.getfixturevalue(stranger)
    before = snapshot()

    response = call(person, method, fill(template, world), body)

    assert response.status_code == 404
    assert response.json() == call(person, method, fill(template, world, missing=True), body).json()
    assert snapshot() == before


def test_a_provider_cannot_offer_gpus_of_another_providers_node(world, other_provider):
    response = other_provider.client.post("/api/v1/offers/", {
        "node": world["node"], "gpu_model": "NVIDIA RTX 4090", "gpu_count": 1, "price_per_gpu_hour_wei": 1,
    }, format="json")

    assert response.status_code == 404
    assert Offer.objects.count() == 2


def test_another_providers_paused_offer_is_invisible_but_an_active_one_is_public(world, other_provider, anon):
    for person in (other_provider.client, anon):
        assert person.get(f"/api/v1/offers/{world['paused']}/").status_code == 404
        assert person.get(f"/api/v1/offers/{world['offer']}/").status_code == 200


def test_lists_show_only_the_callers_own_things(world, other_provider, other_developer):
    assert other_provider.client.get("/api/v1/nodes/").json()["results"] == []
    assert [o["id"] for o in other_provider.client.get("/api/v1/offers/", {"mine": "true"}).json()["results"]] == []
    assert other_developer.client.get("/api/v1/jobs/").json()["results"] == []
    assert other_developer.client.get("/api/v1/artifacts/").json()["results"] == []


def test_a_provider_sees_a_job_on_its_node_but_not_the_job_itself(world, provider):
    assert [j["id"] for j in provider.client.get(f"/api/v1/nodes/{world['node']}/jobs/").json()["results"]] == [
        world["job"]]
    assert provider.client.get(f"/api/v1/jobs/{world['job']}/").status_code == 404


def test_a_node_token_cannot_act_as_its_provider_elsewhere(world, provider):
    node = make_node(provider, "rig-2")  # the world's token is not kept anywhere; a new node shows its own
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {node['join_token']}")

    for path in ("/api/v1/me", "/api/v1/nodes/", f"/api/v1/offers/{world['offer']}/pause/"):
        response = client.post(path) if path.endswith("pause/") else client.get(path)
        assert response.status_code == 401, path
    assert Offer.objects.get(pk=world["offer"]).status == "active"


# --- roles -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/api/v1/nodes/", {"name": "rig", "region": "eu-west", "cpu_cores": 8, "ram_gb": 64,
                                "gpus": [{"model": "NVIDIA L4", "count": 1}]}),
    ("get", "/api/v1/nodes/", None),
    ("get", "/api/v1/nodes/{node}/", None),
    ("get", "/api/v1/nodes/{node}/jobs/", None),
    ("post", "/api/v1/offers/", {"node": "{node}", "gpu_model": "NVIDIA RTX 4090", "gpu_count": 1,
                                 "price_per_gpu_hour_wei": 1}),
    ("get", "/api/v1/offers/?mine=true", None),
    ("patch", "/api/v1/offers/{offer}/", {"price_per_gpu_hour_wei": 1}),
    ("post", "/api/v1/offers/{offer}/pause/", None),
    ("post", "/api/v1/offers/{paused}/resume/", None),
    ("delete", "/api/v1/offers/{offer}/", None),
])
def test_a_developer_may_not_manage_nodes_or_offers(world, developer, method, path, body):
    if body and body.get("node") == "{node}":
        body = {**body, "node": world["node"]}
    before = snapshot()

    response = call(developer, method, fill(path, world), body)

    assert response.status_code == 403
    assert response.json()["code"] == "provider_only"
    assert snapshot() == before


def test_a_developer_patching_a_node_changes_nothing(world, developer):
    response = developer.client.patch(f"/api/v1/nodes/{world['node']}/", {"name": "mine-now"}, format="json")

    assert response.status_code in {403, 404}
    assert response.json()["code"] in {"provider_only", "not_found"}
    assert Node.objects.get(pk=world["node"]).name == "rig-1"


# --- no token ----------------------------------------------------------------------------------

PRIVATE = [
    ("get", "/api/v1/me", None), ("patch", "/api/v1/me", {"payout_address": "0x0"}),
    ("post", "/api/v1/auth/token/rotate", None),
    ("get", "/api/v1/nodes/", None), ("post", "/api/v1/nodes/", {}), ("get", "/api/v1/nodes/{node}/", None),
    ("patch", "/api/v1/nodes/{node}/", {"name": "x"}), ("get", "/api/v1/nodes/{node}/jobs/", None),
    ("post", "/api/v1/nodes/heartbeat/", {}),
    ("post", "/api/v1/offers/", {}), ("get", "/api/v1/offers/?mine=true", None),
    ("patch", "/api/v1/offers/{offer}/", {"price_per_gpu_hour_wei": 1}),
    ("post", "/api/v1/offers/{offer}/pause/", None), ("post", "/api/v1/offers/{paused}/resume/", None),
    ("delete", "/api/v1/offers/{offer}/", None),
    ("get", "/api/v1/artifacts/", None), ("post", "/api/v1/artifacts/", None),
    ("get", "/api/v1/artifacts/{artifact}/", None), ("get", "/api/v1/artifacts/{artifact}/download/", None),
    ("get", "/api/v1/jobs/", None), ("post", "/api/v1/jobs/", {"kind": "benchmark"}),
    *JOB_CALLS,
]


@pytest.mark.parametrize(("method", "path", "body"), PRIVATE)
def test_private_endpoints_need_a_token(world, anon, method, path, body):
    before = snapshot()

    response = getattr(anon, method)(fill(path, world), body, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.has_header("WWW-Authenticate")
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/api/v1/offers/", "/api/v1/offers/{offer}/", "/api/v1/catalog/gpus/",
                                  "/api/v1/job-kinds/"])
def test_public_endpoints_need_no_token(world, anon, path):
    assert anon.get(fill(path, world)).status_code == 200


@pytest.mark.parametrize("header", ["Token nope", "Token ", "Bearer abc", "Basic YWxpY2U6cHc="])
def test_a_bad_or_foreign_authorization_header_is_not_a_way_in(world, anon, header):
    response = anon.get("/api/v1/jobs/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
