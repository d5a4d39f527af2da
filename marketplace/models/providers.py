"""Provider nodes (GPU machines) and the GPUs declared on them."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q, QuerySet

from marketplace.catalog import GPU_MODEL_CHOICES


class NodeStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    DRAINING = "draining", "Draining"


def heartbeat_cutoff(now: datetime) -> datetime:
    """Heartbeats older than this mean the node is offline."""
    return now - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_S)


class NodeQuerySet(models.QuerySet["Node"]):
    def owned_by(self, user: object) -> NodeQuerySet:
        return self.filter(provider=user)

    def online(self, now: datetime) -> NodeQuerySet:
        """Nodes that heartbeat recently and accept work (draining ones do not)."""
        return self.filter(last_heartbeat_at__gte=heartbeat_cutoff(now), draining=False)


class Node(models.Model):
    """A provider's machine. It authenticates with a join token of which we keep only the hash."""

    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=64)
    region = models.CharField(max_length=32)
    cpu_cores = models.PositiveIntegerField()
    ram_gb = models.PositiveIntegerField()
    join_token_hash = models.CharField(max_length=64, unique=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    draining = models.BooleanField(default=False)
    # Track record, for breaking price ties when matching (kept as counters: no join at match time).
    runs_succeeded = models.PositiveIntegerField(default=0)
    runs_failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="node_name_unique_per_provider")]
        indexes = [models.Index(fields=["last_heartbeat_at"], name="node_heartbeat_idx")]

    def __str__(self) -> str:
        return self.name

    def status(self, now: datetime) -> str:
        """online / offline / draining, from the last heartbeat and the drain flag."""
        if self.last_heartbeat_at is None or self.last_heartbeat_at < heartbeat_cutoff(now):
            return NodeStatus.OFFLINE
        return NodeStatus.DRAINING if self.draining else NodeStatus.ONLINE

    def total_gpus(self) -> int:
        return sum(gpu.count for gpu in self.gpus.all())


class NodeGpu(models.Model):
    """A group of identical GPUs on a node ("2 x NVIDIA RTX 4090, 24 GB")."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    model = models.CharField(max_length=64, choices=GPU_MODEL_CHOICES)
    vram_gb = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    # True once the agent's NVML detection confirmed the declared GPUs.
    verified = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "model"], name="one_gpu_group_per_model"),
            models.CheckConstraint(condition=Q(count__gte=1), name="gpu_count_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.count} x {self.model}"


def nodes_with_gpus(queryset: QuerySet[Node]) -> QuerySet[Node]:
    """The queryset with GPUs prefetched, for lists that show them."""
    return queryset.prefetch_related("gpus")
