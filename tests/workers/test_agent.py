"""The provider agent as a real process, against the real API (pytest-django's live server, in this
process, so the ``settings`` fixture reaches it) and a real Ray head started through `workers.cluster`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.workers.ray_helpers import environ_of, free_port, is_dead, processes_mentioning, wait_until
from workers import cluster

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def ray_head() -> Iterator[cluster.RayNode]:
    temp_dir = cluster.make_temp_dir()
    head = cluster.start_head(port=free_port(), temp_dir=temp_dir)
    try:
        yield head
    finally:
        head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class AgentProcess:
    """``python -m workers.agent join ...`` in a process group of its own, its output in a file."""

    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop_with(self, sig: int, timeout_s: float = 30) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout_s)


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Any]:
    """Starts agents; at the end kills each one's process group and the Ray node it started."""
    started: list[AgentProcess] = []

    def start(api: str, token: str, *extra: str) -> AgentProcess:
        log = tmp_path / f"agent-{len(started)}.log"
        env = {**os.environ, "MARKET_NODE_TOKEN": token}
        with log.open("wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "workers.agent", "join", "--api", api, *extra], cwd=ROOT,
                                     env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(AgentProcess(popen, log))
        return started[-1]

    try:
        yield start
    finally:
        for agent in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.popen.pid, signal.SIGKILL)
            agent.popen.wait()


@pytest.fixture
def provider_node(settings: Any, ray_head: cluster.RayNode) -> Iterator[tuple[Any, str]]:
    """A provider's node declaring 2 RTX 4090, registered through the services; (node, join token)."""
    from marketplace.services import accounts, nodes

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.RAY_ADDRESS = ray_head.address
    settings.NODE_HEARTBEAT_INTERVAL_S = 1
    settings.NODE_HEARTBEAT_TIMEOUT_S = HEARTBEAT_TIMEOUT_S
    provider, _ = accounts.register_user(username="agent-prov", password="a long passphrase 7", role="provider")
    node, token = nodes.register_node(provider=provider, name="agent-rig", region="local", cpu_cores=1, ram_gb=1,
                                      gpus=[nodes.GpuDeclaration("NVIDIA RTX 4090", 2)])
    try:
        yield node, token
    finally:
        _kill_ray_node_of(node.pk)  # in case an agent died without stopping it


def _kill_ray_node_of(node_id: int) -> None:
    for pid in processes_mentioning(f'"node:{node_id}"'):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def status_of(node: Any) -> str:
    node.refresh_from_db()
    return str(node.status(timezone.now()))


def agent_args(head: cluster.RayNode) -> list[str]:
    return ["--ray-address", head.address, "--num-cpus", "1", "--temp-dir", str(head.temp_dir),
            "--drain-timeout", "20"]


def join_and_wait_online(start_agent: Any, live_server: Any, head: cluster.RayNode, node: Any,
                         token: str) -> AgentProcess:
    agent = start_agent(live_server.url, token, *agent_args(head))
    try:
        wait_until(lambda: "node is up" in agent.output(), 40, "the agent to start its Ray node")
        cluster.wait_for_nodes(head.address, 1, timeout_s=10, resource=f"node:{node.pk}")
        # The join counts as a heartbeat, but the Ray node takes longer to start than the short
        # timeout here: wait for the heartbeats that follow it.
        wait_until(lambda: status_of(node) == "online", 10, "the node to turn online")
    except (AssertionError, TimeoutError):
        raise AssertionError(f"agent output:\n{agent.output()}") from None
    return agent


@pytest.mark.django_db(transaction=True)
def test_an_agent_joins_heartbeats_drains_on_sigterm_and_rejoins(live_server, ray_head, provider_node,
                                                                 start_agent) -> None:
    from marketplace.models import Job, NodeGpu

    node, token = provider_node
    began = time.monotonic()

    agent = join_and_wait_online(start_agent, live_server, ray_head, node, token)

    joined_in = time.monotonic() - began
    assert list(NodeGpu.objects.filter(node=node).values_list("verified", flat=True)) == [False]  # no GPU here
    (ray_node,) = [pid for pid in processes_mentioning(f'"node:{node.pk}"') if os.getpgid(pid) == pid]
    assert "MARKET_NODE_TOKEN" not in environ_of(ray_node)  # jobs run there
    began = time.monotonic()

    assert agent.stop_with(signal.SIGTERM) == 0

    left_in = time.monotonic() - began
    output = agent.output()
    assert "draining" in output and "drained: no active jobs" in output and "Ray node stopped" in output
    assert token not in output
    node.refresh_from_db()
    assert node.draining is True  # the last heartbeat said so
    wait_until(lambda: is_dead(ray_head.address, f"node:{node.pk}"), 10, "the head to see the node leave")
    wait_until(lambda: status_of(node) == "offline", HEARTBEAT_TIMEOUT_S + 5, "the node to turn offline")

    again = join_and_wait_online(start_agent, live_server, ray_head, node, token)

    assert status_of(node) == "online"
    # Now leave while the node holds a running job: the agent waits for it.
    owner = node.provider
    job = Job.objects.create(owner=owner, kind="benchmark", budget_wei=1, state="running", node=node)
    again.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: "draining" in again.output(), 10, "the agent to start draining")
    time.sleep(2.5)
    assert again.popen.poll() is None, again.output()
    assert status_of(node) == "draining"
    assert not is_dead(ray_head.address, f"node:{node.pk}")
    Job.objects.filter(pk=job.pk).update(state="succeeded")
    assert again.popen.wait(timeout=20) == 0
    assert "drained: no active jobs" in again.output()
    print(f"\nthe agent joined and turned the node online in {joined_in:.1f} s; left in {left_in:.1f} s")


