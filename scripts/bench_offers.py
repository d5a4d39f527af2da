#!/usr/bin/env python
"""Offer search with many offers: how long `GET /api/v1/offers/` takes, query by query.

Seeds N offers (default 100,000) over many providers' nodes, then times each search through
the real API stack (Django test client: URL routing, filters, serializer, cursor pagination)
and prints a table of medians. It also times the same first page with an offset paginator
that counts all matches, side by side, to show what the cursor saves.

    scripts/loopback-only scripts/with-postgres .venv/bin/python scripts/bench_offers.py --offers 100000
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from marketplace.catalog import GPU_CATALOG  # noqa: E402
from marketplace.models import Account, Node, NodeGpu, Offer, Role  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402

REGIONS = ["us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast"]
OFFERS_PER_NODE = 4


def seed(total: int, rng: random.Random) -> None:
    """Bulk-insert providers, nodes, GPU groups and ``total`` offers (bypassing services: speed)."""
    models = list(GPU_CATALOG.values())
    nodes_needed = total // OFFERS_PER_NODE
    with transaction.atomic():
        providers = User.objects.bulk_create(User(username=f"bench-{i}") for i in range(nodes_needed // 50 + 1))
        Account.objects.bulk_create(Account(user=u, role=Role.PROVIDER) for u in providers)
        now = timezone.now()
        nodes = Node.objects.bulk_create(
            Node(provider=providers[i // 50], name=f"n{i}", region=rng.choice(REGIONS), cpu_cores=32, ram_gb=256,
                 join_token_hash=f"{i:064x}", last_heartbeat_at=now if rng.random() < 0.7 else None)
            for i in range(nodes_needed))
        gpus = NodeGpu.objects.bulk_create(
            NodeGpu(node=node, model=(m := rng.choice(models)).name, vram_gb=m.vram_gb, count=8) for node in nodes)
        Offer.objects.bulk_create(
            (Offer(provider_id=gpu.node.provider_id, node=gpu.node, gpu=gpu, gpu_model=gpu.model, vram_gb=gpu.vram_gb,
                   region=gpu.node.region, gpu_count=2, price_per_gpu_hour_wei=rng.randrange(10**14, 10**16),
                   status="active" if rng.random() < 0.9 else "paused")
             for gpu in gpus for _ in range(OFFERS_PER_NODE)), batch_size=5000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def timed(client: Client, url: str, repeats: int) -> tuple[float, int]:
    samples, rows = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        rows = len(response.json()["results"])
    return statistics.median(samples) * 1000, rows


def offset_page_with_count(repeats: int) -> float:
    """The naive alternative: an exact COUNT(*) plus an OFFSET page."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        queryset = Offer.objects.listed().order_by("price_per_gpu_hour_wei", "id")
        queryset.count()
        list(queryset[50000:50020])
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    if Offer.objects.count() < args.offers:
        started = time.perf_counter()
        seed(args.offers - Offer.objects.count(), random.Random(7))
        print(f"seeded {Offer.objects.count()} offers in {time.perf_counter() - started:.1f}s "
              f"({connection.vendor})")
    client = Client()
    h100 = "NVIDIA H100 80GB HBM3"
    queries = {
        "first page, cheapest first": "/api/v1/offers/",
        "gpu_model + max_price_wei": f"/api/v1/offers/?gpu_model={h100}&max_price_wei=3000000000000000",
        "min_vram_gb=80, by -vram": "/api/v1/offers/?min_vram_gb=80&ordering=-vram",
        "region + min_gpus=2": "/api/v1/offers/?region=eu-west&min_gpus=2",
        "available=true": "/api/v1/offers/?available=true",
        "all filters": f"/api/v1/offers/?gpu_model={h100}&min_vram_gb=40&min_gpus=1&max_price_wei=9000000000000000"
                       "&region=us-east&available=true&ordering=price&limit=100",
        "limit=10000 (capped at 100)": "/api/v1/offers/?limit=10000",
    }
    print(f"\n{'query':<34} {'median ms':>10} {'rows':>6}")
    for name, url in queries.items():
        ms, rows = timed(client, url, args.repeats)
        print(f"{name:<34} {ms:>10.1f} {rows:>6}")
    # Deep page: follow cursors 5 times to show later pages cost the same as the first.
    url, depth = "/api/v1/offers/?limit=100", 0
    for depth in range(5):
        url = client.get(url).json()["next"].replace("http://testserver", "")
    ms, rows = timed(client, url, args.repeats)
    print(f"{'page 6 via cursor':<34} {ms:>10.1f} {rows:>6}")
    naive = offset_page_with_count(args.repeats)
    cursor_ms, _ = timed(client, "/api/v1/offers/", args.repeats)
    print(f"\nfirst page through the API (cursor)            {cursor_ms:8.1f} ms")
    print(f"COUNT(*) + OFFSET 50000 page, ORM only (naive)  {naive:8.1f} ms  ({naive / cursor_ms:.1f}x the cursor page)")


if __name__ == "__main__":
    main()
