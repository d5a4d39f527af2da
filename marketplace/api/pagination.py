"""Pagination with a hard upper bound on page size, for every list."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination, LimitOffsetPagination, _reverse_ordering
from rest_framework.request import Request

from marketplace.models.fields import UINT256_MAX

MAX_PAGE_SIZE = 100
MAX_ID = 2**63 - 1


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=``; ``limit`` is capped at 100 whatever the client asks."""

    default_limit = 20
    max_limit = MAX_PAGE_SIZE


class OfferCursorPagination(CursorPagination):
    """Keyset pages for the offer search: no COUNT over 100,000 rows, stable under inserts.

    The ordering comes from `filters.OfferOrdering`: a sort column then ``id``, both in the same
    direction. DRF's own cursor marks a position by the sort column alone and steps over rows
    that tie on it with an OFFSET that it caps at 1000, so a run of more than 1000 offers at one
    price (or one VRAM size: the catalog has a dozen) sent the pages round in circles. Here a
    position is ``<value>_<id>``, which is unique: a page is the rows strictly beyond it, the
    offset is always 0, and DRF's link-building (which only needs unique positions) is reused.
    """

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE
    ordering = ("price_per_gpu_hour_wei", "id")

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.cursor = self.decode_cursor(request)
        reverse = self.cursor is not None and self.cursor.reverse
        position = None if self.cursor is None else self.cursor.position
        walk = _reverse_ordering(self.ordering) if reverse else self.ordering
        queryset = queryset.order_by(*walk)
        if position is not None:
            queryset = _beyond(queryset, walk[0], position)
        rows = list(queryset[: self.page_size + 1])
        self.page = rows[: self.page_size]
        following = self._get_position_from_instance(rows[-1], self.ordering) if len(rows) > len(self.page) else None
        if reverse:  # walked backwards: put the rows in reading order; "following" lies before the page
            self.page.reverse()
            self.has_next, self.next_position = position is not None, position
            self.has_previous, self.previous_position = following is not None, following
        else:
            self.has_next, self.next_position = following is not None, following
            self.has_previous, self.previous_position = position is not None, position
        return self.page

    def decode_cursor(self, request: Request) -> Cursor | None:
        """DRF's cursor, with its position checked to be ``<value>_<id>`` and its offset ignored."""
        cursor = super().decode_cursor(request)
        if cursor is None:
            return None
        if cursor.position is not None:
            value, sep, ident = cursor.position.partition("_")
            if not (sep and value.isascii() and value.isdigit() and ident.isascii() and ident.isdigit()
                    and int(value) <= UINT256_MAX and int(ident) <= MAX_ID):
                raise NotFound(self.invalid_cursor_message)
        return Cursor(offset=0, reverse=cursor.reverse, position=cursor.position)

    def _get_position_from_instance(self, instance: Any, ordering: Sequence[str]) -> str:
        return f"{int(getattr(instance, ordering[0].lstrip('-')))}_{int(instance.pk)}"


def _beyond(queryset: QuerySet[Any], term: str, position: str) -> QuerySet[Any]:
    """Rows strictly after ``position`` when walking ``(column, id)`` in the direction of ``term``.

    The redundant ``>=`` (``<=``) on the column lets PostgreSQL start an index range scan at the
    position; the ``exclude`` drops the rows of equal value already shown.
    """
    value, _, ident = position.partition("_")
    column = term.lstrip("-")
    if term.startswith("-"):
        return queryset.filter(**{f"{column}__lte": int(value)}).exclude(**{column: int(value),
                                                                           "pk__gte": int(ident)})
    return queryset.filter(**{f"{column}__gte": int(value)}).exclude(**{column: int(value), "pk__lte": int(ident)})
