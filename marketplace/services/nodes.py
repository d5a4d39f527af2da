"""Provider nodes: registration, join tokens and heartbeats."""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.catalog import GPU_CATALOG
from marketplace.errors import Conflict, Forbidden, InvalidInput, NotFound
from marketplace.models import Job, JobState, Node, NodeGpu, Offer
from marketplace.services.accounts import account_of

log = logging.getLogger(__name__)

JOIN_TOKEN_PREFIX = "node_"
MAX_GPUS_PER_NODE = 64


@dataclass(frozen=True)
class GpuDeclaration:
    """What a provider says is in the machine: ``count`` GPUs of catalog ``model``."""

    model: str
    count: int
    vram_gb: int | None = None  # None: the catalog's value


def hash_join_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def require_provider(user: User) -> None:
    if not account_of(user).is_provider:
        raise Forbidden("only provider accounts can manage nodes and offers", code="provider_only")


NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def _check_name(name: str) -> None:
    if not NODE_NAME.fullmatch(name):
        raise InvalidInput("node names are 1-64 letters, digits, '.', '_' or '-'", code="invalid_name", field="name")


def _check_region(region: str) -> None:
    if not REGION.fullmatch(region):
        raise InvalidInput("regions are 1-32 lower-case letters, digits or '-'", code="invalid_region",
                           field="region")


def _check_machine(cpu_cores: int, ram_gb: int) -> None:
    if not 1 <= cpu_cores <= 4096:
        raise InvalidInput("cpu_cores must be between 1 and 4096", code="invalid_cpu_cores", field="cpu_cores")
    if not 1 <= ram_gb <= 65536:
        raise InvalidInput("ram_gb must be between 1 and 65536", code="invalid_ram", field="ram_gb")


def _checked_gpus(gpus: Sequence[GpuDeclaration]) -> list[GpuDeclaration]:
    if not gpus:
        raise InvalidInput("declare at least one GPU", code="no_gpus", field="gpus")
    seen: set[str] = set()
    checked = []
    for gpu in gpus:
        entry = GPU_CATALOG.get(gpu.model)
        if entry is None:
            raise InvalidInput(f"unknown GPU model {gpu.model!r}; see the catalog", code="unknown_gpu_model",
                               field="gpus")
        if not 1 <= gpu.count <= MAX_GPUS_PER_NODE:
            raise InvalidInput(f"the {gpu.model} count must be between 1 and {MAX_GPUS_PER_NODE}",
                               code="invalid_gpu_count", field="gpus")
        if gpu.model in seen:
            raise InvalidInput(f"{gpu.model} is listed twice; give one count", code="duplicate_gpu_model",
                               field="gpus")
        if gpu.vram_gb is not None and gpu.vram_gb != entry.vram_gb:
            raise InvalidInput(f"{gpu.model} has {entry.vram_gb} GB of VRAM, not {gpu.vram_gb}",
                               code="vram_mismatch", field="gpus")
        seen.add(gpu.model)
        checked.append(GpuDeclaration(model=gpu.model, count=gpu.count, vram_gb=entry.vram_gb))
    if sum(gpu.count for gpu in checked) > MAX_GPUS_PER_NODE:
        raise InvalidInput(f"a node holds at most {MAX_GPUS_PER_NODE} GPUs", code="too_many_gpus", field="gpus")
    return checked


@transaction.atomic
def register_node(
    *, provider: User, name: str, region: str, cpu_cores: int, ram_gb: int, gpus: Sequence[GpuDeclaration]
) -> tuple[Node, str]:
    """Create a node with its GPUs; return it with its join token, which is shown this once only.

    >>> node, token = register_node(provider=alice, name="rig-1", region="eu-west", cpu_cores=32,
    ...                             ram_gb=256, gpus=[GpuDeclaration("NVIDIA RTX 4090", 2)])
    """
    require_provider(provider)
    _check_name(name)
    _check_region(region)
    _check_machine(cpu_cores, ram_gb)
    checked = _checked_gpus(gpus)
    token = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            node = Node.objects.create(provider=provider, name=name, region=region, cpu_cores=cpu_cores,
                                       ram_gb=ram_gb, join_token_hash=hash_join_token(token))
    except IntegrityError:
        raise Conflict(f"you already have a node named {name!r}", code="node_name_taken", field="name") from None
    NodeGpu.objects.bulk_create(
        NodeGpu(node=node, model=gpu.model, vram_gb=gpu.vram_gb or 0, count=gpu.count) for gpu in checked
    )
    return node, token


def node_of(provider: User, node_id: int, *, lock: bool = False) -> Node:
    """The provider's own node, or NotFound (also for other providers' nodes)."""
    queryset = Node.objects.owned_by(provider)
    if lock:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=node_id)
    except (Node.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such node") from None


@transaction.atomic
def update_node(*, provider: User, node_id: int, name: str | None = None, region: str | None = None) -> Node:
    """Rename a node or move its region; its offers follow the region."""
    node = node_of(provider, node_id, lock=True)
    if name is not None and name != node.name:
        _check_name(name)
        if Node.objects.owned_by(provider).filter(name=name).exclude(pk=node.pk).exists():
            raise Conflict(f"you already have a node named {name!r}", code="node_name_taken", field="name")
        node.name = name
    if region is not None and region != node.region:
        _check_region(region)
        node.region = region
        Offer.objects.filter(node=node).update(region=region)
    try:
        with transaction.atomic():
            node.save()
    except IntegrityError:  # a concurrent rename took the name after the check above
        raise Conflict(f"you already have a node named {name!r}", code="node_name_taken", field="name") from None
    return node


def node_for_token(token: str) -> Node:
    """The node a join token belongs to, or NotFound."""
    try:
        return Node.objects.get(join_token_hash=hash_join_token(token))
    except Node.DoesNotExist:
        raise NotFound("unknown node token", code="invalid_node_token") from None


def record_heartbeat(*, node: Node, draining: bool = False, now: datetime | None = None) -> Node:
    """Note that the node is alive (and whether it is draining); one UPDATE, no row lock."""
    now = now or timezone.now()
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=now, draining=draining)
    node.last_heartbeat_at, node.draining = now, draining
    return node


# Jobs the node holds: a draining agent waits until none is left before it leaves the cluster.
ACTIVE_JOB_STATES = (JobState.DISPATCHED, JobState.RUNNING)


@transaction.atomic
def join_node(*, node: Node, detected: Sequence[GpuDeclaration], hostname: str = "",
              now: datetime | None = None) -> Node:
    """The node's agent (re)joined: check its declared GPUs against what the agent detected, and
    count the join as a heartbeat (a join also ends a drain).

    A declared group is verified iff a detected group has the same model and at least the
    declared count; anything else (fewer, another model, no GPUs at all) leaves it unverified.
    Detected models may be any string: NVML can report models the catalog does not list.

    >>> join_node(node=node, detected=[GpuDeclaration("NVIDIA RTX 4090", 2, vram_gb=24)])
    """
    found: dict[str, int] = {}
    for gpu in detected:
        found[gpu.model] = found.get(gpu.model, 0) + gpu.count
    for group in NodeGpu.objects.select_for_update().filter(node=node):
        verified = found.get(group.model, 0) >= group.count
        if group.verified != verified:
            group.verified = verified
            group.save(update_fields=["verified"])
    log.info("node %s joined from %r; detected GPUs: %s", node.pk, hostname, found or "none")
    return record_heartbeat(node=node, draining=False, now=now)


def active_job_count(node: Node) -> int:
    """How many of the node's jobs are dispatched or running."""
    return Job.objects.filter(node=node, state__in=ACTIVE_JOB_STATES).count()
