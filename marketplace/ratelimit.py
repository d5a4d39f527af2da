"""Failed sign-in attempts, counted per client address in the shared cache.

Used by token authentication (DRF throttles run after authentication, so a flood of bad
tokens would never reach them), node-token authentication and the web login form. Fixed
one-minute windows: cheap, and good enough to stop guessing at scale.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

WINDOW_S = 60


def _failure_key(request: HttpRequest) -> str:
    ident = BaseThrottle().get_ident(request)  # honours NUM_PROXIES for X-Forwarded-For
    return f"authfail:{ident}:{int(time.time()) // WINDOW_S}"


def seconds_until_allowed(request: HttpRequest) -> int | None:
    """None while the client may still try; else how long until its window ends."""
    if (cache.get(_failure_key(request)) or 0) < settings.AUTH_FAILURES_PER_MINUTE:
        return None
    return WINDOW_S - int(time.time()) % WINDOW_S


def count_failure(request: HttpRequest) -> None:
    """Record one failed attempt by this client."""
    key = _failure_key(request)
    cache.add(key, 0, timeout=WINDOW_S * 2)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=WINDOW_S * 2)