@pytest.mark.django_db(transaction=True)
def test_an_agent_whose_ray_node_dies_says_so_and_exits_non_zero(live_server, ray_head, provider_node,
                                                                 start_agent) -> None:
    node, token = provider_node
    agent = join_and_wait_online(start_agent, live_server, ray_head, node, token)

    _kill_ray_node_of(node.pk)

    assert agent.popen.wait(timeout=15) == 1
    assert "the Ray node exited with" in agent.output()
    assert status_of(node) == "draining"  # told the marketplace on the way out


@pytest.mark.django_db(transaction=True)
def test_an_agent_with_a_bad_token_exits_non_zero_saying_why(live_server, ray_head, start_agent) -> None:
    agent = start_agent(live_server.url + "/api/v1/", "node_not-a-real-token", *agent_args(ray_head))

    assert agent.popen.wait(timeout=30) == 2
    output = agent.output()
    assert "refused the node's join token (401)" in output and "MARKET_NODE_TOKEN" in output
    assert "node_not-a-real-token" not in output


def test_an_agent_keeps_retrying_while_the_api_is_unreachable(start_agent) -> None:
    api = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    agent = start_agent(api, "node_whatever", "--num-cpus", "1")

    wait_until(lambda: agent.output().count("retrying in") >= 3, 20, "three retry messages")

    assert agent.popen.poll() is None
    lines = [line for line in agent.output().splitlines() if "retrying in" in line]
    assert f"cannot reach the marketplace API at {api}/api/v1 (connection refused); retrying in 1 s" in lines[0]
    assert lines[1].endswith("retrying in 2 s")
    assert agent.stop_with(signal.SIGTERM, timeout_s=10) == 0
    assert "stopped before joining" in agent.output()


def test_an_agent_without_a_token_says_how_to_give_one(start_agent) -> None:
    agent = start_agent("http://127.0.0.1:9", "")

    assert agent.popen.wait(timeout=30) == 2
    assert "no join token: set MARKET_NODE_TOKEN" in agent.output()


@pytest.mark.django_db(transaction=True)
def test_an_agent_with_a_provider_token_registers_its_machine_and_keeps_a_health_file(
        live_server, ray_head, settings, start_agent, monkeypatch, tmp_path) -> None:
    """What a scaled provider container does: no node yet, only its provider's API token."""
    from marketplace.models import Node
    from marketplace.services import accounts

    settings.RAY_ADDRESS = ray_head.address
    settings.NODE_HEARTBEAT_INTERVAL_S = 1
    _, provider_token = accounts.register_user(username="scaled-prov", password="a long passphrase 7",
                                               role="provider")
    monkeypatch.setenv("MARKET_PROVIDER_TOKEN", provider_token)
    monkeypatch.setenv("MARKET_DECLARE_GPUS", "NVIDIA RTX 4090:2")
    health = tmp_path / "healthy"
    agent = start_agent(live_server.url, "", *agent_args(ray_head), "--health-file", str(health))
    try:
        node = wait_until(lambda: Node.objects.filter(provider__username="scaled-prov").first(), 30,
                          "the agent to register a node")
        wait_until(lambda: "node is up" in agent.output(), 40, "the agent to start its Ray node")
        wait_until(health.exists, 10, "the health file")
        assert [(g.model, g.count, g.verified) for g in node.gpus.all()] == [("NVIDIA RTX 4090", 2, False)]
        assert provider_token not in agent.output()
        assert agent.stop_with(signal.SIGTERM) == 0
    finally:
        _kill_ray_node_of(Node.objects.filter(provider__username="scaled-prov").values_list("pk", flat=True).first()
                          or 0)
