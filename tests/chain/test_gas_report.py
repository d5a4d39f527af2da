"""scripts/gas_report.py: on an anvil of its own, it measures every user-facing operation of the
escrow, first-time and repeat, and the numbers are sane."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gas_report.py"
USER_FACING = {"approve", "deposit", "setLeaseCap", "registerProvider", "openLease", "settleLease", "releaseLease",
               "reclaimLease", "slash", "withdraw"}


def anvils() -> set[int]:
    return {process.pid for process in psutil.process_iter(["name"]) if process.info["name"] == "anvil"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    before = anvils()
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert anvils() <= before, "the script left its anvil running"
    return done


def test_it_measures_every_operation_within_sane_bounds():
    report = json.loads(run("--json").stdout)
    rows = report["operations"]
    assert report["repeats"] == 3
    assert USER_FACING <= {row["operation"] for row in rows}
    for row in rows:
        assert len(row["runs"]) % 3 == 0 and row["runs"], row  # once or more in each of the 3 rounds
        assert 21_000 < min(row["runs"]) <= row["median"] <= max(row["runs"]) < 300_000, row
    median = {(row["operation"], row["case"]): row["median"] for row in rows}
    # Writing a zero slot costs more than changing a non-zero one: the first of each is dearer.
    assert median[("deposit", "first")] > median[("deposit", "repeat")]
    assert median[("openLease", "first")] > median[("openLease", "repeat")]
    assert median[("settleLease", "first payout")] > median[("settleLease", "repeat")]


def test_it_prints_a_table_by_default():
    lines = run("--repeats", "1").stdout.splitlines()
    assert lines[0].split()[:2] == ["operation", "case"] and "median of 1" in lines[0]
    assert {line.split()[0] for line in lines[2:]} >= USER_FACING
