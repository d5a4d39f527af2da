#!/usr/bin/env python
"""Start the whole marketplace locally (what `make run` does) and stop every part on Ctrl-C.

Prepares the database and the demo accounts, then starts and supervises, all bound to
127.0.0.1: a local anvil chain (the npm package @foundry-rs/anvil) with the token and escrow
deployed and the demo wallets funded, Redis, a Ray head (through `workers.cluster`), the web app,
a Celery worker, Celery beat (which also follows the chain's events and sends the marketplace's
contract calls), and the demo provider's node joined through the agent. Each runs in its own process
group with its log under `.run/logs/`. If one dies, the rest are stopped and the exit status
says so; Ctrl-C (or SIGTERM) stops them all, in reverse order, and exits 0.
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for marketplace.chain.anvil (this script runs as a file, not a module)

from marketplace.chain.anvil import ANVIL_ACCOUNTS, anvil_argv, ping  # noqa: E402
RUN_DIR = Path(os.environ.get("RUN_DIR") or ROOT / ".run")  # the settings read the same variable
PYTHON = sys.executable
BIN = Path(PYTHON).parent


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
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


def wait_for(check: object, timeout_s: float, services: list[Service]) -> bool:
    """Poll ``check()`` until true; give up early if a started service died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(s.process and s.process.poll() is not None for s in services):
            return False
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.3)
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(service: Service, log_dir: Path) -> None:
    log = (log_dir / f"{service.name}.log").open("ab")
    service.process = subprocess.Popen(service.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env={**os.environ, **service.env})


def stop_all(services: list[Service], grace_s: float = 20.0) -> None:
    """SIGTERM each process group, newest first (the agent drains, Ray leaves, then the rest)."""
    for service in reversed(services):
        if not service.process or service.process.poll() is not None:
            continue
        _signal_group(service, signal.SIGTERM)
        try:
            service.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(service, signal.SIGKILL)
            service.process.wait()


def _signal_group(service: Service, sig: int) -> None:
    assert service.process
    try:
        os.killpg(service.process.pid, sig)
    except ProcessLookupError:
        pass


def print_banner(base_url: str, demo: dict[str, str], log_dir: Path, ray_address: str) -> None:
    print(f"""
Marketplace running (Ctrl-C stops everything; logs in {log_dir}/)
  chain        {demo.get('chain_url', '-')}   escrow {demo.get('escrow_address', '-')}   token {demo.get('token_address', '-')}
  web UI       {base_url}/
  offers       {base_url}/offers/
  API          {base_url}/api/v1/
  API docs     {base_url}/api/docs/
  Ray head     {ray_address}   (demo provider node joined through the agent)
  provider     {demo['provider_username']} / {demo['provider_password']}   token {demo['provider_token']}
  developer    {demo['developer_username']} / {demo['developer_password']}   token {demo['developer_token']}
  demo data    {RUN_DIR / 'demo.json'}

Try:  curl -s -X POST {base_url}/api/v1/jobs/ -H "Authorization: Token {demo['developer_token']}" \\
           -H 'Content-Type: application/json' -d '{{"kind": "benchmark"}}'
""", flush=True)


def plan(args: argparse.Namespace, demo: dict[str, str]) -> list[Service]:
    """Every long-running part, in start order."""
    ray_temp = f"/tmp/ray-market-{os.getuid()}-{args.ray_port}"  # short: Ray's socket paths stay < 107 bytes
    api = f"http://{args.host}:{args.port}"
    return [
        # The chain's state is kept with the database's, so a second `make run` finds the same
        # contracts, balances and leases (anvil writes it every 10 s and when it stops).
        Service("chain", anvil_argv(args.chain_port, state_path=RUN_DIR / "chain-state.json", state_interval_s=10)),
        Service("redis", ["redis-server", "--port", str(args.redis_port), "--bind", "127.0.0.1",
                          "--dir", str(RUN_DIR), "--appendonly", "yes", "--save", ""]),
        Service("ray-head", [PYTHON, "-m", "workers.cluster", "head", "--port", str(args.ray_port),
                             "--temp-dir", ray_temp, "--num-cpus", "0"]),
        Service("web", [str(BIN / "gunicorn"), "marketplace.wsgi", "--bind", f"{args.host}:{args.port}",
                        "--workers", "2", "--threads", "4", "--access-logfile", "-"]),
        Service("celery-worker", [str(BIN / "celery"), "-A", "workers.celery", "worker", "--concurrency", "2",
                                  "--loglevel", "INFO"]),
        Service("celery-beat", [str(BIN / "celery"), "-A", "workers.celery", "beat", "--loglevel", "INFO",
                                "-s", str(RUN_DIR / "celerybeat-schedule")]),
        Service("agent", [PYTHON, "-m", "workers.agent", "join", "--api", api, "--temp-dir", ray_temp,
                          "--num-cpus", "2"], env={"MARKET_NODE_TOKEN": demo["node_join_token"]}),
    ]


