"""Recording a benchmark result: every offer of the node gets the score, in one UPDATE, and a
malformed result scores 0 instead of failing the job that produced it."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Any

import pytest
from django.utils import timezone

from marketplace.models import Offer, OfferStatus
from marketplace.services.benchmarks import record_benchmark
from tests.conftest import make_node, make_offer

OUTPUT = {"cpu_gflops": 35.2, "memory_bandwidth_gbps": 9.8, "gpu": {
    "visible": True, "devices": [{"name": "NVIDIA RTX 4090", "matmul_tflops": 82.6},
                                 {"name": "NVIDIA RTX 4090", "matmul_tflops": 81.9}]}}
WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=dt_timezone.utc)


def scores(node_id: int) -> list[tuple[int, datetime | None]]:
    return list(Offer.objects.filter(node_id=node_id).order_by("id").values_list("score", "benchmarked_at"))


@pytest.fixture
def two_offers(provider: Any, node: dict[str, Any]) -> list[int]:
    """The node's two RTX 4090s, offered one by one; the second one paused."""
    first, second = make_offer(provider, node["id"]), make_offer(provider, node["id"])
    provider.client.post(f"/api/v1/offers/{second['id']}/pause/")
    return [first["id"], second["id"]]


def test_every_offer_of_the_node_gets_the_score_in_one_update(node: dict[str, Any], two_offers: list[int],
                                                               django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        updated = record_benchmark(node_id=node["id"], output=OUTPUT, now=WHEN)

    assert updated == 2
    assert scores(node["id"]) == [(35 + 164_500, WHEN)] * 2
    assert Offer.objects.get(pk=two_offers[1]).status == OfferStatus.PAUSED  # scored, not resumed


def test_other_nodes_offers_are_left_alone(provider: Any, other_provider: Any, node: dict[str, Any],
                                           two_offers: list[int]) -> None:
    other = make_node(other_provider, "other")
    make_offer(other_provider, other["id"])

    record_benchmark(node_id=node["id"], output=OUTPUT, now=WHEN)

    assert scores(other["id"]) == [(0, None)]


def test_the_latest_result_replaces_the_earlier_one(node: dict[str, Any], two_offers: list[int]) -> None:
    record_benchmark(node_id=node["id"], output=OUTPUT, now=WHEN)
    later = WHEN.replace(hour=13)

    record_benchmark(node_id=node["id"], output={"cpu_gflops": 40.4}, now=later)

    assert scores(node["id"]) == [(40, later)] * 2


def test_it_stamps_the_current_time_when_not_told(node: dict[str, Any], two_offers: list[int]) -> None:
    before = timezone.now()
    record_benchmark(node_id=node["id"], output={"cpu_gflops": 12.0})
    after = timezone.now()

    for score, stamped in scores(node["id"]):
        assert score == 12 and stamped is not None and before <= stamped <= after


@pytest.mark.parametrize("output", [
    {}, None, "not a dict", [35.2], {"cpu_gflops": "fast"}, {"cpu_gflops": -3.0}, {"cpu_gflops": float("nan")},
    {"cpu_gflops": None, "gpu": {"visible": False, "reason": "no NVML"}}, {"gpu": {"devices": "many"}},
])
def test_a_malformed_result_scores_zero_without_raising(node: dict[str, Any], two_offers: list[int],
                                                        output: Any) -> None:
    record_benchmark(node_id=node["id"], output=OUTPUT, now=WHEN)

    assert record_benchmark(node_id=node["id"], output=output, now=WHEN) == 2
    assert scores(node["id"]) == [(0, WHEN)] * 2


def test_absurd_figures_fit_the_column(node: dict[str, Any], two_offers: list[int]) -> None:
    record_benchmark(node_id=node["id"], output={"cpu_gflops": 1e300}, now=WHEN)

    assert scores(node["id"]) == [(2**63 - 1, WHEN)] * 2


def test_a_node_without_offers_or_an_unknown_node_updates_nothing(node: dict[str, Any]) -> None:
    assert record_benchmark(node_id=node["id"], output=OUTPUT) == 0
    assert record_benchmark(node_id=10**9, output=OUTPUT) == 0


def test_the_api_shows_the_score_and_when_it_was_measured(anon: Any, node: dict[str, Any],
                                                          two_offers: list[int]) -> None:
    body = anon.get(f"/api/v1/offers/{two_offers[0]}/").json()
    assert (body["score"], body["benchmarked_at"]) == (0, None)

    record_benchmark(node_id=node["id"], output=OUTPUT, now=WHEN)

    body = anon.get(f"/api/v1/offers/{two_offers[0]}/").json()
    assert (body["score"], body["benchmarked_at"]) == (164_535, "2025-03-01T12:00:00Z")
