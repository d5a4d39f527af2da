"""Benchmarks: what a finished ``benchmark`` job tells the marketplace about its node.

The score formula lives in `workers.runtime.scoring`, shared with the node that measured it, so
the figure a job's output shows and the figure the offer search sorts by cannot drift apart.
"""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from marketplace.models import Offer
from workers.runtime.scoring import benchmark_score


def record_benchmark(*, node_id: int, output: object, now: datetime | None = None) -> int:
    """Score every offer of node ``node_id`` from a benchmark job's ``output``; the offers updated.

    One UPDATE, so the node's offers never show two different scores, and the latest result
    recorded wins. The output comes from the provider's machine: figures that are missing or
    malformed score 0 rather than raise, because the job itself did succeed.

    >>> record_benchmark(node_id=3, output={"cpu_gflops": 35.2, "gpu": {"visible": False}})
    2
    >>> Offer.objects.filter(node_id=3).values_list("score", flat=True)
    <OfferQuerySet [35, 35]>
    """
    return Offer.objects.filter(node_id=node_id).update(score=benchmark_score(output),
                                                         benchmarked_at=now or timezone.now())
