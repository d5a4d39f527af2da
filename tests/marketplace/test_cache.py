"""The Redis cache keeps the API answering while Redis restarts (real redis-server)."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from marketplace.cache import ResilientRedisCache


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_port(tmp_path):
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port, server
    server.kill()
    server.wait()


def test_it_works_with_redis_and_degrades_without_it(redis_port):
    port, server = redis_port
    cache = ResilientRedisCache(f"redis://127.0.0.1:{port}/0", {"OPTIONS": {"socket_connect_timeout": 0.5}})
    cache.set("throttle", [1, 2], 30)
    assert cache.get("throttle") == [1, 2]
    assert cache.add("lock", "1", 30) is True and cache.add("lock", "1", 30) is False
    server.kill()
    server.wait()
    assert cache.get("throttle", "miss") == "miss"
    assert cache.add("lock", "1", 30) is True  # locks are granted: sweeps are idempotent anyway
    assert cache.incr("count") == 1
    cache.set("anything", 1)  # dropped, no exception
