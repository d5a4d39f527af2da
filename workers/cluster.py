"""Starts Ray head and worker nodes safely. THE only code that starts Ray (see "Network rule").

Every Ray process started here gets:

- a HOME holding ``ray_bootstrap_config.yaml`` with ``provider: {type: local}``: Ray's usage
  module reads that file at head start and, when it is missing, asks three cloud metadata
  addresses (169.254.169.254, metadata.google.internal) which cloud it runs on;
- usage stats off (``RAY_USAGE_STATS_ENABLED=0`` and ``--disable-usage-stats``), no dashboard
  on the head, ``--node-ip-address`` (127.0.0.1 unless told), so Ray advertises loopback;
- Ray's own SIGTERM drain off (``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0``): the agent drains
  at the marketplace level before it stops its node, and Ray's drain would otherwise wait up to
  30 s for a GCS that the same group signal is already stopping;
- on the head, faster node-death detection: Ray reads every system config entry from an
  ``RAY_<name>`` environment variable, so ``RAY_health_check_period_ms=1000`` and
  ``RAY_health_check_failure_threshold=3`` bring the time to notice a killed node from ~15 s to
  ~3 s (measured: 14.7 s with Ray's defaults, 2.9 s with these).

Each node is one ``ray start --block`` process in a session (process group) of its own, so it
can be stopped or killed without touching any other node on the machine. ``ray stop`` is never
used: it kills every Ray process of the machine. Nodes of one cluster on one machine share a
short temp dir (Unix socket paths under it must stay below 107 bytes); a lock file in it makes
node starts take turns, because two ``ray start`` racing in one session dir pick the same socket
names and one of them crashes. Each node listens for its dashboard agent on a free port (Ray's
fixed default, 52365, would collide between nodes of one machine).

What Ray still does by itself: its CLI and agents call ``connect()`` on a UDP socket towards
8.8.8.8:53 to learn the outward interface. A UDP connect sends no packet; inside the
loopback-only namespace it fails at once and Ray logs a warning and uses the address given.

Drivers connect with `connect_driver`, which passes ``_node_ip_address`` (without it Ray looks
for its address through 8.8.8.8 and may pick an external interface):

>>> head = start_head(port=6390, temp_dir=make_temp_dir())
>>> node = start_worker(address=head.address, resources={"node:7": 100.0}, num_cpus=2,
...                     temp_dir=head.temp_dir)
>>> wait_for_nodes(head.address, 2, timeout_s=60)      # the head and the worker, alive
>>> node.stop(); head.stop()

``python -m workers.cluster head --port 6390 --temp-dir /tmp/ray-market --num-cpus 0`` runs a
head in the foreground (its log on stdout) until SIGTERM or SIGINT, then stops it.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

RAY = Path(sys.executable).parent / "ray"
DEFAULT_PORT = 6390  # not 6379: that is Redis' port
DEFAULT_HOST = "127.0.0.1"
REDIS_PORT = 6379
START_TIMEOUT_S = 90.0
# Ray puts "<temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store.NN" (~62 bytes
# after the temp dir) into a sockaddr_un, which holds 107 bytes.
MAX_TEMP_DIR_CHARS = 40
STARTED_MARKER = b"Ray runtime started."
BOOTSTRAP_CONFIG = "# Written by workers.cluster: a local cluster, so Ray asks no cloud metadata service.\n" \
                   "provider:\n  type: local\n"
PASSED_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM",
                        "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH"})
PASSED_ENV_PREFIXES = ("LC_", "RAY_", "CUDA_", "NVIDIA_", "ROCR_", "HIP_", "OMP_")
HEAD_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


class NodeStartError(RuntimeError):
    """A Ray node did not come up; the message holds the end of its log."""


@dataclass(frozen=True)
class NodeInfo:
    """One node as the head's GCS sees it."""

    node_id: str
    alive: bool
    resources: dict[str, float]

    @property
    def is_head(self) -> bool:
        return "node:__internal_head__" in self.resources


