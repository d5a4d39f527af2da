"""A whole marketplace on this machine, from real parts: for the dispatch tests and the dispatch benchmark.

`running_stack` starts a Redis server, a Ray head, the web app (gunicorn), provider nodes joined
through the real agent (``python -m workers.agent join``) and a Celery worker with beat, all on
the database at ``database_url``; it yields a `Stack` of handles and stops every process it
started when the ``with`` block ends, however it ends (error, Ctrl-C, a failed test).

The data it needs (a developer, a provider, its nodes and offers) is created through the services
(`accounts.register_user`, `nodes.register_node`, `offers.create_offer`) in this process, so Django
must be set up and the database migrated. Under pytest, pass ``db_access=django_db_blocker.unblock``.

>>> with running_stack(os.environ["DATABASE_URL"], nodes={"a": [(RTX, 16)]}, agent_cpus=16) as stack:
...     job = stack.submit({"kind": "benchmark"})
...     stack.wait_state(job["id"], {"succeeded"})
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEARTBEAT_TIMEOUT_S = 4

A100 = "NVIDIA A100 40GB"
RTX = "NVIDIA RTX 4090"
NodeLayout = Mapping[str, Sequence[tuple[str, int]]]
#: Node A has 2 RTX 4090 and 1 A100 (and is the cheaper), node B has 2 RTX 4090.
DEFAULT_NODES: NodeLayout = {"a": [(RTX, 2), (A100, 1)], "b": [(RTX, 2)]}
PRICE_STEP_WEI = 10**15  # the first node asks this per GPU-hour, the second twice that, ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise AssertionError naming ``what``."""
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
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, grace_s: float = 15) -> None:
        """SIGTERM the process group; SIGKILL it if it is still there after ``grace_s``."""
        if not self.alive():
            return
        assert self.popen is not None
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

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
    agent_cpus: int = 2
    procs: dict[str, Proc] = field(default_factory=dict)
    started: list[Proc] = field(default_factory=list)  # every process ever started, in order
    node_ids: dict[str, int] = field(default_factory=dict)
    node_tokens: dict[str, str] = field(default_factory=dict)

    def _launch(self, proc: Proc) -> Proc:
        self.procs[proc.name] = proc.start()
        self.started.append(proc)
        return proc

    def start_web(self, name: str = "web", port: int | None = None, env: Mapping[str, str] | None = None) -> str:
        """Start a gunicorn (extra ones may differ by ``env``) and return its base URL once it answers."""
        port = port or free_port()
        self._launch(Proc(name, [str(BIN / "gunicorn"), "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
                                 "--workers", "2", "--threads", "4"],
                          {**self.env, **(env or {})}, self.logs / f"{name}.log"))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(f"{url}/healthz"), 30, f"the web app {name}")
        return url

    def start_agent(self, name: str) -> Proc:
        env = {**self.env, "MARKET_NODE_TOKEN": self.node_tokens[name]}
        return self._launch(Proc(f"agent-{name}", [
            sys.executable, "-m", "workers.agent", "join", "--api", self.api, "--ray-address", self.ray_address,
            "--num-cpus", str(self.agent_cpus), "--temp-dir", str(self.ray_temp), "--drain-timeout", "30"],
            env, self.logs / f"agent-{name}.log"))

    def start_celery(self) -> Proc:
        return self._launch(Proc("celery", [
            str(BIN / "celery"), "-A", "workers.celery", "worker", "-B", "--concurrency", "2", "--loglevel", "INFO",
            "-s", str(self.logs / "celerybeat-schedule")], self.env, self.logs / "celery.log"))

    def stop_all(self) -> None:
        """Stop every process ever started, newest first (Celery, agents, web apps, Redis)."""
        for proc in reversed(self.started):
            if proc.name.startswith("agent-") and proc.alive():
                proc.signal(signal.SIGTERM)  # a second signal tells the agent not to wait for jobs
                time.sleep(0.2)
            proc.stop()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.api}/api/v1/jobs/", json=body, timeout=10,
                                 headers={"Authorization": f"Token {self.developer_token}"})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.api}/api/v1/{path}", timeout=10,
                                headers={"Authorization": f"Token {self.developer_token}"})
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str) -> requests.Response:
        return requests.post(f"{self.api}/api/v1/{path}", timeout=10,
                             headers={"Authorization": f"Token {self.developer_token}"})

    def job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"jobs/{job_id}/")
        return result

    def wait_state(self, job_id: int, states: set[str], timeout_s: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in states else None
        try:
            result: dict[str, Any] = wait_until(reached, timeout_s, f"job {job_id} to reach {sorted(states)}",
                                                interval_s=0.3)
            return result
        except AssertionError:
            raise AssertionError(f"job {job_id} is {self.job(job_id)['state']}; events: "
                                 f"{self.get(f'jobs/{job_id}/events/?limit=100')['results']}\n"
                                 f"celery log:\n{self.procs['celery'].tail()}") from None

    def events(self, job_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"jobs/{job_id}/events/?limit=100")["results"]
        return result


@dataclass(frozen=True)
class Seeded:
    developer_token: str
    node_ids: dict[str, int]
    node_tokens: dict[str, str]


def seed(nodes: NodeLayout, *, cpu_cores: int, prefix: str = "dispatch") -> Seeded:
    """A developer, and a provider with ``nodes`` (name -> [(GPU model, count)]), each GPU group
    offered in full. Nodes are priced in order: the first is the cheapest."""
    from marketplace.services import accounts
    from marketplace.services import nodes as node_service
    from marketplace.services import offers

    password = "a long passphrase 7"
    _, developer_token = accounts.register_user(username=f"{prefix}-dev", password=password, role="developer")
    provider, _ = accounts.register_user(username=f"{prefix}-prov", password=password, role="provider")
    ids, tokens = {}, {}
    for index, (name, gpus) in enumerate(nodes.items()):
        node, token = node_service.register_node(
            provider=provider, name=f"{prefix}-node-{name}", region="local", cpu_cores=cpu_cores, ram_gb=8,
            gpus=[node_service.GpuDeclaration(model, count) for model, count in gpus])
        for model, count in gpus:
            offers.create_offer(provider=provider, node_id=node.pk, gpu_model=model, gpu_count=count,
                                price_per_gpu_hour_wei=(index + 1) * PRICE_STEP_WEI)
        ids[name], tokens[name] = node.pk, token
    return Seeded(developer_token, ids, tokens)


def environment(database_url: str, redis_url: str, ray_address: str, logs: Path,
                overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every process of the stack sees: fast heartbeats and sweeps (tests wait on them), no throttling."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTEST") and key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, RAY_ADDRESS=ray_address,
               DEBUG="1", RUN_DIR=str(logs), ARTIFACT_ROOT=str(logs / "artifacts"),
               NODE_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S), NODE_HEARTBEAT_INTERVAL_S="1",
               MONITOR_INTERVAL_S="1", DISPATCH_SWEEP_S="1", DISPATCH_QUEUE_ENABLED="1",
               THROTTLE_JOB_CREATE="100000/min", THROTTLE_HEARTBEAT="100000/min", THROTTLE_AUTH="100000/min",
               PATH=f"{BIN}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    env.update(overrides or {})
    return env


