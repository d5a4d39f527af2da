"""The Redis cache keeps the API answering while Redis restarts (real redis-server)."""
from __future__ import annotations

from marketplace.cache import ResilientRedisCache


def test_it_works_with_redis_and_degrades_without_it(redis_server):
    cache = ResilientRedisCache(redis_server.url, {"OPTIONS": {"socket_connect_timeout": 0.5}})
    cache.set("throttle", [1, 2], 30)
    assert cache.get("throttle") == [1, 2]
    assert cache.add("lock", "1", 30) is True and cache.add("lock", "1", 30) is False
    redis_server.kill()
    assert cache.get("throttle", "miss") == "miss"
    assert cache.add("lock", "1", 30) is True  # locks are granted: sweeps are idempotent anyway
    assert cache.incr("count") == 1
    cache.set("anything", 1)  # dropped, no exception
