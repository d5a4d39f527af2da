"""The operators' deployment: docker-compose.yml validates offline, and every command it runs works.

There is no Docker engine here, so the compose file is checked with the Compose binary
(`docker-compose config`), and the commands its services run are run here as processes
(`COMMAND_TESTS` names the test that runs each one, and a test checks that none is left out).
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
EXPECTED_SERVICES = {"postgres", "redis", "migrate", "chain", "deploy", "web", "worker", "beat", "ray-head",
                     "provider"}
ONE_SHOTS = {"migrate", "deploy"}  # run to completion on every `up`; the rest run until stopped
# The test that runs each service's command here (postgres and redis run their images' own servers).
COMMAND_TESTS = {
    "migrate": "test_the_migrate_command_applies_every_migration",
    "chain": "test_the_chain_command_serves_anvil_passes_its_health_check_and_keeps_its_state",
    "deploy": "test_the_deploy_command_deploys_the_contracts_once_and_then_does_nothing",
    "web": "test_the_web_service_command_migrates_serves_and_passes_its_health_check",
    "worker": "test_the_worker_and_beat_commands_start_and_stop_cleanly",
    "beat": "test_the_worker_and_beat_commands_start_and_stop_cleanly",
    "ray-head": "test_the_ray_head_command_serves_its_port_and_stops_cleanly",
    "provider": "test_the_provider_command_registers_a_node_joins_the_cluster_and_stays_healthy",
}


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
        if name in ONE_SHOTS:
            assert service["restart"] == "no", f"{name} runs once"
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_every_command_the_compose_file_runs_is_run_by_a_test(compose_config):
    ours = {name for name, service in compose_config["services"].items() if "build" in service}  # our image
    commanded = {name for name in ours if compose_config["services"][name].get("command")}
    assert commanded == ours, "every service of our image says what it runs"
    assert commanded == set(COMMAND_TESTS)
    assert all(callable(globals().get(test)) for test in COMMAND_TESTS.values())


def _waits_for(service: dict[str, Any]) -> dict[str, str]:
    return {name: dependency["condition"] for name, dependency in service.get("depends_on", {}).items()}


def test_the_contracts_are_deployed_after_the_schema_and_the_chain_and_before_the_app_starts(compose_config):
    services = compose_config["services"]
    assert _waits_for(services["migrate"]) == {"postgres": "service_healthy"}
    assert _waits_for(services["deploy"]) == {"postgres": "service_healthy", "chain": "service_healthy",
                                              "migrate": "service_completed_successfully"}
    for name in ("web", "worker", "beat"):
        assert _waits_for(services[name])["deploy"] == "service_completed_successfully", name
    assert services["chain"]["volumes"][0]["target"] == "/data/chain"
    assert "ports" not in services["chain"]  # dev keys: the chain is reachable inside the compose network only


def test_the_app_reaches_the_bundled_chain_with_the_keys_env_example_documents(compose_config):
    env = compose_config["services"]["web"]["environment"]
    assert env["CHAIN_URL"] == "http://chain:8545" and env["CHAIN_ID"] == "31337"
    from marketplace.chain.anvil import ANVIL_ACCOUNTS

    dev_keys = {account.private_key for account in ANVIL_ACCOUNTS}
    assert {env["CHAIN_OPERATOR_KEY"], env["CHAIN_DEPLOYER_KEY"]} <= dev_keys
    text = (ROOT / ".env.example").read_text()
    assert "REQUIRED in production" in text and "PUBLIC dev keys" in text


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


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _test_database_url() -> str:
    """DATABASE_URL naming pytest-django's test database, for commands run as processes."""
    from django.db import connection

    database = urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"])
    return urlunsplit(database)


def _local(command: list[str]) -> list[str]:
    return [sys.executable if part == "python" else part for part in command]