@dataclass
class RayNode:
    """A running ``ray start --block`` process, leader of its own process group."""

    role: str  # "head" or "worker"
    address: str  # the cluster's GCS address, host:port
    temp_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stop(self, grace_s: float = 10) -> None:
        """SIGTERM the node's process group; SIGKILL whatever is left after ``grace_s``.

        >>> node.stop(grace_s=5)
        """
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        while _group_exists(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # the raylet and agents may outlive the `ray start` process briefly
        self.kill()

    def kill(self) -> None:
        """SIGKILL the node's whole process group at once, as a crash would (for fault tests).

        >>> node.kill()
        """
        _signal_group(self.pid, signal.SIGKILL)
        self.process.wait()


# --- starting nodes ---------------------------------------------------------------------------

def make_temp_dir() -> Path:
    """A fresh, short temp dir for one cluster (``/tmp/ray-xxxxxxxx``).

    >>> make_temp_dir()
    PosixPath('/tmp/ray-k2j4x0qa')
    """
    return Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))


def default_temp_dir(port: int) -> Path:
    """The temp dir the CLIs use when given none: one per user and head port, so a head and the
    agents on its machine agree without being told.

    >>> default_temp_dir(6390)
    PosixPath('/tmp/ray-1000-6390')
    """
    return Path(f"/tmp/ray-{os.getuid()}-{port}")


def start_head(*, port: int = DEFAULT_PORT, temp_dir: Path | str, num_cpus: int = 0, host: str = DEFAULT_HOST,
               die_with_parent: bool = False, start_timeout_s: float = START_TIMEOUT_S) -> RayNode:
    """Start a head node and return once it accepts nodes and drivers.

    ``num_cpus=0`` (the default) keeps every job off the head. ``die_with_parent``: the node
    gets SIGTERM when the calling thread ends, even by SIGKILL (Linux's PR_SET_PDEATHSIG follows
    the thread, not the process: use it from a supervisor's main thread, as the agent does).

    >>> head = start_head(port=6390, temp_dir="/tmp/ray-market")
    >>> head.address
    '127.0.0.1:6390'
    """
    if port == REDIS_PORT:
        raise ValueError(f"port {REDIS_PORT} is Redis' port; give the Ray head another (default {DEFAULT_PORT})")
    # Ray Client's server would take 10001 on every head, and its gRPC port reuse lets two heads
    # of one machine share it silently: each head gets a free port instead.
    args = ["--head", "--port", str(port), "--num-cpus", str(num_cpus), "--include-dashboard=false",
            "--ray-client-server-port", str(_free_port(host))]
    return _start_node("head", f"{host}:{port}", args, Path(temp_dir), host, HEAD_ENV, die_with_parent,
                       start_timeout_s)


def start_worker(*, address: str, resources: Mapping[str, float], num_cpus: int, temp_dir: Path | str,
                 host: str = DEFAULT_HOST, die_with_parent: bool = False,
                 start_timeout_s: float = START_TIMEOUT_S) -> RayNode:
    """Join a worker node with these custom resources to the cluster at ``address``; return once
    it has joined. ``die_with_parent``: as for `start_head`.

    >>> start_worker(address="127.0.0.1:6390", resources={"node:7": 100.0, "gpu_model:nvidia-l4": 1.0},
    ...              num_cpus=8, temp_dir="/tmp/ray-market")
    RayNode(role='worker', address='127.0.0.1:6390', ...)
    """
    args = ["--address", address, "--num-cpus", str(num_cpus), "--resources", json.dumps(dict(resources))]
    return _start_node("worker", address, args, Path(temp_dir), host, {}, die_with_parent, start_timeout_s)


