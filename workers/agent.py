"""The provider agent: joins this machine to the marketplace's Ray cluster as a provider node.

``market-agent join --api https://market.example`` (or ``python -m workers.agent join ...``),
with the node's join token in ``MARKET_NODE_TOKEN`` (``--token`` works too, but shows in ``ps``):

1. detects the GPUs through NVML (`workers.gpu`) and joins: ``POST /api/v1/nodes/join/``
   answers where the Ray head is and which resources the node carries. While the API is
   unreachable it retries with backoff, saying so on each try; a refused token ends it (exit 2);
2. starts a Ray worker node with those resources (`workers.cluster.start_worker`);
3. heartbeats every ``heartbeat_interval_s``; if the Ray node dies, it says so and exits 1;
4. on SIGTERM or SIGINT drains: heartbeats ``draining=true`` (the marketplace sends it nothing
   new) until the node holds no dispatched or running job, or ``--drain-timeout`` passes (a
   second signal cuts the wait short); then stops its Ray node, sends a last draining heartbeat
   and exits 0.

The token never reaches a log line, and the Ray node does not inherit it (jobs run there).
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from workers import cluster, gpu

log = logging.getLogger("workers.agent")

TOKEN_ENV = "MARKET_NODE_TOKEN"
PROVIDER_TOKEN_ENV = "MARKET_PROVIDER_TOKEN"
DECLARE_ENV = "MARKET_DECLARE_GPUS"
REQUEST_TIMEOUT_S = 10.0
BACKOFF_S = (1, 2, 4, 8, 15, 30)
EXIT_OK, EXIT_NODE_FAILED, EXIT_REFUSED = 0, 1, 2


# --- the API ------------------------------------------------------------------------------------

class ApiError(Exception):
    """The marketplace API did not do what was asked."""


class ApiUnavailable(ApiError):
    """Worth retrying: unreachable, timed out, throttled or a server error."""


class ApiRefused(ApiError):
    """Not worth retrying: the API said no (``status`` 401 means the token is not a node's)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JoinReply:
    node_id: int
    name: str
    ray_address: str
    resources: dict[str, float]
    heartbeat_interval_s: float
    gpus: list[dict[str, Any]]


@dataclass(frozen=True)
class HeartbeatReply:
    status: str
    active_jobs: int


def api_root(url: str) -> str:
    """The API's base URL from the site's root URL (or from one already ending in /api/v1).

    >>> api_root("http://127.0.0.1:8000/"), api_root("https://market.example/api/v1")
    ('http://127.0.0.1:8000/api/v1', 'https://market.example/api/v1')
    """
    root = url.strip().rstrip("/")
    root = re.sub(r"/api/v1$", "", root)
    return f"{root}/api/v1"


class MarketApi:
    """The two calls the agent makes, authenticated as the node (``Authorization: Node <token>``)."""

    def __init__(self, url: str, token: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.root = api_root(url)
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Node {token}"

    def join(self, gpus: list[gpu.DetectedGpu], hostname: str) -> JoinReply:
        body = self._post("nodes/join/", {"gpus": [g.as_json() for g in gpus], "hostname": hostname[:255]})
        return JoinReply(node_id=int(body["node_id"]), name=str(body["name"]), ray_address=str(body["ray_address"]),
                         resources={str(k): float(v) for k, v in body["resources"].items()},
                         heartbeat_interval_s=float(body["heartbeat_interval_s"]), gpus=list(body["gpus"]))

    def heartbeat(self, draining: bool) -> HeartbeatReply:
        body = self._post("nodes/heartbeat/", {"draining": draining})
        return HeartbeatReply(status=str(body["status"]), active_jobs=int(body["active_jobs"]))

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.root}/{path}"
        try:
            response = self._session.post(url, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ApiUnavailable(f"cannot reach the marketplace API at {self.root} ({_reason(exc)})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise ApiUnavailable(f"the marketplace API answered {response.status_code} ({_detail(response)})")
        if response.status_code != 200:
            raise ApiRefused(f"the marketplace API refused {path} with {response.status_code}: {_detail(response)}",
                             response.status_code)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise ApiUnavailable(f"the marketplace API answered {path} with something other than JSON") from None
        return answer


def _reason(exc: requests.RequestException) -> str:
    """A short reason ("connection refused", "timed out") instead of urllib3's paragraph."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip().lower() if found else type(exc).__name__


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no detail"
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def register_node(url: str, provider_token: str, *, name: str, region: str, num_cpus: int,
                  gpus: list[gpu.DetectedGpu]) -> str:
    """Register this machine as a new node of the provider whose API token is given; returns the
    node's join token. Used by scaled provider containers, which have no node of their own yet.
    A taken name gets a random suffix (a restarted container keeps its hostname)."""
    if not gpus:
        raise ApiRefused(f"no GPUs detected and none declared; set {DECLARE_ENV}=\"MODEL:COUNT,...\"", 400)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {provider_token}"
    ram_gb = max(1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30)
    for candidate in (name, f"{name}-{os.urandom(3).hex()}"):
        body: dict[str, Any] = {"name": candidate[:64], "region": region, "cpu_cores": num_cpus, "ram_gb": ram_gb,
                "gpus": [{"model": g.model, "count": g.count} for g in gpus]}
        try:
            response = session.post(f"{api_root(url)}/nodes/", json=body, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            raise ApiUnavailable(f"cannot reach the marketplace API ({_reason(exc)})") from None
        if response.status_code == 201:
            log.info("registered as a new node %r", candidate)
            return str(response.json()["join_token"])
        if response.status_code != 409:
            raise ApiRefused(f"registering the node failed with {response.status_code}: {_detail(response)}",
                             response.status_code)
    raise ApiRefused("could not find a free node name", 409)


def declared_gpus(text: str) -> list[gpu.DetectedGpu]:
    """GPUs given as ``"NVIDIA RTX 4090:2,NVIDIA A100 40GB:1"`` (for machines NVML cannot see into).

    >>> declared_gpus("NVIDIA RTX 4090:2")[0].count
    2
    """
    gpus = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, _, count = item.rpartition(":")
        if not model or not count.isdigit() or int(count) < 1:
            raise ValueError(f"cannot read {item!r}: expected MODEL:COUNT")
        gpus.append(gpu.DetectedGpu(model=model.strip(), vram_gb=0, count=int(count)))
    return gpus


# --- the agent ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    num_cpus: int
    temp_dir: Path | None  # None: derived from the Ray head's port
    ray_address: str | None  # None: the address the API gives
    node_ip: str
    drain_timeout_s: float
    health_file: Path | None = None  # touched after each heartbeat that got through


class Agent:
    """One run of the agent; `run` returns the exit status."""

    def __init__(self, api: MarketApi, options: Options) -> None:
        self.api = api
        self.options = options
        self.stopping = threading.Event()  # first SIGTERM/SIGINT: drain and leave
        self.hurry = threading.Event()  # second one: stop waiting for jobs
        self.node: cluster.RayNode | None = None

    def request_stop(self) -> None:
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()

    def run(self) -> int:
        detected = gpu.detect_gpus()
        log.info("detected GPUs: %s", ", ".join(f"{g.count} x {g.model} ({g.vram_gb} GB)" for g in detected)
                 or "none")
        try:
            joined = self.join(detected)
            if joined is None:
                log.info("stopped before joining")
                return EXIT_OK
            self.node = self.start_node(joined)
            return self.serve(joined.heartbeat_interval_s)
        except ApiRefused as exc:
            log.error("%s", _refusal(exc))
            return EXIT_REFUSED
        except cluster.NodeStartError as exc:
            log.error("could not start the Ray worker node: %s", exc)
            self.say_leaving()
            return EXIT_NODE_FAILED
        finally:
            if self.node is not None and self.node.alive():
                self.node.stop()

    def join(self, detected: list[gpu.DetectedGpu]) -> JoinReply | None:
        """Join, retrying with backoff while the API is unavailable; None if told to stop meanwhile."""
        for attempt in itertools.count():
            try:
                joined = self.api.join(detected, socket.gethostname())
            except ApiUnavailable as exc:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                log.warning("%s; retrying in %d s", exc, delay)
                if self.stopping.wait(delay):
                    return None
                continue
            unverified = [g["model"] for g in joined.gpus if not g["verified"]]
            log.info("joined as node %d (%s); unverified GPUs: %s", joined.node_id, joined.name,
                     ", ".join(unverified) or "none")
            return joined
        raise AssertionError("unreachable")

    def start_node(self, joined: JoinReply) -> cluster.RayNode:
        address = self.options.ray_address or joined.ray_address
        temp_dir = self.options.temp_dir or cluster.default_temp_dir(_port_of(address))
        log.info("starting a Ray worker node: cluster %s, %d CPUs, resources %s", address, self.options.num_cpus,
                 joined.resources)
        return cluster.start_worker(address=address, resources=joined.resources, num_cpus=self.options.num_cpus,
                                    temp_dir=temp_dir, host=self.options.node_ip, die_with_parent=True)

    def serve(self, interval_s: float) -> int:
        """Heartbeat until told to stop (then drain and leave) or until the Ray node dies."""
        assert self.node is not None
        log.info("node is up (Ray node pid %d, log %s); heartbeat every %g s", self.node.pid, self.node.log_path,
                 interval_s)
        next_beat = 0.0
        while not self.stopping.is_set():
            if not self.node.alive():
                log.error("the Ray node exited with %s; leaving (see %s)", self.node.returncode, self.node.log_path)
                self.say_leaving()
                return EXIT_NODE_FAILED
            if time.monotonic() >= next_beat:
                self.beat(draining=False)
                next_beat = time.monotonic() + interval_s
            self.stopping.wait(min(1.0, interval_s))
        return self.leave(interval_s)

    def leave(self, interval_s: float) -> int:
        """Drain, stop the Ray node, say so once more."""
        assert self.node is not None
        log.info("stopping: draining (up to %g s)", self.options.drain_timeout_s)
        deadline = time.monotonic() + self.options.drain_timeout_s
        while True:
            reply = self.beat(draining=True)
            if reply is not None and reply.active_jobs == 0:
                log.info("drained: no active jobs")
                break
            if time.monotonic() >= deadline or self.hurry.is_set():
                log.warning("leaving with %s active job(s): the drain %s", "unknown" if reply is None else
                            reply.active_jobs, "was cut short" if self.hurry.is_set() else "timed out")
                break
            self.hurry.wait(min(interval_s, max(0.0, deadline - time.monotonic())))
        self.node.stop()
        log.info("Ray node stopped")
        self.beat(draining=True)
        return EXIT_OK

    def beat(self, draining: bool) -> HeartbeatReply | None:
        """One heartbeat. An unavailable API is logged and survived (the next one may get
        through); a refusal (ApiRefused: the node was deleted, say) ends the agent."""
        try:
            reply = self.api.heartbeat(draining)
        except ApiUnavailable as exc:
            log.warning("heartbeat failed: %s", exc)
            return None
        if self.options.health_file is not None:  # container health checks look at its age
            self.options.health_file.touch()
        return reply


    def say_leaving(self) -> None:
        """Best effort, on the way out after a failure: no new work for this node meanwhile."""
        try:
            self.api.heartbeat(draining=True)
        except ApiError as exc:
            log.warning("could not tell the marketplace the node is leaving: %s", exc)


def _port_of(address: str) -> int:
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else cluster.DEFAULT_PORT


def _refusal(exc: ApiRefused) -> str:
    if exc.status == 401:
        return (f"the marketplace refused the node's join token (401); check {TOKEN_ENV} "
                f"(it is shown once, when the node is registered)")
    return str(exc)


# --- command line -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="market-agent", description="Join this machine to the GPU marketplace.")
    commands = parser.add_subparsers(dest="command", required=True)
    join = commands.add_parser("join", help="join, heartbeat, and drain on SIGTERM/SIGINT")
    join.add_argument("--api", required=True, help="the marketplace's URL, e.g. https://market.example")
    join.add_argument("--token", help=f"the node's join token (better: the {TOKEN_ENV} environment variable)")
    join.add_argument("--ray-address", help="the Ray head, host:port (default: the one the API gives)")
    join.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1, help="CPUs to offer (default: all)")
    join.add_argument("--temp-dir", type=Path, help="Ray's temp dir, short (default /tmp/ray-<uid>-<port>)")
    join.add_argument("--node-ip", default=cluster.DEFAULT_HOST, help="this node's address as the cluster sees it")
    join.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for jobs on leaving")
    join.add_argument("--health-file", type=Path, help="a file touched after every heartbeat that got through")
    join.add_argument("--region", default="default", help="region of a node registered with a provider token")
    join.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return parser


def _join_token(args: argparse.Namespace) -> str:
    """The node's join token: given, or got by registering this machine with a provider token.
    Both are popped from the environment: nothing started from here (Ray, jobs) inherits them."""
    from_env, provider_token = os.environ.pop(TOKEN_ENV, ""), os.environ.pop(PROVIDER_TOKEN_ENV, "")
    if args.token or from_env:
        return str(args.token or from_env)
    if not provider_token:
        log.error("no join token: set %s (or pass --token), or %s to register this machine", TOKEN_ENV,
                  PROVIDER_TOKEN_ENV)
        return ""
    try:
        gpus = gpu.detect_gpus() or declared_gpus(os.environ.get(DECLARE_ENV, ""))
        return register_node(args.api, provider_token, name=socket.gethostname(), region=args.region,
                             num_cpus=args.num_cpus, gpus=gpus)
    except (ApiError, ValueError) as exc:
        log.error("%s", exc)
        return ""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s agent: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # its debug lines carry URLs and nothing useful
    token = _join_token(args)
    if not token:
        return EXIT_REFUSED
    agent = Agent(MarketApi(args.api, token), Options(
        num_cpus=args.num_cpus, temp_dir=args.temp_dir, ray_address=args.ray_address, node_ip=args.node_ip,
        drain_timeout_s=args.drain_timeout, health_file=args.health_file))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.request_stop())
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
