"""Production settings: `check --deploy` passes with DEBUG off, and missing secrets fail loudly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests' conftest and is (rightly) a deploy error.
    dropped = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_production_settings_pass_check_deploy_at_warning_level(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                     SECRET_KEY="prod-" + "x9Kq" * 15, ALLOWED_HOSTS="market.example",
                     REDIS_URL="redis://127.0.0.1:6379/0", CHAIN_URL="http://127.0.0.1:8545",
                     CHAIN_OPERATOR_KEY="0x" + "5a" * 32, RUN_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = _manage("check", DEBUG="0", ALLOWED_HOSTS="market.example", RUN_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off" in result.stderr


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("file-" + "z8Pq" * 15 + "\n")
    result = _manage("check", DEBUG="0", SECRET_KEY_FILE=str(secret), ALLOWED_HOSTS="market.example",
                     RUN_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_bad_boolean_names_the_variable(tmp_path):
    result = _manage("check", DEBUG="maybe", RUN_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_without_redis_production_warns_that_rate_limits_are_per_process(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                     SECRET_KEY="prod-" + "x9Kq" * 15, ALLOWED_HOSTS="market.example", RUN_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "marketplace.W001" in result.stderr + result.stdout


def test_production_without_a_chain_warns_that_nobody_is_paid(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                     SECRET_KEY="prod-" + "x9Kq" * 15, ALLOWED_HOSTS="market.example", RUN_DIR=str(tmp_path))
    assert "marketplace.W002" in result.stderr + result.stdout


def test_a_chain_without_a_signer_or_with_a_malformed_key_is_an_error(tmp_path):
    result = _manage("check", CHAIN_URL="http://127.0.0.1:8545", RUN_DIR=str(tmp_path))
    assert result.returncode != 0 and "marketplace.E002" in result.stderr
    result = _manage("check", CHAIN_URL="http://127.0.0.1:8545", CHAIN_OPERATOR_KEY="0x1234", RUN_DIR=str(tmp_path))
    assert result.returncode != 0 and "marketplace.E003" in result.stderr
    assert "0x1234" not in result.stderr  # a key, even a malformed one, is never echoed
