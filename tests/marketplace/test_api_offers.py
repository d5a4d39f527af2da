"""Offers over the API: the provider's side (create, edit, pause, resume, withdraw, capacity)
and the public search (filters, ordering, cursor pages, query count)."""
from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import Node, Offer
from marketplace.services.benchmarks import record_benchmark
from tests.conftest import heartbeat, make_node, make_offer

OFFERS = "/api/v1/offers/"
RTX = "NVIDIA RTX 4090"


def offer_body(node_id: int, **overrides: Any) -> dict[str, Any]:
    return {"node": node_id, "gpu_model": RTX, "gpu_count": 1, "price_per_gpu_hour_wei": 10**15, **overrides}


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [offer["id"] for offer in response.json()["results"]]


# --- creating ----------------------------------------------------------------------------------

def test_a_provider_offers_gpus_of_a_node(provider, node):
    response = provider.client.post(OFFERS, offer_body(node["id"], gpu_count=2, price_per_gpu_hour_wei=str(
        1_500_000_000_000_000), min_duration_s=600, max_duration_s=7200), format="json")

    assert response.status_code == 201
    body = response.json()
    assert {k: v for k, v in body.items() if k not in {"id", "created_at"}} == {
        "node": node["id"], "gpu_model": RTX, "vram_gb": 24, "region": "eu-west", "gpu_count": 2, "free_gpus": 2,
        "price_per_gpu_hour_wei": "1500000000000000", "price_per_gpu_hour_eth": "0.0015",
        "min_duration_s": 600, "max_duration_s": 7200, "status": "active", "node_status": "offline", "score": 0,
        "benchmarked_at": None}
    offer = Offer.objects.get(pk=body["id"])
    assert offer.provider == provider.user and int(offer.price_per_gpu_hour_wei) == 1_500_000_000_000_000


def test_it_takes_default_lease_durations(provider, node):
    body = make_offer(provider, node["id"])
    assert (body["min_duration_s"], body["max_duration_s"]) == (60, 24 * 3600)


def test_it_answers_prices_as_exact_strings_even_past_two_to_the_53(provider, node):
    price = 2**256 - 1
    body = make_offer(provider, node["id"], price=price)
    assert body["price_per_gpu_hour_wei"] == str(price)
    assert APIClient().get(f"{OFFERS}{body['id']}/").json()["price_per_gpu_hour_wei"] == str(price)


