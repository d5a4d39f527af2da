"""Every API error becomes ``{"code": ..., "detail": ...}`` with the right status.

Validation errors also carry ``errors``: the per-field messages, for forms to show.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.errors import DomainError

_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def _first_error(detail: Any) -> tuple[str, str]:
    """The code and a 'field: message' text of the first error in a nested DRF error structure."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            code, message = _first_error(value)
            prefix = "" if key == "non_field_errors" else f"{key}: "
            return code, prefix + message
    if isinstance(detail, list) and detail:
        return _first_error(detail[0])
    return getattr(detail, "code", None) or "invalid", str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: domain errors, DRF errors and Django's 404/403, all one shape."""
    if isinstance(exc, DomainError):
        body = {"code": exc.code, "detail": exc.detail}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, message = _first_error(exc.detail)
        response.data = {"code": code, "detail": message, "errors": exc.detail}
    else:
        code = _CODES.get(type(exc)) or getattr(exc, "default_code", "error")
        response.data = {"code": code, "detail": str(exc.detail)}
    return response