def node_env(temp_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Ray process started here (see the module docstring).

    Only what Ray, Python and GPU drivers need passes from the caller's environment: provider
    nodes run developers' code, which must not read the caller's secrets (a join token, a
    database URL) from its environment.
    """
    home = temp_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text(BOOTSTRAP_CONFIG)
    kept = {key: value for key, value in os.environ.items()
            if key in PASSED_ENV or key.startswith(PASSED_ENV_PREFIXES)}
    return {**kept, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            **(extra or {})}


def _start_node(role: str, address: str, args: list[str], temp_dir: Path, host: str, extra_env: Mapping[str, str],
                die_with_parent: bool, start_timeout_s: float) -> RayNode:
    _check_temp_dir(temp_dir)
    temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [str(RAY), "start", "--block", *args, "--node-ip-address", host, "--temp-dir", str(temp_dir),
            "--disable-usage-stats", "--dashboard-agent-listen-port", "0"]
    env = node_env(temp_dir, extra_env)
    with _start_turn(temp_dir, start_timeout_s):
        log_path = _new_log(temp_dir, role)
        with log_path.open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True,
                                       preexec_fn=_death_signal_setter() if die_with_parent else None)
        node = RayNode(role=role, address=address, temp_dir=temp_dir, log_path=log_path, process=process)
        try:
            _wait_started(node, start_timeout_s)
        except BaseException:
            node.kill()
            raise
    log.info("Ray %s node started (pid %d, cluster %s, log %s)", role, node.pid, address, log_path)
    return node


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_temp_dir(temp_dir: Path) -> None:
    if not temp_dir.is_absolute() or len(str(temp_dir)) > MAX_TEMP_DIR_CHARS:
        raise ValueError(f"the Ray temp dir must be an absolute path of at most {MAX_TEMP_DIR_CHARS} characters "
                         f"(Ray's socket paths under it must stay below 107 bytes): {str(temp_dir)!r}")


def _new_log(temp_dir: Path, role: str) -> Path:
    logs = temp_dir / "nodes"
    logs.mkdir(exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f"{role}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=logs)
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def _start_turn(temp_dir: Path, timeout_s: float) -> Iterator[None]:
    """Hold the temp dir's start lock: one node starts at a time per temp dir, across processes."""
    with (temp_dir / ".start.lock").open("w") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeStartError(f"another Ray node in {temp_dir} took over {timeout_s:.0f} s to start")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait_started(node: RayNode, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while STARTED_MARKER not in node.log_path.read_bytes():
        if not node.alive():
            raise NodeStartError(f"the Ray {node.role} node exited with {node.returncode} while starting "
                                 f"(cluster {node.address}); end of {node.log_path}:\n{_tail(node.log_path)}")
        if time.monotonic() > deadline:
            raise NodeStartError(f"the Ray {node.role} node did not start within {timeout_s:.0f} s "
                                 f"(cluster {node.address}); end of {node.log_path}:\n{_tail(node.log_path)}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 15) -> str:
    """The end of a node's log, without Ray's repeated "no route to 8.8.8.8" warnings (see above)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if "external connectivity" not in line][-lines:])


def _death_signal_setter() -> Callable[[], None] | None:
    """What the child runs before exec to get SIGTERM when the thread starting it ends (Linux
    prctl PR_SET_PDEATHSIG). Looked up here, in the parent: a child of a threaded parent must
    not import anything between fork and exec."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the node outlives a killed parent
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --- looking at the cluster -------------------------------------------------------------------

def list_nodes(address: str, timeout_s: float = 30) -> list[NodeInfo]:
    """Every node the head knows of, alive or dead (asked in a subprocess: no Ray import here).

    >>> [(n.alive, n.resources.get("node:7")) for n in list_nodes("127.0.0.1:6390")]
    [(True, None), (True, 100.0)]
    """
    result = subprocess.run([sys.executable, "-m", "workers.cluster", "nodes", "--address", address],
                            capture_output=True, text=True, timeout=timeout_s, env=_query_env())
    if result.returncode != 0:
        raise ConnectionError(f"cannot list the nodes of the Ray cluster at {address}: "
                              f"{result.stderr.strip()[-500:]}")
    return [NodeInfo(**node) for node in json.loads(result.stdout)]


def wait_for_nodes(address: str, count: int, timeout_s: float, *, resource: str | None = None) -> list[NodeInfo]:
    """Wait until at least ``count`` nodes are alive (the head counts; with ``resource``, only
    nodes that have it count); return the alive nodes, or raise TimeoutError.

    >>> wait_for_nodes("127.0.0.1:6390", 3, timeout_s=60)          # the head and two workers
    >>> wait_for_nodes("127.0.0.1:6390", 1, timeout_s=30, resource="node:7")
    """
    deadline = time.monotonic() + timeout_s
    seen: list[NodeInfo] = []
    while True:
        with contextlib.suppress(ConnectionError, subprocess.TimeoutExpired):
            seen = [n for n in list_nodes(address, timeout_s=max(5.0, timeout_s)) if n.alive]
            if sum(1 for n in seen if resource is None or resource in n.resources) >= count:
                return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} node(s){' with ' + resource if resource else ''} not alive in the Ray "
                               f"cluster at {address} after {timeout_s:.0f} s; alive: {seen}")
        time.sleep(0.3)


def _query_env() -> dict[str, str]:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _read_nodes(address: str) -> list[dict[str, Any]]:
    """The head's node table, through the GCS client (what ``ray status`` uses underneath).

    A private Ray API, kept to this one function; it connects no driver and registers no job.
    """
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    client = GcsClient(address=address)
    return [{"node_id": info.node_id.hex(), "alive": info.state == 0,  # GcsNodeInfo.ALIVE
             "resources": {str(k): float(v) for k, v in info.resources_total.items()}}
            for info in client.get_all_node_info(timeout=10).values()]


# --- drivers ------------------------------------------------------------------------------------

def connect_driver(address: str, namespace: str, *, host: str = DEFAULT_HOST) -> None:
    """Connect this process to the cluster as a driver (a no-op when already connected).

    An explicit address only: ``ray.init()`` without one would start a private cluster, outside
    every rule above. ``host`` is this machine's address as the cluster sees it.

    >>> connect_driver("127.0.0.1:6390", "marketplace")
    """
    import ray

    if not address or address == "auto":
        raise ValueError("connect_driver needs the head's address, host:port")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address=address, namespace=namespace, _node_ip_address=host, log_to_driver=False)


