"""Offers: putting a node's GPUs up for rent, pausing, resuming, withdrawing, repricing."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Sum

from marketplace.errors import Conflict, InvalidInput, NotFound
from marketplace.models import NodeGpu, Offer, OfferStatus
from marketplace.models.fields import UINT256_MAX
from marketplace.services.nodes import node_of, require_provider

MAX_LEASE_SECONDS = 90 * 24 * 3600


def _check_terms(*, price_per_gpu_hour_wei: int, min_duration_s: int, max_duration_s: int) -> None:
    if not 0 < price_per_gpu_hour_wei <= UINT256_MAX:
        raise InvalidInput("price must be a positive integer number of wei", code="invalid_price",
                           field="price_per_gpu_hour_wei")
    if not 60 <= min_duration_s <= max_duration_s <= MAX_LEASE_SECONDS:
        raise InvalidInput(
            f"lease durations must satisfy 60 <= min <= max <= {MAX_LEASE_SECONDS} seconds",
            code="invalid_duration", field="max_duration_s",
        )


def offered_gpus(gpu: NodeGpu, *, excluding: Offer | None = None) -> int:
    """GPUs of this group already covered by offers that are not withdrawn (paused ones count:
    resuming must never overcommit)."""
    offers = Offer.objects.filter(gpu=gpu).exclude(status=OfferStatus.WITHDRAWN)
    if excluding is not None:
        offers = offers.exclude(pk=excluding.pk)
    return offers.aggregate(total=Sum("gpu_count"))["total"] or 0


def _check_capacity(gpu: NodeGpu, gpu_count: int, *, excluding: Offer | None = None) -> None:
    if gpu_count < 1:
        raise InvalidInput("an offer covers at least one GPU", code="invalid_gpu_count", field="gpu_count")
    free = gpu.count - offered_gpus(gpu, excluding=excluding)
    if gpu_count > free:
        raise Conflict(
            f"the node has {gpu.count} x {gpu.model} and {gpu.count - free} are already offered; "
            f"at most {max(free, 0)} more can be offered",
            code="gpus_overcommitted", field="gpu_count",
        )


@transaction.atomic
def create_offer(
    *, provider: User, node_id: int, gpu_model: str, gpu_count: int, price_per_gpu_hour_wei: int,
    min_duration_s: int = 60, max_duration_s: int = 24 * 3600,
) -> Offer:
    """Offer ``gpu_count`` GPUs of the node's ``gpu_model`` group at a price per GPU-hour.

    The node row is locked while the GPUs already offered are counted, so two concurrent
    offers can never together cover more GPUs than the node has.
    """
    require_provider(provider)
    node = node_of(provider, node_id, lock=True)
    gpu = node.gpus.filter(model=gpu_model).first()
    if gpu is None:
        raise InvalidInput(f"node {node.name!r} has no {gpu_model!r} GPUs", code="gpu_not_on_node",
                           field="gpu_model")
    _check_terms(price_per_gpu_hour_wei=price_per_gpu_hour_wei, min_duration_s=min_duration_s,
                 max_duration_s=max_duration_s)
    _check_capacity(gpu, gpu_count)
    return Offer.objects.create(
        provider=provider, node=node, gpu=gpu, gpu_model=gpu.model, vram_gb=gpu.vram_gb, region=node.region,
        gpu_count=gpu_count, price_per_gpu_hour_wei=price_per_gpu_hour_wei,
        min_duration_s=min_duration_s, max_duration_s=max_duration_s,
    )


def offer_of(provider: User, offer_id: int, *, lock: bool = False) -> Offer:
    """The provider's own offer (withdrawn ones included), or NotFound."""
    queryset = Offer.objects.owned_by(provider)
    if lock:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=offer_id)
    except (Offer.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such offer") from None


def _set_status(provider: User, offer_id: int, *, allowed_from: set[str], to: str) -> Offer:
    offer = offer_of(provider, offer_id, lock=True)
    if offer.status == to:
        return offer  # idempotent: pausing a paused offer is not an error
    if offer.status not in allowed_from:
        raise Conflict(f"a {offer.status} offer cannot become {to}", code="invalid_offer_state")
    offer.status = to
    offer.save(update_fields=["status", "updated_at"])
    return offer


@transaction.atomic
def pause_offer(*, provider: User, offer_id: int) -> Offer:
    """Stop matching new jobs to the offer; running leases continue."""
    return _set_status(provider, offer_id, allowed_from={OfferStatus.ACTIVE}, to=OfferStatus.PAUSED)


@transaction.atomic
def resume_offer(*, provider: User, offer_id: int) -> Offer:
    """Match jobs to a paused offer again."""
    return _set_status(provider, offer_id, allowed_from={OfferStatus.PAUSED}, to=OfferStatus.ACTIVE)


@transaction.atomic
def withdraw_offer(*, provider: User, offer_id: int) -> Offer:
    """End the offer for good; its GPUs can be offered again."""
    return _set_status(provider, offer_id, allowed_from={OfferStatus.ACTIVE, OfferStatus.PAUSED},
                       to=OfferStatus.WITHDRAWN)


@transaction.atomic
def update_offer(
    *, provider: User, offer_id: int, price_per_gpu_hour_wei: int | None = None, gpu_count: int | None = None,
    min_duration_s: int | None = None, max_duration_s: int | None = None,
) -> Offer:
    """Change an offer's terms; a new ``gpu_count`` is checked against the node like a new offer."""
    offer = offer_of(provider, offer_id, lock=True)
    if offer.status == OfferStatus.WITHDRAWN:
        raise Conflict("a withdrawn offer cannot be changed", code="invalid_offer_state")
    node_of(provider, offer.node_id, lock=True)  # serialise with create_offer on the same node
    price = offer.price_per_gpu_hour_wei if price_per_gpu_hour_wei is None else price_per_gpu_hour_wei
    low = offer.min_duration_s if min_duration_s is None else min_duration_s
    high = offer.max_duration_s if max_duration_s is None else max_duration_s
    _check_terms(price_per_gpu_hour_wei=int(price), min_duration_s=low, max_duration_s=high)
    if gpu_count is not None:
        if gpu_count < offer.reserved_gpus:
            raise Conflict(f"{offer.reserved_gpus} GPUs of this offer are leased right now",
                           code="gpus_in_use", field="gpu_count")
        _check_capacity(offer.gpu, gpu_count, excluding=offer)
        offer.gpu_count = gpu_count
    offer.price_per_gpu_hour_wei, offer.min_duration_s, offer.max_duration_s = price, low, high
    offer.save()
    return offer