def start_redis(logs: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(logs)], dict(os.environ), logs / "redis.log").start()
    try:
        wait_until(lambda: _answers(port), 10, "redis to listen")
    except BaseException:
        proc.kill()
        raise
    return proc, f"redis://127.0.0.1:{port}/0"


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_stack(database_url: str, *, nodes: NodeLayout = DEFAULT_NODES, agent_cpus: int = 2,
                  env: Mapping[str, str] | None = None, prefix: str = "dispatch",
                  db_access: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> Iterator[Stack]:
    """Start the whole marketplace on ``database_url`` (already migrated), seeded with ``nodes``;
    yield it once every node has joined the Ray cluster; stop everything on the way out.

    ``env`` overrides settings for every process (see `environment`); ``db_access`` wraps the
    seeding (pytest: ``django_db_blocker.unblock``); ``prefix`` names the seeded accounts and nodes.
    """
    from workers import cluster

    logs = Path(tempfile.mkdtemp(prefix="market-dispatch-"))
    ray_temp = cluster.make_temp_dir()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(print, f"dispatch logs kept in {logs}")
        cleanup.callback(shutil.rmtree, ray_temp, ignore_errors=True)
        redis, redis_url = start_redis(logs)
        cleanup.callback(redis.stop)
        ray_port = free_port()
        head = cluster.start_head(port=ray_port, temp_dir=ray_temp, num_cpus=0)
        cleanup.callback(head.stop, grace_s=10)
        ray_address = f"127.0.0.1:{ray_port}"
        with db_access():
            seeded = seed(nodes, cpu_cores=agent_cpus, prefix=prefix)
        web_port = free_port()
        stack = Stack(api=f"http://127.0.0.1:{web_port}", env=environment(database_url, redis_url, ray_address, logs,
                                                                            env),
                      logs=logs, ray_address=ray_address, ray_temp=ray_temp, developer_token=seeded.developer_token,
                      agent_cpus=agent_cpus, node_ids=seeded.node_ids, node_tokens=seeded.node_tokens)
        stack.procs["redis"] = redis
        cleanup.callback(stack.stop_all)
        stack.start_web("web", web_port)
        for name in nodes:
            stack.start_agent(name)
        cluster.wait_for_nodes(ray_address, 1 + len(nodes), timeout_s=60 + 15 * len(nodes))
        stack.start_celery()
        yield stack
