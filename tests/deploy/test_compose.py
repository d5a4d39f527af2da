"""The operators' deployment: docker-compose.yml validates offline, and every command it runs works.

There is no Docker engine here, so the compose file is checked with the Compose binary
(`docker-compose config`), and the commands its services run are run here as processes.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import requires_postgres

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"
EXPECTED_SERVICES = {"postgres", "redis", "web", "worker", "beat", "ray-head", "provider"}


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved compose file, with `.env.example` as the operator's `.env`."""
    workdir = tmp_path_factory.mktemp("compose")
    shutil.copy(ROOT / "docker-compose.yml", workdir / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", workdir / ".env")
    quiet = subprocess.run([str(COMPOSE), "config", "-q"], cwd=workdir, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run([str(COMPOSE), "config", "--format", "json"], cwd=workdir, capture_output=True,
                          text=True, check=True)
    return json.loads(full.stdout)


def test_the_compose_file_validates_and_has_every_service_with_a_health_check(compose_config):
    services = compose_config["services"]
    assert set(services) == EXPECTED_SERVICES
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_every_variable_the_settings_read_is_documented_in_env_example():
    documented = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if "=" in line and not line.startswith("#")}
    settings_source = (ROOT / "marketplace" / "settings.py").read_text()
    import re

    read = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z_]+)"', settings_source))
    read -= {"RUN_DIR", "STATIC_ROOT", "ARTIFACT_ROOT"}  # set by the image, not by operators
    assert read <= documented, f"undocumented: {sorted(read - documented)}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _production_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTEST") and key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DEBUG="0", SECRET_KEY="test-" + "k3y" * 20, ALLOWED_HOSTS="127.0.0.1,localhost",
               SECURE_SSL_REDIRECT="0", STATIC_ROOT=str(tmp_path / "static"), RUN_DIR=str(tmp_path),
               ARTIFACT_ROOT=str(tmp_path / "artifacts"), DJANGO_SETTINGS_MODULE="marketplace.settings",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the image's `python`
    return env


def _wait_ok(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the web command exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@requires_postgres()
@pytest.mark.django_db(transaction=True)
def test_the_web_service_command_migrates_serves_and_passes_its_health_check(compose_config, tmp_path):
    """Runs the compose `web` command (bound to loopback) and then the compose health check."""
    env = _production_env(tmp_path)
    port = _free_port()
    collect = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                             env=env, capture_output=True, text=True)
    assert collect.returncode == 0, collect.stderr
    command = compose_config["services"]["web"]["command"]
    command = [part.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for part in command]
    web = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        assert _wait_ok(f"http://127.0.0.1:{port}/healthz", web, timeout_s=60) == 200
        check = compose_config["services"]["web"]["healthcheck"]["test"][1:]
        check = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in check]
        assert check[0] == "python"
        assert subprocess.run([sys.executable, *check[1:]], timeout=10).returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/offers/", timeout=5) as response:
            assert json.loads(response.read())["results"] == []
    finally:
        if web.poll() is None:
            os.killpg(web.pid, 15)
            web.wait(timeout=20)


def _run_until(command: list[str], env: dict[str, str], ready: Any, log: Path, timeout_s: float = 60) -> int:
    """Start a compose command, wait for ``ready(log text)``, then stop it as Docker would (SIGTERM)."""
    command = [part.replace("$$", "$") for part in command]  # Compose's escape for a literal $
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready(log.read_text(errors="replace")):
            assert process.poll() is None, f"{command} exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command} never became ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        os.killpg(process.pid, 15)
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()


@requires_postgres()
@pytest.mark.django_db(transaction=True)
def test_the_worker_and_beat_commands_start_and_stop_cleanly(compose_config, tmp_path, redis_server):
    env = {**_production_env(tmp_path), "REDIS_URL": redis_server.url, "CELERY_BROKER_URL": redis_server.url}
    worker = compose_config["services"]["worker"]["command"]
    assert _run_until(worker, env, lambda text: " ready." in text, tmp_path / "worker.log") == 0
    beat = [part.replace("/data/", f"{tmp_path}/") for part in compose_config["services"]["beat"]["command"]]
    assert _run_until(beat, env, lambda text: "Sending due task" in text, tmp_path / "beat.log") == 0


def test_the_ray_head_command_serves_its_port_and_stops_cleanly(compose_config, tmp_path):
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    command = [part.replace("--port 6390", f"--port {port}").replace("/tmp/ray ", f"{temp} ")
               for part in compose_config["services"]["ray-head"]["command"]]
    assert f"--port {port}" in command[-1]
    try:
        env = {**_production_env(tmp_path)}
        listening = lambda text: socket.socket().connect_ex(("127.0.0.1", port)) == 0  # noqa: E731
        assert _run_until(command, env, listening, tmp_path / "head.log", timeout_s=90) == 0
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@requires_postgres()
@pytest.mark.django_db(transaction=True)
def test_the_provider_command_registers_a_node_joins_the_cluster_and_stays_healthy(compose_config, tmp_path):
    """The scaled `provider` service: no node of its own, only its provider's API token."""
    from marketplace.models import Node
    from marketplace.services import accounts
    from workers import cluster

    _, provider_token = accounts.register_user(username="compose-prov", password="a long passphrase 7",
                                               role="provider")
    from django.db import connection

    database = urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"])
    env = {**_production_env(tmp_path), "NODE_HEARTBEAT_INTERVAL_S": "1", "DATABASE_URL": urlunsplit(database)}
    web_port, ray_port = _free_port(), _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    web_command = [part.replace("0.0.0.0:8000", f"127.0.0.1:{web_port}")
                   for part in compose_config["services"]["web"]["command"]]
    head = cluster.start_head(port=ray_port, temp_dir=temp)
    web = subprocess.Popen(web_command, cwd=ROOT, env={**env, "RAY_ADDRESS": head.address},
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    health = tmp_path / "agent-heartbeat"
    command = [part.replace("ray-head:6390", head.address).replace("/tmp/ray ", f"{temp} ")
               .replace("/tmp/market-agent-heartbeat", str(health))
               for part in compose_config["services"]["provider"]["command"]]
    provider_env = {**env, "MARKET_API_URL": f"http://127.0.0.1:{web_port}", "MARKET_PROVIDER_TOKEN": provider_token,
                    "MARKET_DECLARE_GPUS": "NVIDIA L4:1"}
    try:
        assert _wait_ok(f"http://127.0.0.1:{web_port}/healthz", web, timeout_s=60) == 200
        assert _run_until(command, provider_env, lambda text: health.exists(), tmp_path / "provider.log",
                          timeout_s=90) == 0
        node = Node.objects.get(provider__username="compose-prov")
        assert [(g.model, g.count) for g in node.gpus.all()] == [("NVIDIA L4", 1)]
        assert node.draining  # it said goodbye on SIGTERM
    finally:
        if web.poll() is None:
            os.killpg(web.pid, 15)
            web.wait(timeout=20)
        head.stop()
        shutil.rmtree(temp, ignore_errors=True)
