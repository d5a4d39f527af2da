"""Offers: GPUs of one node put up for rent at a price per GPU-hour."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketplace.models.fields import WeiField
from marketplace.models.providers import Node, NodeGpu, heartbeat_cutoff


class OfferStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    WITHDRAWN = "withdrawn", "Withdrawn"


class OfferQuerySet(models.QuerySet["Offer"]):
    def owned_by(self, user: object) -> OfferQuerySet:
        return self.filter(provider=user)

    def listed(self) -> OfferQuerySet:
        """What the public search shows: active offers, whatever their node's state."""
        return self.filter(status=OfferStatus.ACTIVE)

    def available(self, now: datetime) -> OfferQuerySet:
        """Active offers on online, non-draining nodes with at least one GPU free."""
        return self.listed().filter(
            node__last_heartbeat_at__gte=heartbeat_cutoff(now),
            node__draining=False,
            reserved_gpus__lt=F("gpu_count"),
        )


class Offer(models.Model):
    """``gpu_count`` GPUs of one GPU group of a node, offered at ``price_per_gpu_hour_wei``.

    ``gpu_model``, ``vram_gb``, ``region`` and ``provider`` are copies of the node's values so
    the search over 100,000 offers filters and sorts on one indexed table, without joins.
    """

    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="offers")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="offers")
    gpu = models.ForeignKey(NodeGpu, on_delete=models.CASCADE, related_name="offers")
    gpu_model = models.CharField(max_length=64)
    vram_gb = models.PositiveIntegerField()
    region = models.CharField(max_length=32)
    gpu_count = models.PositiveIntegerField()
    # GPUs held by running leases (dispatch issue); free = gpu_count - reserved_gpus.
    reserved_gpus = models.PositiveIntegerField(default=0)
    price_per_gpu_hour_wei = WeiField()
    min_duration_s = models.PositiveIntegerField(default=60)
    max_duration_s = models.PositiveIntegerField(default=24 * 3600)
    status = models.CharField(max_length=16, choices=OfferStatus.choices, default=OfferStatus.ACTIVE)
    # Measured by the latest benchmark job on this offer's node (0 until one ran): whole CPU GFLOPS
    # plus 1000 per GPU TFLOPS. An integer so keyset pages over it stay exact.
    score = models.PositiveBigIntegerField(default=0)
    benchmarked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OfferQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(gpu_count__gte=1), name="offer_gpu_count_positive"),
            models.CheckConstraint(condition=Q(reserved_gpus__lte=F("gpu_count")), name="offer_reserved_le_count"),
            models.CheckConstraint(
                condition=Q(min_duration_s__lte=F("max_duration_s")), name="offer_min_le_max_duration"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "price_per_gpu_hour_wei", "id"], name="offer_price_idx"),
            models.Index(fields=["status", "gpu_model", "price_per_gpu_hour_wei", "id"], name="offer_model_price_idx"),
            models.Index(fields=["status", "vram_gb", "id"], name="offer_vram_idx"),
            models.Index(fields=["status", "region", "price_per_gpu_hour_wei"], name="offer_region_price_idx"),
            models.Index(fields=["status", "score", "id"], name="offer_score_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_count} x {self.gpu_model} @ {self.price_per_gpu_hour_wei} wei/GPU-h"

    @property
    def free_gpus(self) -> int:
        return self.gpu_count - self.reserved_gpus
