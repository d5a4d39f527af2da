"""Request-level guards that must run before Django or DRF reads a body."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

ARTIFACT_UPLOAD_PATH = "/api/v1/artifacts/"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file


class BodySizeLimitMiddleware:
    """Refuse bodies over the configured limits with 413 from ``Content-Length`` alone.

    DRF's JSON parser reads the raw stream, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not
    protect API views; checking the declared length here does, before a byte is read.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        # RFC 9110: 1*DIGIT. int() alone would also take "-1", " 5" and non-ASCII digits.
        if not (raw.isascii() and raw.isdigit()):
            return _error(request, 400, "invalid_content_length", "Content-Length is not a number")
        length = int(raw)
        limit = self.limit_for(request.path)
        if length > limit:
            return _error(request, 413, "payload_too_large", f"request bodies here are limited to {limit} bytes")
        return self.get_response(request)

    @staticmethod
    def limit_for(path: str) -> int:
        if path == ARTIFACT_UPLOAD_PATH:
            return settings.ARTIFACT_MAX_BYTES + MULTIPART_OVERHEAD
        return settings.API_MAX_BODY_BYTES


def _error(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "detail": detail}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")
