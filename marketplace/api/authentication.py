"""Token authentication that also limits failed attempts per client address.

DRF throttles run after authentication, so a flood of bad tokens would never reach them:
each failure here is counted in the cache, and past AUTH_FAILURES_PER_MINUTE the client
gets 429 before its token is even looked up.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

WINDOW_S = 60


def _failure_key(request: Request) -> str:
    ident = BaseThrottle().get_ident(request)
    return f"authfail:{ident}:{int(time.time()) // WINDOW_S}"


def check_failure_budget(request: Request) -> None:
    """Raise Throttled if this client already failed authentication too often this minute."""
    if (cache.get(_failure_key(request)) or 0) >= settings.AUTH_FAILURES_PER_MINUTE:
        raise exceptions.Throttled(wait=WINDOW_S - int(time.time()) % WINDOW_S)


def count_failure(request: Request) -> None:
    key = _failure_key(request)
    cache.add(key, 0, timeout=WINDOW_S * 2)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=WINDOW_S * 2)


class ThrottledTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, with failed attempts rate-limited per client."""

    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        if not request.META.get("HTTP_AUTHORIZATION", "").startswith(self.keyword):
            return None
        check_failure_budget(request)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            count_failure(request)
            raise
