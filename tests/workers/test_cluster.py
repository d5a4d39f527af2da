"""A real Ray cluster started through `workers.cluster`: a head and two worker nodes on this machine.

Module-scoped: the cluster takes ~10-20 s to start, so the tests share it; the one that kills a
node runs last. Every process is killed at the end, also after a failure.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workers.ray_helpers import (environ_of, free_port, group_members, is_dead, node_with,
                                       processes_mentioning, wait_until)
from workers import cluster

ROOT = Path(__file__).resolve().parents[2]
SECRET_ENV = "MARKET_TEST_SECRET"


@dataclass
class Cluster:
    head: cluster.RayNode
    workers: dict[str, cluster.RayNode]  # by the node's resource, "node:901"
    temp_dir: Path
    started_in_s: float


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    temp_dir = cluster.make_temp_dir()
    started: list[cluster.RayNode] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(SECRET_ENV, "the caller's secret")  # must not reach the nodes' environment
            began = time.monotonic()
            head = cluster.start_head(port=free_port(), temp_dir=temp_dir)
            started.append(head)
            workers = _start_workers_at_once(head, temp_dir, ["node:901", "node:902"], started)
        cluster.wait_for_nodes(head.address, 3, timeout_s=30)
        yield Cluster(head, workers, temp_dir, time.monotonic() - began)
    finally:
        for node in reversed(started):
            node.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _start_workers_at_once(head: cluster.RayNode, temp_dir: Path, names: list[str],
                           started: list[cluster.RayNode]) -> dict[str, cluster.RayNode]:
    """Start the workers from two threads at once: the temp dir's start lock must make them take turns."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(cluster.start_worker, address=head.address, num_cpus=1, temp_dir=temp_dir,
                                     resources={name: 100.0, "gpu_model:test-gpu": 1.0}) for name in names}
    for future in futures.values():
        with contextlib.suppress(Exception):
            started.append(future.result())
    return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def driver(ray_cluster: Cluster) -> Iterator[Any]:
    import ray

    cluster.connect_driver(ray_cluster.head.address, namespace="test-cluster")
    try:
        yield ray
    finally:
        ray.shutdown()


def run_pinned(ray: Any, resource: str) -> tuple[str, int]:
    """Run a task that needs ``resource``; it answers its node's id and its session id."""
    def where_am_i() -> tuple[str, int]:
        import os as os_in_task

        import ray as ray_in_task

        return ray_in_task.get_runtime_context().get_node_id(), os_in_task.getsid(0)

    task = ray.remote(num_cpus=1, resources={resource: 1})(where_am_i)
    result: tuple[str, int] = ray.get(task.remote(), timeout=60)
    return result


def test_both_workers_joined_with_their_custom_resources(ray_cluster: Cluster) -> None:
    alive = [node for node in cluster.list_nodes(ray_cluster.head.address) if node.alive]

    assert len(alive) == 3
    (head,) = [node for node in alive if node.is_head]
    assert "CPU" not in head.resources  # num_cpus=0: no job lands on the head
    for name in ("node:901", "node:902"):
        (worker,) = [node for node in alive if name in node.resources]
        assert worker.resources[name] == 100.0
        assert worker.resources["gpu_model:test-gpu"] == 1.0
        assert worker.resources["CPU"] == 1.0
    print(f"\ncluster of a head and two workers started in {ray_cluster.started_in_s:.1f} s")


def test_a_task_pinned_to_a_node_runs_on_that_node(ray_cluster: Cluster, driver: Any) -> None:
    for name, worker in ray_cluster.workers.items():
        node = node_with(ray_cluster.head.address, name)
        assert node is not None

        node_id, session = run_pinned(driver, name)

        assert node_id == node.node_id
        assert session == worker.pid  # inside that node's own session, so stopping it ends the task


def test_ray_runs_with_a_home_that_stops_the_cloud_probe_and_without_the_callers_secrets(
        ray_cluster: Cluster) -> None:
    for node in (ray_cluster.head, *ray_cluster.workers.values()):
        # "ray::..." processes retitle themselves over the memory /proc/<pid>/environ shows
        environs = [environ_of(pid) for pid in group_members(node.pid) if not _retitled(pid)]
        assert len(environs) >= 3  # ray start, raylet, log monitor...
        for env in environs:
            assert env["HOME"] == str(ray_cluster.temp_dir / "home")
            assert env["RAY_USAGE_STATS_ENABLED"] == "0"
            assert SECRET_ENV not in env
    config = yaml.safe_load((ray_cluster.temp_dir / "home" / "ray_bootstrap_config.yaml").read_text())
    assert config["provider"]["type"] == "local"
    head_env = environ_of(ray_cluster.head.pid)
    assert head_env["RAY_health_check_period_ms"] == "1000"
    assert head_env["RAY_health_check_failure_threshold"] == "3"


