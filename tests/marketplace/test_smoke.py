"""The issue's 'done when' path, end to end over the API."""
from __future__ import annotations

from tests.conftest import make_node, make_offer


def test_a_developer_finds_an_offer_and_submits_a_benchmark_job_that_waits_queued(provider, developer, anon):
    node = make_node(provider, gpus=[{"model": "NVIDIA RTX 4090", "count": 2}])
    assert node["join_token"].startswith("node_")
    offer = make_offer(provider, node["id"], gpu_count=2, price=2 * 10**15)

    found = anon.get("/api/v1/offers/", {"gpu_model": "NVIDIA RTX 4090", "max_price_wei": 3 * 10**15}).json()
    assert [o["id"] for o in found["results"]] == [offer["id"]]
    assert found["results"][0]["price_per_gpu_hour_eth"] == "0.002"

    response = developer.client.post("/api/v1/jobs/", {"kind": "benchmark", "requirements": {
        "gpu_model": "NVIDIA RTX 4090", "gpus": 2}, "max_price_wei": str(3 * 10**15)}, format="json")
    assert response.status_code == 201, response.json()
    job = response.json()
    assert job["state"] == "queued"
    events = developer.client.get(f"/api/v1/jobs/{job['id']}/events/").json()["results"]
    assert [(e["from_state"], e["to_state"]) for e in events] == [("", "pending"), ("pending", "queued")]
