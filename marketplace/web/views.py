"""Server-rendered pages for providers and developers. Views call services; forms check shape."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "detail": "no such endpoint"}, status=404)
    return render(request, "web/error.html", {"title": "Not found", "message": "There is no page here."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "server_error", "detail": "internal error; it has been logged"}, status=500)
    return HttpResponse("Something went wrong on our side; it has been logged.", status=500,
                        content_type="text/plain; charset=utf-8")