@requires_postgres()
@pytest.mark.django_db(transaction=True)
def test_the_migrate_command_applies_every_migration(compose_config, tmp_path):
    env = {**_production_env(tmp_path), "DATABASE_URL": _test_database_url()}
    migrate = subprocess.run(_local(compose_config["services"]["migrate"]["command"]), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    check = subprocess.run([sys.executable, "manage.py", "migrate", "--check"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def _chain_command(compose_config: dict[str, Any], port: int, state_dir: Path) -> tuple[list[str], list[str]]:
    """The compose `chain` command and health check, on a loopback port with its state under ``state_dir``."""
    from marketplace.chain.anvil import anvil_binary

    service = compose_config["services"]["chain"]
    command = [str(anvil_binary()) if part == "anvil" else part.replace("/data/chain", str(state_dir))
               for part in service["command"]]
    assert command[command.index("--host") + 1] == "0.0.0.0" and command[command.index("--port") + 1] == "8545"
    command[command.index("--host") + 1], command[command.index("--port") + 1] = "127.0.0.1", str(port)
    check = [part.replace("127.0.0.1:8545", f"127.0.0.1:{port}") for part in service["healthcheck"]["test"][1:]]
    return command, _local(check)


def _serve_chain(command: list[str], check: list[str], env: dict[str, str], log: Path, probe: Any) -> int:
    """Run the chain command until its health check passes, ``probe()``, then SIGTERM it as Docker would."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(check, cwd=ROOT, env=env, capture_output=True, timeout=20).returncode != 0:
            assert process.poll() is None, f"anvil exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the health check never passed:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        probe()
        os.killpg(process.pid, 15)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()


def test_the_chain_command_serves_anvil_passes_its_health_check_and_keeps_its_state(compose_config, tmp_path):
    """anvil answers as CHAIN_ID, mines a transaction at once, and its state survives a restart (the volume)."""
    from marketplace.chain.anvil import ANVIL_ACCOUNTS, DEV_BALANCE_WEI, rpc

    port = _free_port()
    command, check = _chain_command(compose_config, port, tmp_path)
    url, account = f"http://127.0.0.1:{port}", ANVIL_ACCOUNTS[9].address
    env = _production_env(tmp_path)

    def first_life() -> None:
        assert rpc(url, "eth_chainId") == hex(31337)
        tx_hash = rpc(url, "eth_sendTransaction", [{"from": ANVIL_ACCOUNTS[0].address, "to": account, "value": "0x2a"}])
        deadline = time.monotonic() + 10  # mined at once, but the answer may come before the block is sealed
        while rpc(url, "eth_getTransactionReceipt", [tx_hash]) is None:
            assert time.monotonic() < deadline, "the transaction was not mined"
            time.sleep(0.05)
        assert rpc(url, "eth_blockNumber") == "0x1"

    assert _serve_chain(command, check, env, tmp_path / "chain.log", first_life) == 0
    assert (tmp_path / "state.json").is_file()

    def second_life() -> None:
        assert rpc(url, "eth_blockNumber") == "0x1", "the blocks were lost"
        assert int(rpc(url, "eth_getBalance", [account, "latest"]), 16) == DEV_BALANCE_WEI + 42, "the state was lost"

    assert _serve_chain(command, check, env, tmp_path / "chain.log", second_life) == 0


@requires_postgres()
@pytest.mark.django_db(transaction=True)
def test_the_deploy_command_deploys_the_contracts_once_and_then_does_nothing(compose_config, tmp_path):
    """Against a fresh anvil with `.env.example`'s chain settings; a second run sends no transaction."""
    from marketplace.chain.anvil import ANVIL_ACCOUNTS, rpc, start_anvil

    chain_settings = {key: value for key, value in _env_example().items() if key.startswith("CHAIN_")}
    command = _local(compose_config["services"]["deploy"]["command"])
    deployer = next(a.address for a in ANVIL_ACCOUNTS if a.private_key == chain_settings["CHAIN_DEPLOYER_KEY"])
    with start_anvil(_free_port(), log_path=tmp_path / "anvil.log") as chain:
        env = {**_production_env(tmp_path), **chain_settings, "CHAIN_URL": chain.url,
               "DATABASE_URL": _test_database_url()}
        assert subprocess.run([*command, "--help"], cwd=ROOT, env=env, capture_output=True).returncode == 0
        runs, nonces = [], []
        for _ in range(2):
            runs.append(subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120))
            assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr
            nonces.append(int(rpc(chain.url, "eth_getTransactionCount", [deployer, "latest"]), 16))
    assert nonces[0] > 0 and nonces[1] == nonces[0], f"deployer nonces after each run: {nonces}"
    secret = chain_settings["CHAIN_OPERATOR_KEY"][2:]
    assert not any(secret in run.stdout + run.stderr for run in runs), "a key was printed"
