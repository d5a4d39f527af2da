"""`make run`'s script, end to end on the default embedded SQLite database: it starts every part,
the README's curl example job goes from pending to succeeded with a benchmark result on its
offer, Ctrl-C stops everything, and a second run works with the same demo accounts."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(run_dir: Path, ports: dict[str, int]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env["RUN_DIR"] = str(run_dir)
    return subprocess.Popen(
        [sys.executable, "scripts/run_local.py", "--port", str(ports["web"]), "--redis-port", str(ports["redis"]),
         "--ray-port", str(ports["ray"]), "--chain-port", str(ports["chain"])], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)


def _wait_banner(process: subprocess.Popen[str], timeout_s: float = 120) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("Try:"):
            return "".join(seen)
    raise AssertionError("make run did not come up:\n" + "".join(seen))


def _descendants(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def _ctrl_c(process: subprocess.Popen[str]) -> int:
    """Ctrl-C at a terminal signals the whole foreground group: do the same."""
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=90)


def _readme_example(api: str, token: str) -> dict:
    response = requests.post(f"{api}/api/v1/jobs/", json={"kind": "benchmark"}, timeout=10,
                             headers={"Authorization": f"Token {token}"})
    assert response.status_code == 201, response.text
    job = response.json()
    deadline = time.monotonic() + 90
    while job["state"] not in {"succeeded", "failed", "cancelled"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
        job = requests.get(f"{api}/api/v1/jobs/{job['id']}/", headers={"Authorization": f"Token {token}"},
                           timeout=10).json()
    return job


def _settled_lease(api: str, token: str, job_id: int) -> dict:
    """The job's lease once the chain says it settled (the follower applies events every 2 s)."""
    deadline = time.monotonic() + 30
    while True:
        job = requests.get(f"{api}/api/v1/jobs/{job_id}/", headers={"Authorization": f"Token {token}"},
                           timeout=10).json()
        if job.get("lease") and job["lease"]["state"] == "settled":
            return job["lease"]
        assert time.monotonic() < deadline, job.get("lease")
        time.sleep(0.5)


@pytest.mark.dispatch
def test_make_run_brings_everything_up_runs_the_readme_job_and_stops_on_ctrl_c(tmp_path):
    ports = {"web": _free_port(), "redis": _free_port(), "ray": _free_port(), "chain": _free_port()}
    api = f"http://127.0.0.1:{ports['web']}"
    first = _start(tmp_path, ports)
    try:
        banner = _wait_banner(first)
        demo = json.loads((tmp_path / "demo.json").read_text())
        assert demo["developer_token"] in banner and demo["api_url"] == f"{api}/api/v1"
        assert demo["chain_url"] == f"http://127.0.0.1:{ports['chain']}" and demo["escrow_address"] in banner
        children = _descendants(first.pid)
        job = _readme_example(api, demo["developer_token"])
        assert job["state"] == "succeeded", job
        lease = _settled_lease(api, demo["developer_token"], job["id"])
        assert int(lease["payment_wei"]) > 0 and lease["open_tx"] and lease["settle_tx"]
        offers = requests.get(f"{api}/api/v1/offers/?ordering=-score", timeout=10).json()["results"]
        assert offers[0]["node"] == job["node"] and offers[0]["score"] > 0
        assert _ctrl_c(first) == 0
        time.sleep(1)
        assert not [pid for pid in children if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE], "processes left behind"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    second = _start(tmp_path, ports)
    try:
        _wait_banner(second)
        again = json.loads((tmp_path / "demo.json").read_text())
        assert again["developer_token"] == demo["developer_token"]
        assert _readme_example(api, again["developer_token"])["state"] == "succeeded"
        assert _ctrl_c(second) == 0
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
