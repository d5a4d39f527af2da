"""Keyset ("seek") pagination for long lists such as the public offer search.

A page is the ``size`` rows after (or before) a cursor in a stable order ``(column, id)``.
One query of ``size + 1`` rows tells whether a next page exists, so no ``COUNT(*)`` over
100,000 offers and no ``OFFSET`` that grows with the page number; both would make late pages slow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Model, QuerySet

MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Cursor:
    """Where a page starts or ends: the sort value and id of a boundary row."""

    value: int
    id: int

    def __str__(self) -> str:
        return f"{self.value}_{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """``"2000_17"`` -> ``Cursor(2000, 17)``; `ValueError` for anything else.

        >>> Cursor.parse("2000_17")
        Cursor(value=2000, id=17)
        """
        value, sep, ident = text.partition("_")
        if not sep or not value.isdigit() or not ident.isdigit() or len(value) > 78 or int(ident) > MAX_ID:
            raise ValueError(f"bad cursor {text!r}")
        return cls(int(value), int(ident))

    @classmethod
    def of(cls, row: Model, column: str) -> Cursor:
        return cls(int(getattr(row, column)), int(row.pk))


@dataclass(frozen=True)
class KeysetPage:
    """The rows of one page and the cursors of its neighbours (None: there is none)."""

    rows: list[Any]
    next_cursor: Cursor | None
    previous_cursor: Cursor | None
    is_first: bool


def _beyond(queryset: QuerySet[Any], column: str, cursor: Cursor, descending: bool) -> QuerySet[Any]:
    """Rows strictly after ``cursor`` in the walk order.

    The redundant ``>=`` / ``<=`` on the sort column lets PostgreSQL start an index range scan
    at the cursor; the ``exclude`` then drops the ties already shown.
    """
    if descending:
        return queryset.filter(**{f"{column}__lte": cursor.value}).exclude(**{column: cursor.value,
                                                                             "pk__gte": cursor.id})
    return queryset.filter(**{f"{column}__gte": cursor.value}).exclude(**{column: cursor.value,
                                                                         "pk__lte": cursor.id})


def keyset_page(queryset: QuerySet[Any], *, column: str, descending: bool, size: int,
                after: Cursor | None = None, before: Cursor | None = None) -> KeysetPage:
    """One page of ``queryset`` ordered by ``(column, id)``, after ``after`` or before ``before``.

    >>> page = keyset_page(Offer.objects.listed(), column="vram_gb", descending=False, size=20)
    >>> keyset_page(Offer.objects.listed(), column="vram_gb", descending=False, size=20,
    ...             after=page.next_cursor)
    """
    forward = after is not None or before is None  # walk back only when just "before" is given
    cursor = after if forward else before
    # Going back, walk the reverse order from the cursor and flip the rows afterwards.
    walk_descending = descending if forward else not descending
    if cursor is not None:
        queryset = _beyond(queryset, column, cursor, walk_descending)
    order = (f"-{column}", "-pk") if walk_descending else (column, "pk")
    rows = list(queryset.order_by(*order)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    first, last = (Cursor.of(rows[0], column), Cursor.of(rows[-1], column)) if rows else (None, None)
    if forward:
        return KeysetPage(rows, last if more else None, first if cursor is not None else None,
                          is_first=cursor is None)
    return KeysetPage(rows, last, first if more else None, is_first=not more)
