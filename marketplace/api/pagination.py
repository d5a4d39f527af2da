"""Pagination with a hard upper bound on page size, for every list."""
from __future__ import annotations

from rest_framework.pagination import CursorPagination, LimitOffsetPagination

MAX_PAGE_SIZE = 100


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=``; ``limit`` is capped at 100 whatever the client asks."""

    default_limit = 20
    max_limit = MAX_PAGE_SIZE


class OfferCursorPagination(CursorPagination):
    """Cursor pages for the offer search: no COUNT over 100,000 rows, stable under inserts.

    The ordering comes from `filters.OfferOrdering` (price or VRAM, then id).
    """

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE
    ordering = ("price_per_gpu_hour_wei", "id")
