"""Token authentication that also limits failed attempts per client address.

DRF throttles run after authentication, so a flood of bad tokens would never reach them:
each failure is counted (`marketplace.ratelimit`), and past AUTH_FAILURES_PER_MINUTE the
client gets 429 before its token is even looked up.
"""
from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from marketplace.ratelimit import count_failure, seconds_until_allowed


def check_failure_budget(request: Request) -> None:
    """Raise Throttled if this client already failed authentication too often this minute."""
    wait = seconds_until_allowed(request)
    if wait is not None:
        raise exceptions.Throttled(wait=wait)


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
