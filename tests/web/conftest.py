"""Fixtures for the page tests: signed-in browsers-without-a-browser (Django test clients)
and rows made through the services, so the pages are tested against the real rules."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from marketplace.models import Node, Offer
from marketplace.services import nodes, offers
from tests.conftest import Person

RTX_4090 = "NVIDIA RTX 4090"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Sign-ups hash passwords; the slow production hasher only makes these tests slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def signed_in(person: Person) -> Client:
    """A test client with a session for ``person``."""
    client = Client()
    client.force_login(person.user)
    return client


@pytest.fixture
def provider_web(provider: Person) -> Client:
    return signed_in(provider)


@pytest.fixture
def developer_web(developer: Person) -> Client:
    return signed_in(developer)


def node_for(person: Person, name: str = "rig-1", region: str = "eu-west", gpus: Any = None,
             online: bool = False) -> Node:
    """A node registered through the service, optionally with a fresh heartbeat."""
    declared = gpus or [nodes.GpuDeclaration(RTX_4090, 2)]
    node, _token = nodes.register_node(provider=person.user, name=name, region=region, cpu_cores=32, ram_gb=256,
                                       gpus=declared)
    if online:
        nodes.record_heartbeat(node=node, now=timezone.now())
    return node


def offer_on(person: Person, node: Node, gpu_count: int = 1, price: int = 10**15,
             gpu_model: str = RTX_4090) -> Offer:
    return offers.create_offer(provider=person.user, node_id=node.pk, gpu_model=gpu_model, gpu_count=gpu_count,
                               price_per_gpu_hour_wei=price)


@pytest.fixture
def rig(provider: Person) -> Node:
    """The provider's node with 2 x RTX 4090, offline (no agent has joined)."""
    return node_for(provider)
