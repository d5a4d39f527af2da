"""Shared fixtures: named accounts (two providers, two developers), API clients, a node with GPUs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PASSWORD = "a long enough passphrase 7"


@dataclass
class Person:
    """A signed-up account with its API token and a client that sends it."""

    user: Any
    token: str
    client: APIClient


@pytest.fixture(autouse=True)
def _fresh_cache_and_storage(settings: Any, tmp_path: Path) -> None:
    """Throttle counters and artifacts never leak between tests."""
    cache.clear()
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    # Only the dispatch tests (which run a real broker and workers) queue work on commit.
    settings.DISPATCH_QUEUE_ENABLED = False


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def sign_up(username: str, role: str) -> Person:
    from marketplace.services.accounts import register_user

    user, token = register_user(username=username, password=PASSWORD, role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return Person(user=user, token=token, client=client)


@pytest.fixture
def provider(db: None) -> Person:
    return sign_up("alice", "provider")


@pytest.fixture
def other_provider(db: None) -> Person:
    return sign_up("oscar", "provider")


@pytest.fixture
def developer(db: None) -> Person:
    return sign_up("dave", "developer")


@pytest.fixture
def other_developer(db: None) -> Person:
    return sign_up("erin", "developer")


def make_node(person: Person, name: str = "rig-1", gpus: list[dict[str, Any]] | None = None,
              region: str = "eu-west") -> dict[str, Any]:
    """Register a node over the API and return the response body (with its join token)."""
    body = {"name": name, "region": region, "cpu_cores": 32, "ram_gb": 256,
            "gpus": gpus or [{"model": "NVIDIA RTX 4090", "count": 2}]}
    response = person.client.post("/api/v1/nodes/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def make_offer(person: Person, node_id: int, gpu_model: str = "NVIDIA RTX 4090", gpu_count: int = 1,
               price: int = 10**15) -> dict[str, Any]:
    body = {"node": node_id, "gpu_model": gpu_model, "gpu_count": gpu_count, "price_per_gpu_hour_wei": price}
    response = person.client.post("/api/v1/offers/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.fixture
def node(provider: Person) -> dict[str, Any]:
    return make_node(provider)


def requires_postgres() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                              reason="needs PostgreSQL (make test provides one)")


def heartbeat(node: dict[str, Any], draining: bool | None = None, **extra: Any) -> Any:
    """Send one heartbeat as the node's agent does (``Authorization: Node <join token>``)."""
    body = {} if draining is None else {"draining": draining}
    return APIClient().post("/api/v1/nodes/heartbeat/", body, format="json",
                            HTTP_AUTHORIZATION=f"Node {node['join_token']}", **extra)


def submit_job(person: Person, kind: str = "benchmark", **body: Any) -> dict[str, Any]:
    """Submit a job over the API and return the response body."""
    response = person.client.post("/api/v1/jobs/", {"kind": kind, **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def upload(person: Person, content: bytes, name: str = "input.bin",
           content_type: str = "application/octet-stream") -> Any:
    """Upload bytes as an artifact (multipart field ``file``); returns the response."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return person.client.post("/api/v1/artifacts/", {"file": SimpleUploadedFile(name, content, content_type)},
                              format="multipart")


@dataclass
class RedisServer:
    """A throwaway real redis-server on a free loopback port."""

    port: int
    process: Any

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    import socket
    import subprocess
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    server = RedisServer(port, process)
    yield server
    if process.poll() is None:
        server.kill()
