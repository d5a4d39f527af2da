"""Authentication of provider nodes by their join token (``Authorization: Node <token>``)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from marketplace.api.authentication import check_failure_budget
from marketplace.ratelimit import count_failure
from marketplace.errors import NotFound
from marketplace.services.nodes import node_for_token

KEYWORD = b"node"


class NodeTokenAuthentication(BaseAuthentication):
    """Authenticates the node itself: ``request.user`` is its provider, ``request.auth`` the Node."""

    def authenticate(self, request: Any) -> Any:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD:
            return None
        check_failure_budget(request)
        if len(parts) != 2:
            count_failure(request)
            raise exceptions.AuthenticationFailed("expected 'Authorization: Node <join token>'")
        try:
            node = node_for_token(parts[1].decode("ascii", "replace"))
        except NotFound:
            count_failure(request)
            raise exceptions.AuthenticationFailed("unknown node token") from None
        return node.provider, node

    def authenticate_header(self, request: Any) -> str:
        return "Node"


class NodeTokenScheme(OpenApiAuthenticationExtension):
    """Documents the node token in the OpenAPI schema."""

    target_class = "marketplace.api.node_auth.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Node <join token>`, as shown once when the node was registered"}
