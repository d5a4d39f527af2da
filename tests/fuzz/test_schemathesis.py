"""Schema-based fuzzing: schemathesis drives every operation of /api/schema/ and finds no 5xx.

Runs the real schemathesis CLI against a live server with a test database, signed in as a
provider who owns a node and an offer (so object routes have something behind them).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rest_framework.throttling import SimpleRateThrottle

from tests.conftest import make_node, make_offer, sign_up

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
REPORT_DIR = ROOT / "test-output" / "schemathesis"


@pytest.fixture
def unthrottled(monkeypatch: pytest.MonkeyPatch, settings) -> None:
    """Throttles would turn most of the run into 429s; they have their own tests."""
    rates = {scope: "100000/min" for scope in SimpleRateThrottle.THROTTLE_RATES}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    settings.AUTH_FAILURES_PER_MINUTE = 100000


@pytest.mark.fuzz
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error(live_server, unthrottled):
    provider = sign_up("fuzz-provider", "provider")
    node = make_node(provider, name="fuzz-node", gpus=[{"model": "NVIDIA A100 40GB", "count": 4}])
    make_offer(provider, node["id"], gpu_model="NVIDIA A100 40GB", gpu_count=2)
    if REPORT_DIR.exists():
        shutil.rmtree(REPORT_DIR)
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{live_server.url}/api/schema/",
         "--url", live_server.url,
         "--header", f"Authorization: Token {provider.token}",
         "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing",
         "--max-examples", "30", "--seed", "20261121", "--workers", "1",
         "--request-timeout", "20", "--suppress-health-check", "all",
         "--report", "junit", "--report-junit-path", str(REPORT_DIR / "junit.xml")],
        capture_output=True, text=True, timeout=900,
    )
    tail = "\n".join(result.stdout.splitlines()[-60:])
    assert result.returncode == 0, f"schemathesis found problems:\n{tail}\n{result.stderr[-2000:]}"
    operations = _operations_tested()
    assert operations >= 25, f"only {operations} API operations were exercised:\n{tail}"


def _operations_tested() -> int:
    """How many operations the JUnit report lists (each is one test case there)."""
    suites = ET.parse(REPORT_DIR / "junit.xml").getroot()
    assert suites.get("failures") == "0" and suites.get("errors") == "0"
    return int(suites.get("tests", "0"))