def test_with_that_home_rays_usage_module_asks_no_cloud_metadata_service(ray_cluster: Cluster, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._common.usage import usage_lib

    asked: list[str] = []
    monkeypatch.setattr(usage_lib, "get_cloud_from_metadata_requests", lambda: asked.append("probe") or "unknown")

    report = usage_lib.get_cluster_config_to_report(str(ray_cluster.temp_dir / "home" / "ray_bootstrap_config.yaml"))

    assert report.cloud_provider == "local" and asked == []
    usage_lib.get_cluster_config_to_report(str(tmp_path / "ray_bootstrap_config.yaml"))  # a HOME without it
    assert asked == ["probe"]


def _retitled(pid: int) -> bool:
    return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")


def test_the_head_has_no_dashboard_reports_no_usage_and_advertises_loopback(ray_cluster: Cluster) -> None:
    argv = Path(f"/proc/{ray_cluster.head.pid}/cmdline").read_bytes().decode().split("\0")

    assert "--include-dashboard=false" in argv and "--disable-usage-stats" in argv
    assert argv[argv.index("--node-ip-address") + 1] == "127.0.0.1"
    assert len(str(ray_cluster.temp_dir)) <= cluster.MAX_TEMP_DIR_CHARS


def test_the_head_port_is_not_redis_port(ray_cluster: Cluster) -> None:
    assert not ray_cluster.head.address.endswith(":6379")
    with pytest.raises(ValueError, match="Redis"):
        cluster.start_head(port=6379, temp_dir=ray_cluster.temp_dir)
    assert cluster.DEFAULT_PORT == 6390


def test_a_temp_dir_too_long_for_ray_socket_paths_is_refused(ray_cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="107 bytes"):
        cluster.start_worker(address=ray_cluster.head.address, resources={}, num_cpus=1,
                             temp_dir="/tmp/" + "x" * 60)


def test_waiting_for_more_nodes_than_there_are_times_out_saying_so(ray_cluster: Cluster) -> None:
    with pytest.raises(TimeoutError, match="node:999"):
        cluster.wait_for_nodes(ray_cluster.head.address, 1, timeout_s=1, resource="node:999")


def test_a_stopped_worker_leaves_the_cluster_and_leaves_no_process(ray_cluster: Cluster) -> None:
    extra = cluster.start_worker(address=ray_cluster.head.address, resources={"node:903": 100.0}, num_cpus=1,
                                 temp_dir=ray_cluster.temp_dir)
    try:
        cluster.wait_for_nodes(ray_cluster.head.address, 1, timeout_s=30, resource="node:903")
        began = time.monotonic()

        extra.stop(grace_s=10)

        assert not extra.alive()
        assert group_members(extra.pid) == []
        wait_until(lambda: is_dead(ray_cluster.head.address, "node:903"), 10, "the head to see node:903 leave")
        print(f"\na worker stopped in {time.monotonic() - began:.1f} s")
    finally:
        extra.kill()


def test_the_head_runs_in_the_foreground_from_the_command_line_and_stops_on_sigterm() -> None:
    temp_dir = cluster.make_temp_dir()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "workers.cluster", "head", "--port", str(port),
                                "--temp-dir", str(temp_dir), "--num-cpus", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        banner = read_until(process, "Ray head at")
        assert f"Ray head at 127.0.0.1:{port}" in banner
        (head,) = cluster.wait_for_nodes(f"127.0.0.1:{port}", 1, timeout_s=30)
        assert head.is_head

        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=30) == 0
        assert b"Ray head stopped" in process.stdout.read()
        wait_until(lambda: not processes_mentioning(str(temp_dir)), 10, "every process of that head to end")
    finally:
        _kill_everything_of(process, temp_dir)


def test_a_head_whose_foreground_process_is_killed_goes_with_it() -> None:
    temp_dir = cluster.make_temp_dir()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "workers.cluster", "head", "--port", str(port),
                                "--temp-dir", str(temp_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        read_until(process, "Ray head at")

        process.kill()
        process.wait()

        wait_until(lambda: not processes_mentioning(str(temp_dir)), 15, "the orphaned head to stop")
    finally:
        _kill_everything_of(process, temp_dir)


def read_until(process: subprocess.Popen[bytes], text: str, max_lines: int = 50) -> str:
    """The first line of the process' output that holds ``text``."""
    assert process.stdout is not None
    seen = []
    for _ in range(max_lines):
        line = process.stdout.readline().decode(errors="replace")
        if text in line or not line:
            break
        seen.append(line)
    assert text in line, "".join(seen)
    return line


def _kill_everything_of(process: subprocess.Popen[bytes], temp_dir: Path) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in processes_mentioning(str(temp_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    process.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


# Last: it kills a node of the shared cluster.
def test_killing_one_worker_leaves_the_other_and_the_head_soon_reports_it_dead(
        ray_cluster: Cluster, driver: Any) -> None:
    victim, survivor = ray_cluster.workers["node:902"], ray_cluster.workers["node:901"]
    began = time.monotonic()

    victim.kill()

    wait_until(lambda: group_members(victim.pid) == [], 5, "the killed node's processes to be gone")
    wait_until(lambda: is_dead(ray_cluster.head.address, "node:902"), 10, "the head to report node:902 dead")
    detected_in = time.monotonic() - began
    assert survivor.alive()
    survivor_node = node_with(ray_cluster.head.address, "node:901")
    assert survivor_node is not None and survivor_node.alive
    assert run_pinned(driver, "node:901")[0] == survivor_node.node_id
    print(f"\nthe head reported the killed node dead after {detected_in:.1f} s")
