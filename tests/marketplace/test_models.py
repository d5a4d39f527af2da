"""One-row rules and reads on the models: the job state machine, node liveness, offer availability."""
from __future__ import annotations

from datetime import timedelta
from itertools import product

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.errors import InvalidTransition
from marketplace.models import TERMINAL_STATES, Job, JobEvent, JobState, Node, NodeStatus, Offer, OfferStatus
from marketplace.models.fields import UINT256_MAX
from marketplace.services.jobs import transition_job
from marketplace.services.nodes import GpuDeclaration, record_heartbeat, register_node
from marketplace.services.offers import create_offer

STATES = [state.value for state in JobState]
# Written out here, not read from TRANSITIONS, so a change to the graph has to change this test too.
ALLOWED = {
    ("pending", "queued"), ("pending", "failed"), ("pending", "cancelled"),
    ("queued", "dispatched"), ("queued", "failed"), ("queued", "cancelled"),
    ("dispatched", "running"), ("dispatched", "queued"), ("dispatched", "failed"), ("dispatched", "cancelled"),
    ("running", "succeeded"), ("running", "failed"), ("running", "cancelled"), ("running", "queued"),
}
REFUSED = sorted(set(product(STATES, STATES)) - ALLOWED)


def a_job(owner, state: str = JobState.PENDING) -> Job:
    return Job.objects.create(owner=owner, kind="benchmark", spec={"measurements": []}, budget_wei=10**16,
                              state=state)


# --- the job state machine ---------------------------------------------------------------------

@pytest.mark.parametrize(("from_state", "to_state"), sorted(ALLOWED))
def test_it_moves_a_job_along_every_allowed_edge_and_records_one_event(developer, from_state, to_state):
    job = a_job(developer.user, from_state)

    moved = transition_job(job_id=job.pk, to_state=to_state, reason="because")

    job.refresh_from_db()
    assert moved.state == job.state == to_state
    events = list(JobEvent.objects.filter(job=job))
    assert [(e.type, e.from_state, e.to_state, e.reason) for e in events] == [
        ("state", from_state, to_state, "because")]
    assert (job.finished_at is not None) == (to_state in {"succeeded", "failed", "cancelled"})


@pytest.mark.parametrize(("from_state", "to_state"), REFUSED)
def test_it_refuses_every_edge_the_graph_does_not_have(developer, from_state, to_state):
    job = a_job(developer.user, from_state)

    with pytest.raises(InvalidTransition) as raised:
        transition_job(job_id=job.pk, to_state=to_state)

    assert raised.value.code == "invalid_transition"
    assert raised.value.status == 409
    job.refresh_from_db()
    assert job.state == from_state
    assert job.finished_at is None
    assert not JobEvent.objects.filter(job=job).exists()


def test_it_has_exactly_three_terminal_states_and_nothing_leaves_them(developer):
    assert TERMINAL_STATES == {"succeeded", "failed", "cancelled"}
    for state in STATES:
        job = a_job(developer.user, state)
        assert job.is_terminal == (state in TERMINAL_STATES)
        assert all(not job.can_transition_to(target) for target in STATES) == job.is_terminal


def test_it_refuses_an_unknown_target_state(developer):
    job = a_job(developer.user, JobState.QUEUED)

    with pytest.raises(InvalidTransition):
        transition_job(job_id=job.pk, to_state="exploded")

    job.refresh_from_db()
    assert job.state == "queued"


def test_it_records_a_long_life_event_by_event_in_order(developer):
    job = a_job(developer.user)
    path = ["queued", "dispatched", "running", "queued", "dispatched", "running", "succeeded"]

    for state in path:
        transition_job(job_id=job.pk, to_state=state, reason=f"to {state}")

    events = list(JobEvent.objects.filter(job=job).order_by("id"))
    assert [(e.from_state, e.to_state) for e in events] == list(zip(["pending", *path], path))
    assert [e.reason for e in events] == [f"to {state}" for state in path]
    job.refresh_from_db()
    assert job.state == "succeeded" and job.finished_at is not None


