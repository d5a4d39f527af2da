"""A whole marketplace on this machine, from real parts, for the dispatch tests.

Module-scoped, because it takes ~30 s to start: a Redis server, the web app (gunicorn) and a
Celery worker with beat, all on the test database; a Ray head; and two provider nodes joined
through the real agent (`python -m workers.agent join`). The tests talk to it over HTTP and
read the database directly. Every process is stopped at the end, even after a failure.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEARTBEAT_TIMEOUT_S = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Proc:
    """A child process in its own process group, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        if self.popen and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float = 15) -> None:
        if not self.popen or self.popen.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen:
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class Stack:
    """Handles on every part, plus helpers the tests share."""

    api: str
    env: dict[str, str]
    logs: Path
    ray_address: str
    ray_temp: Path
    developer_token: str
    procs: dict[str, Proc] = field(default_factory=dict)
    node_ids: dict[str, int] = field(default_factory=dict)
    node_tokens: dict[str, str] = field(default_factory=dict)

    def start_agent(self, name: str) -> Proc:
        env = {**self.env, "MARKET_NODE_TOKEN": self.node_tokens[name]}
        proc = Proc(f"agent-{name}", [sys.executable, "-m", "workers.agent", "join", "--api", self.api,
                                      "--ray-address", self.ray_address, "--num-cpus", "2",
                                      "--temp-dir", str(self.ray_temp), "--drain-timeout", "30"],
                    env, self.logs / f"agent-{name}.log").start()
        self.procs[proc.name] = proc
        return proc

    def start_celery(self) -> Proc:
        proc = Proc("celery", [str(BIN / "celery"), "-A", "workers.celery", "worker", "-B", "--concurrency", "2",
                               "--loglevel", "INFO", "-s", str(self.logs / "celerybeat-schedule")],
                    self.env, self.logs / "celery.log").start()
        self.procs["celery"] = proc
        return proc

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.api}/api/v1/jobs/", json=body, timeout=10,
                                 headers={"Authorization": f"Token {self.developer_token}"})
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.api}/api/v1/{path}", timeout=10,
                                headers={"Authorization": f"Token {self.developer_token}"})
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str) -> requests.Response:
        return requests.post(f"{self.api}/api/v1/{path}", timeout=10,
                             headers={"Authorization": f"Token {self.developer_token}"})

    def job(self, job_id: int) -> dict[str, Any]:
        return self.get(f"jobs/{job_id}/")

    def wait_state(self, job_id: int, states: set[str], timeout_s: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in states else None
        try:
            return wait_until(reached, timeout_s, f"job {job_id} to reach {sorted(states)}", interval_s=0.3)
        except AssertionError:
            raise AssertionError(f"job {job_id} is {self.job(job_id)['state']}; events: "
                                 f"{self.get(f'jobs/{job_id}/events/?limit=100')['results']}\n"
                                 f"celery log:\n{self.procs['celery'].tail()}") from None

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return self.get(f"jobs/{job_id}/events/?limit=100")["results"]


def _test_database_url() -> str:
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def _start_redis(logs: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(logs)], dict(os.environ), logs / "redis.log").start()
    wait_until(lambda: _answers(port), 10, "redis to listen")
    return proc, f"redis://127.0.0.1:{port}/0"


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _environment(database_url: str, redis_url: str, ray_address: str, logs: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTEST") and key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, RAY_ADDRESS=ray_address,
               DEBUG="1", RUN_DIR=str(logs), ARTIFACT_ROOT=str(logs / "artifacts"),
               NODE_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S), NODE_HEARTBEAT_INTERVAL_S="1",
               MONITOR_INTERVAL_S="1", DISPATCH_SWEEP_S="1", DISPATCH_QUEUE_ENABLED="1",
               THROTTLE_JOB_CREATE="100000/min", THROTTLE_HEARTBEAT="100000/min", THROTTLE_AUTH="100000/min",
               PATH=f"{BIN}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    return env


def _seed(stack_env: dict[str, str]) -> tuple[str, dict[str, int], dict[str, str]]:
    """A developer, and a provider with two nodes: A has 2 RTX 4090 and 1 A100, B has 2 RTX 4090."""
    from marketplace.services import accounts, nodes, offers

    _, developer_token = accounts.register_user(username="dispatch-dev", password="a long passphrase 7",
                                                role="developer")
    provider, _ = accounts.register_user(username="dispatch-prov", password="a long passphrase 7", role="provider")
    ids, tokens = {}, {}
    layout = {"a": [("NVIDIA RTX 4090", 2), ("NVIDIA A100 40GB", 1)], "b": [("NVIDIA RTX 4090", 2)]}
    for name, gpus in layout.items():
        node, token = nodes.register_node(provider=provider, name=f"node-{name}", region="local", cpu_cores=2,
                                          ram_gb=8, gpus=[nodes.GpuDeclaration(m, c) for m, c in gpus])
        for model, count in gpus:
            offers.create_offer(provider=provider, node_id=node.pk, gpu_model=model, gpu_count=count,
                                price_per_gpu_hour_wei=10**15 if name == "a" else 2 * 10**15)
        ids[name], tokens[name] = node.pk, token
    return developer_token, ids, tokens


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any) -> Iterator[Stack]:
    from workers import cluster

    logs = Path(tempfile.mkdtemp(prefix="market-dispatch-"))
    ray_temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    started: list[Any] = []
    try:
        redis, redis_url = _start_redis(logs)
        started.append(redis)
        ray_port = free_port()
        ray_address = f"127.0.0.1:{ray_port}"
        head = cluster.start_head(port=ray_port, temp_dir=ray_temp, num_cpus=0)
        started.append(head)
        with django_db_blocker.unblock():
            developer_token, ids, tokens = _seed({})
            env = _environment(_test_database_url(), redis_url, ray_address, logs)
        web_port = free_port()
        web = Proc("web", [str(BIN / "gunicorn"), "marketplace.wsgi", "--bind", f"127.0.0.1:{web_port}",
                           "--workers", "2", "--threads", "4"], env, logs / "web.log").start()
        started.append(web)
        stack = Stack(api=f"http://127.0.0.1:{web_port}", env=env, logs=logs, ray_address=ray_address,
                      ray_temp=ray_temp, developer_token=developer_token, node_ids=ids, node_tokens=tokens)
        stack.procs["web"] = web
        stack.procs["redis"] = redis
        wait_until(lambda: _http_ok(f"{stack.api}/healthz"), 30, "the web app")
        for name in ("a", "b"):
            started.append(stack.start_agent(name))
        cluster.wait_for_nodes(ray_address, 3, timeout_s=60)
        started.append(stack.start_celery())
        yield stack
    finally:
        for part in reversed(started):
            part.stop() if isinstance(part, Proc) else part.stop(grace_s=10)
        for proc in stack.procs.values() if "stack" in locals() else []:
            proc.stop()
        shutil.rmtree(ray_temp, ignore_errors=True)
        with django_db_blocker.unblock():
            from django.core.management import call_command

            call_command("flush", interactive=False, verbosity=0)  # later tests expect empty tables
        print(f"dispatch logs kept in {logs}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def db_access(django_db_blocker: Any) -> Iterator[None]:
    """Read the shared test database from the test itself (the stack's processes write it)."""
    with django_db_blocker.unblock():
        yield
