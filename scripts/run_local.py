#!/usr/bin/env python
"""Start the marketplace locally (what `make run` does) and stop every part on Ctrl-C.

Prepares the database and demo accounts, then supervises the long-running processes, each
in its own process group bound to 127.0.0.1. If any of them dies, the others are stopped too
and the exit status says so; Ctrl-C (or SIGTERM) stops them all and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
PYTHON = sys.executable


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def wait_http(url: str, timeout_s: float, services: list[Service]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(s.process and s.process.poll() is not None for s in services):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def start(service: Service, log_dir: Path) -> None:
    log = (log_dir / f"{service.name}.log").open("ab")
    service.process = subprocess.Popen(service.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)


def stop_all(services: list[Service], grace_s: float = 10.0) -> None:
    """SIGTERM every process group, then SIGKILL what is left after the grace period."""
    live = [s for s in services if s.process and s.process.poll() is None]
    for service in live:
        _signal_group(service, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for service in live:
        assert service.process
        try:
            service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(service, signal.SIGKILL)
            service.process.wait()


def _signal_group(service: Service, sig: int) -> None:
    assert service.process
    try:
        os.killpg(service.process.pid, sig)
    except ProcessLookupError:
        pass


def print_banner(base_url: str, demo: dict[str, str], log_dir: Path) -> None:
    print(f"""
Marketplace running (Ctrl-C stops everything; logs in {log_dir}/)
  web UI       {base_url}/
  offers       {base_url}/offers/
  API          {base_url}/api/v1/
  API docs     {base_url}/api/docs/
  provider     {demo['provider_username']} / {demo['provider_password']}   token {demo['provider_token']}
  developer    {demo['developer_username']} / {demo['developer_password']}   token {demo['developer_token']}
  demo data    {RUN_DIR / 'demo.json'}
""", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    os.environ.setdefault("DEBUG", "1")
    os.chdir(ROOT)
    if not port_is_free(args.host, args.port):
        print(f"run: port {args.port} on {args.host} is in use; stop what uses it or run "
              f"`make run PORT=<another>`", file=sys.stderr)
        return 1
    base_url = f"http://{args.host}:{args.port}"
    log_dir = RUN_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    manage("migrate", "--noinput", "-v", "0")
    manage("seed_demo", "--api-url", f"{base_url}/api/v1", "-v", "0")
    services = [
        Service("web", [PYTHON, "-m", "gunicorn", "marketplace.wsgi", "--bind", f"{args.host}:{args.port}",
                        "--workers", "2", "--threads", "4", "--access-logfile", "-"]),
    ]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for service in services:
        start(service, log_dir)
    if not wait_http(f"{base_url}/healthz", 60, services):
        print(f"run: the web app did not come up; see {log_dir}/web.log", file=sys.stderr)
        stop_all(services)
        return 1
    print_banner(base_url, json.loads((RUN_DIR / "demo.json").read_text()), log_dir)
    while not stopping:
        dead = [s for s in services if s.process and s.process.poll() is not None]
        if dead:
            print(f"run: {dead[0].name} exited with {dead[0].process.returncode}; stopping the rest "
                  f"(see {log_dir}/{dead[0].name}.log)", file=sys.stderr)
            stop_all(services)
            return 1
        time.sleep(0.5)
    print("run: stopping...", flush=True)
    stop_all(services)
    print("run: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