def test_it_refuses_a_gpu_model_the_node_does_not_have(provider, node):
    response = provider.client.post(OFFERS, offer_body(node["id"], gpu_model="NVIDIA H200"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "gpu_not_on_node"
    assert not Offer.objects.exists()


@pytest.mark.parametrize(("overrides", "code"), [
    ({"price_per_gpu_hour_wei": 0}, "invalid_price"),
    ({"min_duration_s": 7200, "max_duration_s": 3600}, "invalid_duration"),
    ({"min_duration_s": 59}, "min_value"),
    ({"max_duration_s": 90 * 24 * 3600 + 1}, "max_value"),
    ({"gpu_count": 0}, "min_value"),
])
def test_it_refuses_impossible_terms(provider, node, overrides, code):
    response = provider.client.post(OFFERS, offer_body(node["id"], **overrides), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Offer.objects.exists()


# --- capacity: never offer more GPUs than the node has -----------------------------------------

def test_it_refuses_to_offer_more_gpus_than_the_node_has(provider, node):  # the node has 2 x RTX 4090
    response = provider.client.post(OFFERS, offer_body(node["id"], gpu_count=3), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "gpus_overcommitted"
    assert not Offer.objects.exists()


def test_it_counts_every_offer_of_the_node_together(provider, node):
    make_offer(provider, node["id"], gpu_count=1)
    make_offer(provider, node["id"], gpu_count=1)

    response = provider.client.post(OFFERS, offer_body(node["id"]), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "gpus_overcommitted"
    assert Offer.objects.count() == 2


def test_paused_offers_still_hold_their_gpus(provider, node):
    paused = make_offer(provider, node["id"], gpu_count=2)
    provider.client.post(f"{OFFERS}{paused['id']}/pause/")

    response = provider.client.post(OFFERS, offer_body(node["id"]), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "gpus_overcommitted"


def test_withdrawing_an_offer_frees_its_gpus(provider, node):
    first = make_offer(provider, node["id"], gpu_count=2)
    assert provider.client.delete(f"{OFFERS}{first['id']}/").status_code == 200

    again = make_offer(provider, node["id"], gpu_count=2)

    assert again["gpu_count"] == 2


def test_gpu_groups_of_one_node_are_counted_apart(provider):
    node = make_node(provider, gpus=[{"model": RTX, "count": 1}, {"model": "NVIDIA L4", "count": 1}])
    make_offer(provider, node["id"], gpu_model=RTX)
    assert make_offer(provider, node["id"], gpu_model="NVIDIA L4")["gpu_model"] == "NVIDIA L4"


def test_raising_the_gpu_count_is_checked_against_the_node(provider, node):
    offer = make_offer(provider, node["id"], gpu_count=1)
    make_offer(provider, node["id"], gpu_count=1)

    response = provider.client.patch(f"{OFFERS}{offer['id']}/", {"gpu_count": 2}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "gpus_overcommitted"
    assert Offer.objects.get(pk=offer["id"]).gpu_count == 1


def test_an_offer_does_not_compete_with_itself_when_its_count_is_kept(provider, node):
    offer = make_offer(provider, node["id"], gpu_count=2)

    response = provider.client.patch(f"{OFFERS}{offer['id']}/", {"gpu_count": 2, "price_per_gpu_hour_wei": 7},
                                     format="json")

    assert response.status_code == 200
    assert response.json()["price_per_gpu_hour_wei"] == "7"


def test_it_refuses_to_shrink_an_offer_below_its_leased_gpus(provider, node):
    offer = make_offer(provider, node["id"], gpu_count=2)
    Offer.objects.filter(pk=offer["id"]).update(reserved_gpus=2)

    response = provider.client.patch(f"{OFFERS}{offer['id']}/", {"gpu_count": 1}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "gpus_in_use"


# --- editing and the offer's life --------------------------------------------------------------

def test_a_provider_reprices_an_offer_and_changes_its_durations(provider, node):
    offer = make_offer(provider, node["id"])

    response = provider.client.patch(f"{OFFERS}{offer['id']}/", {
        "price_per_gpu_hour_wei": "2000000000000000", "min_duration_s": 120, "max_duration_s": 240}, format="json")

    assert response.status_code == 200
    stored = Offer.objects.get(pk=offer["id"])
    assert (int(stored.price_per_gpu_hour_wei), stored.min_duration_s, stored.max_duration_s) == (2 * 10**15, 120, 240)


@pytest.mark.parametrize(("body", "code"), [
    ({"price_per_gpu_hour_wei": 0}, "invalid_price"),
    ({"min_duration_s": 100 * 3600}, "invalid_duration"),  # above the current max of 24 h
    ({"node": 5}, "unknown_field"),
    ({"gpu_model": "NVIDIA L4"}, "unknown_field"),
    ({"status": "paused"}, "unknown_field"),
])
def test_it_refuses_a_bad_edit_and_changes_nothing(provider, node, body, code):
    offer = make_offer(provider, node["id"])

    response = provider.client.patch(f"{OFFERS}{offer['id']}/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    stored = Offer.objects.get(pk=offer["id"])
    assert (int(stored.price_per_gpu_hour_wei), stored.min_duration_s, stored.status) == (10**15, 60, "active")


def test_pause_resume_and_withdraw(provider, node):
    offer = make_offer(provider, node["id"])
    url = f"{OFFERS}{offer['id']}/"

    assert provider.client.post(url + "pause/").json()["status"] == "paused"
    assert provider.client.post(url + "pause/").json()["status"] == "paused"  # pausing twice is fine
    assert provider.client.post(url + "resume/").json()["status"] == "active"
    assert provider.client.post(url + "resume/").json()["status"] == "active"
    withdrawn = provider.client.delete(url)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert provider.client.delete(url).status_code == 200  # withdrawing twice too
    assert Offer.objects.get(pk=offer["id"]).status == "withdrawn"


def test_a_paused_offer_can_be_withdrawn(provider, node):
    offer = make_offer(provider, node["id"])
    provider.client.post(f"{OFFERS}{offer['id']}/pause/")
    assert provider.client.delete(f"{OFFERS}{offer['id']}/").json()["status"] == "withdrawn"


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("post", "pause/", None), ("post", "resume/", None), ("patch", "", {"price_per_gpu_hour_wei": 5}),
])
def test_a_withdrawn_offer_is_over_for_good(provider, node, method, suffix, body):
    offer = make_offer(provider, node["id"])
    provider.client.delete(f"{OFFERS}{offer['id']}/")

    response = getattr(provider.client, method)(f"{OFFERS}{offer['id']}/{suffix}", body, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_offer_state"
    stored = Offer.objects.get(pk=offer["id"])
    assert stored.status == "withdrawn" and int(stored.price_per_gpu_hour_wei) == 10**15


def test_a_paused_offer_leaves_the_search_but_not_its_owners_view(provider, other_provider, node, anon):
    offer = make_offer(provider, node["id"])
    provider.client.post(f"{OFFERS}{offer['id']}/pause/")

    assert ids(anon.get(OFFERS)) == []
    assert anon.get(f"{OFFERS}{offer['id']}/").status_code == 404
    assert other_provider.client.get(f"{OFFERS}{offer['id']}/").status_code == 404
    owners_view = provider.client.get(f"{OFFERS}{offer['id']}/")
    assert owners_view.status_code == 200 and owners_view.json()["status"] == "paused"


def test_the_owner_still_reads_a_withdrawn_offer(provider, node):
    offer = make_offer(provider, node["id"])
    provider.client.delete(f"{OFFERS}{offer['id']}/")
    assert provider.client.get(f"{OFFERS}{offer['id']}/").json()["status"] == "withdrawn"


def test_an_offer_cannot_be_replaced_wholesale(provider, node):
    offer = make_offer(provider, node["id"])
    assert provider.client.put(f"{OFFERS}{offer['id']}/", offer_body(node["id"]), format="json").status_code == 405


# --- ?mine=true --------------------------------------------------------------------------------

def test_mine_lists_a_providers_own_offers_in_every_status(provider, other_provider):
    node = make_node(provider, gpus=[{"model": RTX, "count": 3}])
    active, paused, withdrawn = (make_offer(provider, node["id"], price=p) for p in (1, 2, 3))
    provider.client.post(f"{OFFERS}{paused['id']}/pause/")
    provider.client.delete(f"{OFFERS}{withdrawn['id']}/")
    make_offer(other_provider, make_node(other_provider)["id"])

    assert ids(provider.client.get(OFFERS, {"mine": "true"})) == [active["id"], paused["id"], withdrawn["id"]]
    assert ids(provider.client.get(OFFERS, {"mine": "1", "status": "paused"})) == [paused["id"]]
    assert ids(provider.client.get(OFFERS)) != ids(provider.client.get(OFFERS, {"mine": "true"}))


def test_mine_needs_a_provider(anon, developer):
    assert anon.get(OFFERS, {"mine": "true"}).status_code == 401
    response = developer.client.get(OFFERS, {"mine": "true"})
    assert response.status_code == 403
    assert response.json()["code"] == "provider_only"


def test_outside_mine_a_status_filter_never_reveals_paused_offers(provider):
    node = make_node(provider, gpus=[{"model": RTX, "count": 2}])
    active, paused = make_offer(provider, node["id"]), make_offer(provider, node["id"])
    provider.client.post(f"{OFFERS}{paused['id']}/pause/")

    assert ids(APIClient().get(OFFERS, {"status": "paused"})) == [active["id"]]
    assert ids(provider.client.get(OFFERS, {"status": "paused"})) == [active["id"]]


# --- the public search -------------------------------------------------------------------------

@pytest.fixture
def market(provider, other_provider) -> dict[str, dict[str, Any]]:
    """Four offers on two nodes; only the first node (eu-west) is online."""
    eu = make_node(provider, "eu", region="eu-west", gpus=[{"model": RTX, "count": 4},
                                                          {"model": "NVIDIA H100 80GB HBM3", "count": 2}])
    us = make_node(other_provider, "us", region="us-east", gpus=[{"model": "NVIDIA A100 40GB", "count": 8},
                                                                {"model": "NVIDIA L4", "count": 1}])
    offers = {
        "rtx": make_offer(provider, eu["id"], RTX, gpu_count=3, price=10**15),
        "h100": make_offer(provider, eu["id"], "NVIDIA H100 80GB HBM3", gpu_count=2, price=5 * 10**15),
        "a100": make_offer(other_provider, us["id"], "NVIDIA A100 40GB", gpu_count=8, price=2 * 10**15),
        "l4": make_offer(other_provider, us["id"], "NVIDIA L4", gpu_count=1, price=5 * 10**14),
    }
    assert heartbeat(eu).status_code == 200
    return offers


def names(market: dict[str, dict[str, Any]], response: Any) -> list[str]:
    by_id = {offer["id"]: name for name, offer in market.items()}
    return [by_id[i] for i in ids(response)]


@pytest.mark.parametrize(("query", "expected"), [
    ({}, ["l4", "rtx", "a100", "h100"]),
    ({"gpu_model": RTX}, ["rtx"]),
    ({"gpu_model": "NVIDIA L4"}, ["l4"]),
    ({"gpu_model": "NVIDIA H200"}, []),
    ({"min_vram_gb": 24}, ["l4", "rtx", "a100", "h100"]),
    ({"min_vram_gb": 25}, ["a100", "h100"]),
    ({"min_vram_gb": 80}, ["h100"]),
    ({"min_vram_gb": 81}, []),
    ({"min_gpus": 1}, ["l4", "rtx", "a100", "h100"]),
    ({"min_gpus": 2}, ["rtx", "a100", "h100"]),
    ({"min_gpus": 3}, ["rtx", "a100"]),
    ({"min_gpus": 8}, ["a100"]),
    ({"max_price_wei": 2 * 10**15}, ["l4", "rtx", "a100"]),  # inclusive
    ({"max_price_wei": 2 * 10**15 - 1}, ["l4", "rtx"]),
    ({"max_price_wei": 0}, []),
    ({"region": "us-east"}, ["l4", "a100"]),
    ({"region": "eu-west"}, ["rtx", "h100"]),
    ({"region": "ap-south"}, []),
    ({"available": "true"}, ["rtx", "h100"]),
    ({"available": "false"}, ["l4", "a100"]),
    ({"region": "eu-west", "min_vram_gb": 80}, ["h100"]),
    ({"max_price_wei": 10**15, "min_gpus": 2}, ["rtx"]),
    ({"ordering": "price"}, ["l4", "rtx", "a100", "h100"]),
    ({"ordering": "-price"}, ["h100", "a100", "rtx", "l4"]),
    ({"ordering": "vram"}, ["rtx", "l4", "a100", "h100"]),  # 24 GB twice: the older offer first
    ({"ordering": "-vram"}, ["h100", "a100", "l4", "rtx"]),
    ({"ordering": "-price", "region": "us-east"}, ["a100", "l4"]),
])
def test_anyone_can_search_offers_with_every_filter_and_ordering(market, anon, query, expected):
    assert names(market, anon.get(OFFERS, query)) == expected


def test_min_gpus_counts_only_gpus_not_leased_right_now(market, anon):
    Offer.objects.filter(pk=market["a100"]["id"]).update(reserved_gpus=6)

    assert names(market, anon.get(OFFERS, {"min_gpus": 3})) == ["rtx"]
    assert anon.get(f"{OFFERS}{market['a100']['id']}/").json()["free_gpus"] == 2


def test_available_drops_draining_silent_and_fully_leased_nodes(market, anon, provider, settings):
    eu = Node.objects.get(name="eu")
    Offer.objects.filter(pk=market["rtx"]["id"]).update(reserved_gpus=3)
    assert names(market, anon.get(OFFERS, {"available": "true"})) == ["h100"]

    Node.objects.filter(pk=eu.pk).update(draining=True)
    assert names(market, anon.get(OFFERS, {"available": "true"})) == []

    Node.objects.filter(pk=eu.pk).update(draining=False)
    settings.NODE_HEARTBEAT_TIMEOUT_S = 1
    Node.objects.filter(pk=eu.pk).update(last_heartbeat_at=eu.last_heartbeat_at.replace(year=2000))
    assert names(market, anon.get(OFFERS, {"available": "true"})) == []


def test_the_best_benchmarked_offers_come_first_and_unbenchmarked_ones_last(market, anon):
    us = Node.objects.get(name="us")
    record_benchmark(node_id=us.pk, output={"cpu_gflops": 40.0, "gpu": {"devices": [{"matmul_tflops": 19.5}]}})
    record_benchmark(node_id=Node.objects.get(name="eu").pk, output={"cpu_gflops": 60.0})

    response = anon.get(OFFERS, {"ordering": "-score"})

    assert names(market, response) == ["l4", "a100", "h100", "rtx"]  # equal scores: the newer offer first
    assert [offer["score"] for offer in response.json()["results"]] == [19_540, 19_540, 60, 60]
    assert names(market, anon.get(OFFERS, {"ordering": "-score", "region": "eu-west"})) == ["h100", "rtx"]


def test_offers_show_their_nodes_status(market, anon):
    statuses = {o["id"]: o["node_status"] for o in anon.get(OFFERS).json()["results"]}
    assert statuses[market["rtx"]["id"]] == "online" and statuses[market["a100"]["id"]] == "offline"


@pytest.mark.parametrize("query", [
    {"gpu_model": "NVIDIA RTX 9999"}, {"min_vram_gb": "lots"}, {"min_vram_gb": -1}, {"min_gpus": 0},
    {"max_price_wei": -1}, {"max_price_wei": 2**256}, {"max_price_wei": "1.5"}, {"ordering": "score"},
    {"ordering": "price_per_gpu_hour_wei"}, {"region": "x" * 33}, {"min_gpus": "1.5"}, {"min_vram_gb": "23.5"},
    {"min_gpus": 65}, {"min_vram_gb": 4097},
])
def test_it_refuses_a_malformed_search(market, anon, query):
    response = anon.get(OFFERS, query)

    assert response.status_code == 400
    assert set(response.json()) >= {"code", "detail"}


# --- cursor pages ------------------------------------------------------------------------------

def bulk_offers(person: Any, node: dict[str, Any], count: int,
                price: Callable[[int], int] = lambda i: 10**15, vram: Callable[[int], int] = lambda i: 24,
                score: Callable[[int], int] = lambda i: 0) -> list[int]:
    """Many offers on one node straight into the table (the capacity rule is not the subject here;
    nor is the score being one per node)."""
    row = Node.objects.get(pk=node["id"])
    gpu = row.gpus.get()
    created = Offer.objects.bulk_create(
        Offer(provider=person.user, node=row, gpu=gpu, gpu_model=gpu.model, vram_gb=vram(i), region=row.region,
              gpu_count=1, price_per_gpu_hour_wei=price(i), score=score(i)) for i in range(count))
    return [offer.pk for offer in created]


def walk(client: APIClient, query: dict[str, Any], direction: str = "next", start: str | None = None) -> list[int]:
    """Follow the pages' links to the end; return every id in the order seen."""
    seen: list[int] = []
    response = client.get(start) if start else client.get(OFFERS, query)
    for _ in range(1000):
        seen += ids(response)
        link = response.json()[direction]
        if link is None:
            return seen
        response = client.get(link)
    raise AssertionError("the pages never ended")


def expected_order(ordering: str) -> list[int]:
    column = {"price": "price_per_gpu_hour_wei", "vram": "vram_gb", "score": "score"}[ordering.lstrip("-")]
    sign = "-" if ordering.startswith("-") else ""
    return list(Offer.objects.order_by(sign + column, sign + "id").values_list("pk", flat=True))


@pytest.mark.parametrize("ordering", ["price", "-price", "vram", "-vram", "-score"])
def test_walking_every_page_sees_every_offer_once_in_order(provider, node, anon, ordering):
    bulk_offers(provider, node, 53, price=lambda i: 10**15 + (i % 7) * 10**14, vram=lambda i: [24, 48, 80][i % 3],
                score=lambda i: [0, 35, 164_535, 35, 0][i % 5])  # runs of ties, unbenchmarked ones among them

    seen = walk(anon, {"ordering": ordering, "limit": 5})

    assert seen == expected_order(ordering)
    assert len(set(seen)) == 53


@pytest.mark.parametrize("ordering", ["price", "-vram", "-score"])
def test_walking_back_with_previous_links_sees_the_same_offers(provider, node, anon, ordering):
    bulk_offers(provider, node, 23, price=lambda i: 10**15 + (i % 4), vram=lambda i: [24, 80][i % 2],
                score=lambda i: [0, 2**63 - 1, 40][i % 3])
    forward_pages = []
    response = anon.get(OFFERS, {"ordering": ordering, "limit": 4})
    while True:
        forward_pages.append(ids(response))
        if response.json()["next"] is None:
            break
        response = anon.get(response.json()["next"])

    backward = walk(anon, {}, direction="previous", start=response.json()["previous"])

    assert response.json()["previous"] is not None
    assert sorted(backward) == sorted(sum(forward_pages[:-1], []))
    assert len(backward) == len(set(backward))


@pytest.mark.parametrize("ordering", ["price", "vram", "-score"])
def test_pages_stay_whole_across_a_long_run_of_equal_prices(provider, node, anon, ordering):
    bulk_offers(provider, node, 1234)  # one price, one VRAM size, no score: every row ties on the sort column

    seen = walk(anon, {"ordering": ordering, "limit": 100})

    assert len(seen) == 1234
    assert seen == expected_order(ordering)


def test_a_page_holds_20_offers_unless_asked_and_never_more_than_100(provider, node, anon):
    bulk_offers(provider, node, 130)

    assert len(ids(anon.get(OFFERS))) == 20
    assert len(ids(anon.get(OFFERS, {"limit": 7}))) == 7
    assert len(ids(anon.get(OFFERS, {"limit": 100}))) == 100
    assert len(ids(anon.get(OFFERS, {"limit": 101}))) == 100
    assert len(ids(anon.get(OFFERS, {"limit": 10000}))) == 100
    assert len(ids(anon.get(OFFERS, {"limit": 0}))) == 20
    assert len(ids(anon.get(OFFERS, {"limit": -3}))) == 20
    assert len(ids(anon.get(OFFERS, {"limit": "many"}))) == 20


def test_filters_hold_on_every_page(provider, node, anon):
    bulk_offers(provider, node, 40, price=lambda i: i + 1)

    seen = walk(anon, {"max_price_wei": 25, "limit": 6, "ordering": "-price"})

    assert [int(Offer.objects.get(pk=pk).price_per_gpu_hour_wei) for pk in seen] == list(range(25, 0, -1))


def forged(position: str) -> str:
    return base64.b64encode(f"p={position}".encode()).decode()


@pytest.mark.parametrize("ordering", ["price", "-vram", "-score"])
@pytest.mark.parametrize("cursor", [
    "not-base64!", base64.b64encode(b"o=-1").decode(), base64.b64encode(b"r=x").decode(), forged("abc"),
    forged("5"), forged("5_"), forged("_5"), forged("1.5_3"), forged("-1_3"), forged("5_-3"),
    forged("9" * 78 + "_1"), forged(f"{2**256}_1"), forged(f"1_{2**63}"), forged("\u0661_1"),
])
def test_a_forged_or_broken_cursor_is_not_found_not_a_crash(provider, node, anon, cursor, ordering):
    bulk_offers(provider, node, 3)

    response = anon.get(OFFERS, {"cursor": cursor, "ordering": ordering})

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Invalid cursor"}


@pytest.mark.parametrize("ordering", ["price", "-price", "vram", "-vram", "-score"])
def test_a_cursor_past_every_row_gives_an_empty_last_page(provider, node, anon, ordering):
    bulk_offers(provider, node, 3)
    beyond = "0_1" if ordering.startswith("-") else f"{2**256 - 1}_1"

    response = anon.get(OFFERS, {"cursor": forged(beyond), "ordering": ordering})

    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["next"] is None


@pytest.mark.parametrize("value", [2**63 - 1, 2**63, 2**255])
def test_a_score_cursor_above_every_score_starts_from_the_best(provider, node, anon, value):
    """Scores are bigints; a cursor past that range (forged, or from a wider column) is no crash."""
    created = bulk_offers(provider, node, 4, score=lambda i: [5, 2**63 - 1, 7, 0][i])

    response = anon.get(OFFERS, {"cursor": forged(f"{value}_{created[-1] + 1}"), "ordering": "-score"})

    assert ids(response) == [created[i] for i in (1, 2, 0, 3)]


SEARCHES: list[tuple[str, dict[str, Any]]] = [
    ("anon", {"limit": 100}),
    ("anon", {"limit": 100, "available": "true", "min_gpus": 1, "ordering": "-vram"}),
    ("developer", {"limit": 100, "max_price_wei": 10**18, "ordering": "-price"}),
    ("anon", {"limit": 100, "ordering": "-score"}),
    ("provider", {"limit": 100, "mine": "true", "status": "active"}),
]


def test_the_search_costs_the_same_few_queries_for_3_or_100_offers(provider, node, anon, developer,
                                                                    django_assert_max_num_queries):
    clients = {"anon": anon, "developer": developer.client, "provider": provider.client}

    def query_counts(expected_rows: int) -> list[int]:
        counts = []
        for who, query in SEARCHES:
            # at most: the token, the caller's account (for ?mine) and the one page of offers joined to nodes
            with django_assert_max_num_queries(3) as captured:
                response = clients[who].get(OFFERS, query)
            assert len(ids(response)) in {0, expected_rows}
            counts.append(len(captured))
        return counts

    bulk_offers(provider, node, 3)
    few = query_counts(3)
    bulk_offers(provider, make_node(provider, "rig-2"), 197)
    Node.objects.update(last_heartbeat_at=timezone.now())
    many = query_counts(100)

    assert few == many
    assert few[0] == 1  # an anonymous search is a single SELECT


# --- races ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_concurrent_offers_never_cover_more_gpus_than_the_node_has(provider):
    """Eight requests race for a node's two GPUs, each on its own connection: exactly two win."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connection

    node = make_node(provider, gpus=[{"model": RTX, "count": 2}])
    start = Barrier(8)

    def offer_one(_: int) -> int:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {provider.token}")
            start.wait()
            return client.post(OFFERS, offer_body(node["id"]), format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(offer_one, range(8)))

    assert statuses == [201, 201] + [409] * 6
    assert sum(Offer.objects.filter(node_id=node["id"]).values_list("gpu_count", flat=True)) == 2
