"""``manage.py seed_demo``: demo accounts for local use, idempotent.

Creates a provider whose node offers its GPUs and a developer, then writes their tokens to
``--output`` (mode 600) for scripts and the README's curl examples. Running it again keeps
the accounts and tokens.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from marketplace.models import Node, Offer
from marketplace.services import accounts, nodes, offers

PROVIDER, DEVELOPER = "demo-provider", "demo-developer"
DEMO_NODE = "demo-node"
DEMO_GPU = "NVIDIA RTX 4090"
DEMO_PRICE_WEI = 2 * 10**15  # 0.002 ETH per GPU-hour


class Command(BaseCommand):
    help = "Create demo accounts (a provider with an offered node, a developer) and write their tokens."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--api-url", default="http://127.0.0.1:8000/api/v1")
        parser.add_argument("--output", default=str(Path(settings.RUN_DIR) / "demo.json"))

    def handle(self, *args: Any, api_url: str, output: str, **options: Any) -> None:
        path = Path(output)
        previous = _read(path)
        with transaction.atomic():
            provider, provider_password = _account(PROVIDER, "provider", previous)
            developer, developer_password = _account(DEVELOPER, "developer", previous)
            join_token = _demo_node(provider, previous)
        demo = {
            "api_url": api_url,
            "provider_username": PROVIDER, "provider_password": provider_password,
            "provider_token": accounts.current_token(user=provider),
            "developer_username": DEVELOPER, "developer_password": developer_password,
            "developer_token": accounts.current_token(user=developer),
            "node_join_token": join_token,
        }
        _write_private(path, demo)
        self.stdout.write(f"demo accounts written to {path}")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _account(username: str, role: str, previous: dict[str, Any]) -> tuple[User, str]:
    """The demo user, created with a fresh random password unless it exists already."""
    user = User.objects.filter(username=username).first()
    password = previous.get(f"{role}_password", "")
    if user is None or not password or not user.check_password(password):
        password = secrets.token_urlsafe(12)
        if user is None:
            user, _ = accounts.register_user(username=username, password=password, role=role)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
    return user, password


def _demo_node(provider: User, previous: dict[str, Any]) -> str:
    """The demo node with both its GPUs offered; a new join token only when the node is new."""
    node = Node.objects.filter(provider=provider, name=DEMO_NODE).first()
    token = previous.get("node_join_token", "")
    if node is None or node.join_token_hash != nodes.hash_join_token(token):
        Node.objects.filter(provider=provider, name=DEMO_NODE).delete()
        node, token = nodes.register_node(provider=provider, name=DEMO_NODE, region="local", cpu_cores=os.cpu_count()
                                          or 1, ram_gb=16, gpus=[nodes.GpuDeclaration(DEMO_GPU, 2)])
    if not Offer.objects.filter(node=node).exists():
        offers.create_offer(provider=provider, node_id=node.pk, gpu_model=DEMO_GPU, gpu_count=2,
                            price_per_gpu_hour_wei=DEMO_PRICE_WEI)
    return token


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