def check_ports(args: argparse.Namespace) -> str | None:
    for port, what, flag in ((args.port, "the web app", "PORT"), (args.redis_port, "Redis", "REDIS_PORT"),
                             (args.ray_port, "the Ray head", "RAY_PORT"), (args.chain_port, "anvil", "CHAIN_PORT")):
        if not port_is_free(args.host, port):
            return f"run: port {port} (for {what}) is in use; stop what uses it or run `make run {flag}=<another>`"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--ray-port", type=int, default=6390)
    parser.add_argument("--chain-port", type=int, default=8545)
    args = parser.parse_args()
    os.chdir(ROOT)
    problem = check_ports(args)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    os.environ.update(DEBUG=os.environ.get("DEBUG", "1"), REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url,
                      RAY_ADDRESS=f"127.0.0.1:{args.ray_port}", CELERY_BEAT_SCHEDULE=str(RUN_DIR / "beat"),
                      **chain_environment(args.chain_port))
    base_url = f"http://{args.host}:{args.port}"
    log_dir = RUN_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    manage("migrate", "--noinput", "-v", "0")
    manage("seed_demo", "--api-url", f"{base_url}/api/v1", "-v", "0")
    demo = json.loads((RUN_DIR / "demo.json").read_text())
    return supervise(plan(args, demo), args, base_url, demo, log_dir)


def chain_environment(port: int) -> dict[str, str]:
    """The local chain's settings: anvil's public dev keys (account 0 deploys and is the treasury,
    account 1 is the marketplace's signer), a one-minute unbonding delay for trying things out."""
    return {"CHAIN_URL": f"http://127.0.0.1:{port}", "CHAIN_DEPLOYER_KEY": ANVIL_ACCOUNTS[0].private_key,
            "CHAIN_OPERATOR_KEY": ANVIL_ACCOUNTS[1].private_key, "CHAIN_CONFIRMATIONS": "0",
            "CHAIN_UNBONDING_DELAY_S": os.environ.get("CHAIN_UNBONDING_DELAY_S", "60")}


def prepare_chain(demo: dict[str, str]) -> bool:
    """Deploy the contracts (if this chain has none) and fund the demo wallets; False if that failed."""
    try:
        manage("deploy_contracts", "-v", "0")
        manage("fund_demo", "-v", "0")
    except subprocess.CalledProcessError:
        return False
    demo.update(json.loads((RUN_DIR / "demo.json").read_text()))
    return True


def supervise(services: list[Service], args: argparse.Namespace, base_url: str, demo: dict[str, str],
              log_dir: Path) -> int:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    readiness = {"redis": lambda: listening(args.redis_port), "ray-head": lambda: listening(args.ray_port),
                 "web": lambda: http_ok(f"{base_url}/healthz"),
                 "chain": lambda: not ping(f"http://127.0.0.1:{args.chain_port}")}
    for service in services:
        start(service, log_dir)
        ready = readiness.get(service.name)
        if ready and not wait_for(ready, 90, services):
            print(f"run: {service.name} did not come up; see {log_dir}/{service.name}.log", file=sys.stderr)
            stop_all(services)
            return 1
        if service.name == "chain" and not prepare_chain(demo):
            print("run: deploying the contracts or funding the demo wallets failed (see above)", file=sys.stderr)
            stop_all(services)
            return 1
    print_banner(base_url, demo, log_dir, f"127.0.0.1:{args.ray_port}")
    while not stopping:
        dead = [s for s in services if s.process and s.process.poll() is not None]
        if dead:
            print(f"run: {dead[0].name} exited with {dead[0].process.returncode}; stopping the rest "  # type: ignore[union-attr]
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