@contextlib.contextmanager
def local_cluster(num_cpus: int, *, address: str | None = None, namespace: str = "evm") -> Iterator[str]:
    """A driver connection for a command-line run: to the cluster at ``address`` when given, else to
    a private one-node cluster with ``num_cpus`` CPUs, started here and stopped on exit.

    >>> with local_cluster(2) as address:
    ...     pool = RayPool(workers=2)
    """
    import ray

    if ray.is_initialized():
        yield address or ""
        return
    if address:
        connect_driver(address, namespace)
        try:
            yield address
        finally:
            ray.shutdown()
        return
    temp_dir = make_temp_dir()
    head = start_head(port=_free_port(DEFAULT_HOST), temp_dir=temp_dir, num_cpus=num_cpus, die_with_parent=True)
    try:
        connect_driver(head.address, namespace)
        yield head.address
    finally:
        ray.shutdown()
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


# --- command line -------------------------------------------------------------------------------

def run_head(args: argparse.Namespace) -> int:
    """Run a head in the foreground, its log on stdout, until SIGTERM/SIGINT; then stop it."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    temp_dir = Path(args.temp_dir) if args.temp_dir else default_temp_dir(args.port)
    try:
        head = start_head(port=args.port, temp_dir=temp_dir, num_cpus=args.num_cpus, host=args.host,
                          die_with_parent=True)
    except (NodeStartError, ValueError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    print(f"cluster: Ray head at {head.address} (temp dir {temp_dir}, log {head.log_path})", flush=True)
    with head.log_path.open("rb") as follow:
        while not stop.wait(0.5) and head.alive():
            _copy_new(follow, sys.stdout.buffer)
        _copy_new(follow, sys.stdout.buffer)
    if not head.alive():
        print(f"cluster: the Ray head exited with {head.returncode}", file=sys.stderr)
        head.kill()
        return 1
    head.stop()
    print("cluster: Ray head stopped", flush=True)
    return 0


def _copy_new(source: IO[bytes], sink: IO[bytes]) -> None:
    chunk = source.read()
    if chunk:
        sink.write(chunk)
        sink.flush()


def print_nodes(args: argparse.Namespace) -> int:
    try:
        nodes = _read_nodes(args.address)
    except Exception as exc:  # the GCS client raises Ray's own error types
        print(f"cluster: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(nodes))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers.cluster", description="Ray nodes, started safely.")
    commands = parser.add_subparsers(dest="command", required=True)
    head = commands.add_parser("head", help="run a Ray head in the foreground until SIGTERM/SIGINT")
    head.add_argument("--port", type=int, default=_port_from_env())
    head.add_argument("--temp-dir", help="short absolute path shared with the nodes of this machine "
                                         "(default /tmp/ray-<uid>-<port>)")
    head.add_argument("--num-cpus", type=int, default=0)
    head.add_argument("--host", default=DEFAULT_HOST, help="the address the head advertises")
    nodes = commands.add_parser("nodes", help="print the cluster's nodes as JSON")
    nodes.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or f"{DEFAULT_HOST}:{DEFAULT_PORT}")
    return parser


def _port_from_env() -> int:
    """The port of RAY_ADDRESS (the setting the marketplace uses too), else 6390."""
    address = os.environ.get("RAY_ADDRESS", "")
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    return run_head(args) if args.command == "head" else print_nodes(args)


if __name__ == "__main__":
    sys.exit(main())
