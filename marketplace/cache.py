"""A Redis cache that degrades instead of failing while Redis is away.

The cache holds only throttle counters and short locks, so when Redis restarts the right
behaviour is to serve requests without them for a moment (fail open, with a warning), not to
answer 500: jobs are in the database and the dispatcher catches up once Redis is back.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")
_last_warning = [0.0]


def _degraded(operation: str, fallback: T, call: Callable[[], T]) -> T:
    try:
        return call()
    except (RedisConnectionError, RedisTimeoutError) as exc:
        if time.monotonic() - _last_warning[0] > 10:  # one line per 10 s, not one per request
            _last_warning[0] = time.monotonic()
            log.warning("cache unavailable (%s during %s): serving without rate limits", type(exc).__name__,
                        operation)
        return fallback


class ResilientRedisCache(RedisCache):
    """Django's Redis cache; reads miss, writes are dropped and locks are granted while Redis is down."""

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return _degraded("get", default, lambda: super(ResilientRedisCache, self).get(key, default, version))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> None:
        _degraded("set", None, lambda: super(ResilientRedisCache, self).set(key, value, timeout, version))

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return _degraded("add", True, lambda: super(ResilientRedisCache, self).add(key, value, timeout, version))

    def delete(self, key: Any, version: Any = None) -> bool:
        return _degraded("delete", False, lambda: super(ResilientRedisCache, self).delete(key, version))

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        return _degraded("incr", delta, lambda: super(ResilientRedisCache, self).incr(key, delta, version))