def test_it_refuses_a_job_without_gpus_or_with_progress_outside_zero_to_one(developer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(owner=developer.user, kind="benchmark", budget_wei=1, gpus=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(owner=developer.user, kind="benchmark", budget_wei=1, progress=1.5)


# --- node liveness -----------------------------------------------------------------------------

@pytest.fixture
def rig(provider) -> Node:
    node, _ = register_node(provider=provider.user, name="rig-1", region="eu-west", cpu_cores=8, ram_gb=64,
                            gpus=[GpuDeclaration("NVIDIA RTX 4090", 4)])
    return node


@pytest.mark.parametrize(("age_s", "draining", "expected"), [
    (None, False, NodeStatus.OFFLINE),
    (None, True, NodeStatus.OFFLINE),
    (0, False, NodeStatus.ONLINE),
    (29, False, NodeStatus.ONLINE),
    (30, False, NodeStatus.ONLINE),  # exactly the timeout: still online
    (30.001, False, NodeStatus.OFFLINE),
    (3600, False, NodeStatus.OFFLINE),
    (0, True, NodeStatus.DRAINING),
    (30, True, NodeStatus.DRAINING),
    (31, True, NodeStatus.OFFLINE),  # a silent node is offline, draining or not
])
def test_a_node_is_online_offline_or_draining_from_its_last_heartbeat(settings, rig, age_s, draining, expected):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 30
    now = timezone.now()
    rig.last_heartbeat_at = None if age_s is None else now - timedelta(seconds=age_s)
    rig.draining = draining
    rig.save()

    assert rig.status(now) == expected
    assert Node.objects.online(now).filter(pk=rig.pk).exists() == (expected == NodeStatus.ONLINE)


def test_the_heartbeat_timeout_comes_from_settings(settings, rig):
    now = timezone.now()
    record_heartbeat(node=rig, now=now - timedelta(seconds=100))
    rig.refresh_from_db()

    settings.NODE_HEARTBEAT_TIMEOUT_S = 30
    assert rig.status(now) == NodeStatus.OFFLINE
    settings.NODE_HEARTBEAT_TIMEOUT_S = 300
    assert rig.status(now) == NodeStatus.ONLINE


def test_a_heartbeat_records_time_and_drain_flag(rig):
    now = timezone.now()
    record_heartbeat(node=rig, draining=True, now=now)
    rig.refresh_from_db()
    assert rig.last_heartbeat_at == now and rig.draining is True
    assert rig.status(now) == NodeStatus.DRAINING

    record_heartbeat(node=rig, now=now)
    rig.refresh_from_db()
    assert rig.draining is False and rig.status(now) == NodeStatus.ONLINE


def test_a_node_counts_its_gpus_across_groups(provider):
    node, _ = register_node(provider=provider.user, name="mixed", region="us-east", cpu_cores=8, ram_gb=64,
                            gpus=[GpuDeclaration("NVIDIA RTX 4090", 3), GpuDeclaration("NVIDIA L4", 2)])
    assert node.total_gpus() == 5


# --- Offer.objects.available -------------------------------------------------------------------

@pytest.fixture
def rig_offer(provider, rig) -> Offer:
    return create_offer(provider=provider.user, node_id=rig.pk, gpu_model="NVIDIA RTX 4090", gpu_count=2,
                        price_per_gpu_hour_wei=10**15)


def available_ids(now) -> set[int]:
    return set(Offer.objects.available(now).values_list("pk", flat=True))


def test_an_active_offer_on_a_live_node_with_free_gpus_is_available(settings, rig, rig_offer):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 30
    now = timezone.now()
    record_heartbeat(node=rig, now=now - timedelta(seconds=30))
    assert available_ids(now) == {rig_offer.pk}


def test_an_offer_of_a_node_that_never_heartbeat_is_not_available(rig_offer):
    assert available_ids(timezone.now()) == set()
    assert set(Offer.objects.listed().values_list("pk", flat=True)) == {rig_offer.pk}


def test_an_offer_of_a_silent_node_is_not_available(settings, rig, rig_offer):
    settings.NODE_HEARTBEAT_TIMEOUT_S = 30
    now = timezone.now()
    record_heartbeat(node=rig, now=now - timedelta(seconds=31))
    assert available_ids(now) == set()


def test_an_offer_of_a_draining_node_is_not_available(rig, rig_offer):
    now = timezone.now()
    record_heartbeat(node=rig, draining=True, now=now)
    assert available_ids(now) == set()


@pytest.mark.parametrize("status", [OfferStatus.PAUSED, OfferStatus.WITHDRAWN])
def test_a_paused_or_withdrawn_offer_is_neither_listed_nor_available(rig, rig_offer, status):
    now = timezone.now()
    record_heartbeat(node=rig, now=now)
    Offer.objects.filter(pk=rig_offer.pk).update(status=status)
    assert available_ids(now) == set()
    assert not Offer.objects.listed().exists()


def test_an_offer_is_available_while_some_gpus_are_free_and_not_when_all_are_leased(rig, rig_offer):
    now = timezone.now()
    record_heartbeat(node=rig, now=now)
    Offer.objects.filter(pk=rig_offer.pk).update(reserved_gpus=1)
    assert available_ids(now) == {rig_offer.pk}
    assert Offer.objects.get(pk=rig_offer.pk).free_gpus == 1
    Offer.objects.filter(pk=rig_offer.pk).update(reserved_gpus=2)
    assert available_ids(now) == set()


def test_an_offer_can_never_reserve_more_gpus_than_it_covers(rig_offer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Offer.objects.filter(pk=rig_offer.pk).update(reserved_gpus=3)


def test_a_price_of_the_largest_uint256_is_stored_to_the_last_digit(provider, rig):
    offer = create_offer(provider=provider.user, node_id=rig.pk, gpu_model="NVIDIA RTX 4090", gpu_count=1,
                         price_per_gpu_hour_wei=UINT256_MAX)
    assert int(Offer.objects.get(pk=offer.pk).price_per_gpu_hour_wei) == UINT256_MAX


# --- services refuse bad values even when no serializer checked them ------------------------------

@pytest.mark.parametrize("change, code", [
    ({"name": "bad name!"}, "invalid_name"),
    ({"region": "EU West"}, "invalid_region"),
    ({"cpu_cores": 0}, "invalid_cpu_cores"),
    ({"ram_gb": -1}, "invalid_ram"),
    ({"gpus": [GpuDeclaration("NVIDIA RTX 4090", 0)]}, "invalid_gpu_count"),
])
def test_register_node_refuses_bad_values_itself(provider, change, code):
    from marketplace.errors import InvalidInput


    values = {"name": "rig", "region": "eu-west", "cpu_cores": 8, "ram_gb": 32,
              "gpus": [GpuDeclaration("NVIDIA RTX 4090", 1)], **change}
    with pytest.raises(InvalidInput) as raised:
        register_node(provider=provider.user, **values)
    assert raised.value.code == code
    assert not Node.objects.exists()


def test_a_superuser_without_an_account_can_set_a_payout_address(db):
    from django.contrib.auth.models import User

    from marketplace.services.accounts import set_payout_address

    admin = User.objects.create_superuser("root", password="x" * 12)
    account = set_payout_address(user=admin, address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    assert account.payout_address == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
