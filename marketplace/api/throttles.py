"""Scoped throttles: auth endpoints per client address, job creation per user."""
from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle


class AuthRateThrottle(SimpleRateThrottle):
    """Sign-up and token requests per client address (they are anonymous by nature)."""

    scope = "auth"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class JobCreateThrottle(SimpleRateThrottle):
    """Job submissions per user; reads of jobs are not limited by it."""

    scope = "job_create"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "POST" or getattr(view, "action", None) != "create":
            return None
        ident = request.user.pk if request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class NodeHeartbeatThrottle(SimpleRateThrottle):
    """Heartbeats per node (not per provider: one provider may run many nodes)."""

    scope = "heartbeat"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        node = getattr(request, "auth", None)
        return None if node is None else self.cache_format % {"scope": self.scope, "ident": node.pk}
