"""Offer search filters and ordering (django-filter)."""
from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import F, QuerySet
from django.utils import timezone
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.filters import OrderingFilter

from marketplace.catalog import GPU_MODEL_CHOICES
from marketplace.models import Job, JobState, Offer, OfferStatus

MAX_WEI = 2**256 - 1

# Public ordering names -> columns; every ordering ends in "id" so pages are stable.
OFFER_ORDERINGS: dict[str, tuple[str, ...]] = {
    "price": ("price_per_gpu_hour_wei", "id"),
    "-price": ("-price_per_gpu_hour_wei", "-id"),
    "vram": ("vram_gb", "id"),
    "-vram": ("-vram_gb", "-id"),
    # Best benchmark first; never-benchmarked offers (score 0) come last. An integer column, so
    # the keyset pages of `pagination.OfferCursorPagination` stay exact across ties.
    "-score": ("-score", "-id"),
}


class IntegerFilter(django_filters.NumberFilter):
    """A whole-number filter: ``NumberFilter`` takes decimals, and ``min_gpus=1.5`` was read as 1."""

    field_class = forms.IntegerField


class OfferFilter(django_filters.FilterSet):
    gpu_model = django_filters.ChoiceFilter(choices=GPU_MODEL_CHOICES)
    min_vram_gb = IntegerFilter(field_name="vram_gb", lookup_expr="gte", min_value=0, max_value=4096)
    min_gpus = IntegerFilter(method="filter_min_gpus", min_value=1, max_value=64)
    max_price_wei = django_filters.NumberFilter(field_name="price_per_gpu_hour_wei", lookup_expr="lte",
                                                min_value=0, max_value=MAX_WEI, max_digits=78, decimal_places=0)
    region = django_filters.CharFilter(max_length=32)
    available = django_filters.BooleanFilter(method="filter_available")

    class Meta:
        model = Offer
        fields: list[str] = []

    def filter_min_gpus(self, queryset: QuerySet[Offer], name: str, value: Any) -> QuerySet[Offer]:
        return queryset.filter(gpu_count__gte=F("reserved_gpus") + value)

    def filter_available(self, queryset: QuerySet[Offer], name: str, value: bool | None) -> QuerySet[Offer]:
        if value is None:
            return queryset
        available = Offer.objects.available(timezone.now())
        return queryset.filter(pk__in=available.values("pk")) if value else queryset.exclude(
            pk__in=available.values("pk"))


class MyOfferFilter(OfferFilter):
    status = django_filters.ChoiceFilter(choices=OfferStatus.choices)


class OfferOrdering(OrderingFilter):
    """``?ordering=price|-price|vram|-vram|-score``; cheapest first when absent, 400 when unknown."""

    ordering_param = "ordering"

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        value = request.query_params.get(self.ordering_param, "") or "price"
        if value not in OFFER_ORDERINGS:
            raise ValidationError({self.ordering_param: [ErrorDetail(
                f"unknown ordering {value!r}; use one of {', '.join(OFFER_ORDERINGS)}", code="invalid_ordering")]})
        return OFFER_ORDERINGS[value]

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [{
            "name": self.ordering_param, "required": False, "in": "query",
            "description": "Sort order: " + ", ".join(OFFER_ORDERINGS),
            "schema": {"type": "string", "enum": list(OFFER_ORDERINGS)},
        }]


class JobFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=JobState.choices)
    kind = django_filters.CharFilter(max_length=32)

    class Meta:
        model = Job
        fields: list[str] = []
