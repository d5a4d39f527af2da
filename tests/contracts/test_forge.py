"""The Solidity side under pytest, so `make test` covers it: forge's unit, fuzz and invariant suites
(contracts/test), branch coverage of contracts/src, and slither's static analysis.

Everything runs offline: forge is npm's binary (ROOT/node_modules/.bin/forge) and compiles with
contracts/solc, our wrapper over solc's JavaScript build (`offline = true` in foundry.toml); slither
(next to this Python) gets its build from that same forge through crytic-compile.

`forge test` uses the project's own out/ and cache/ (a developer's next run reuses them). Coverage and
slither each build into a temporary directory, and need the OpenZeppelin remapping as an absolute
path: with foundry.toml's relative `../node_modules/...` forge names OpenZeppelin's remapped files
`../node_modules/...` and the files those import by relative path `/abs/.../node_modules/...`, so solc
compiles them twice under two names, which `forge coverage`'s analyser (solar) and slither's AST
parser cannot resolve. The absolute remapping gives every file one name.

The tool chain comes from npm (`make test` installs it). Without it these tests fail, not skip:
a contracts change must not pass unchecked.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
FORGE = ROOT / "node_modules" / ".bin" / "forge"
SLITHER = Path(sys.executable).parent / "slither"
OPENZEPPELIN = ROOT / "node_modules" / "@openzeppelin" / "contracts"
MIN_BRANCH_PERCENT = 80.0
TIMEOUT = 900  # seconds per tool run; the whole module takes about two minutes on two cores

INVARIANT_SUITE = "test/invariant/LeaseEscrow.invariants.t.sol:LeaseEscrowInvariantTest"
LEASE_PATHS = ("opened", "settled", "released", "reclaimed", "slashed")


def _require(path: Path, what: str) -> None:
    if not path.exists():
        pytest.fail(
            f"{what} is missing ({path}). The contracts' tool chain comes from npm: run `make test`, "
            f"which installs it, or `npm ci` (or `npm install --no-save`) in {ROOT}.",
            pytrace=False,
        )


def _env(tmp: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # crytic-compile calls `forge` by name
    env["PATH"] = f"{FORGE.parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env.pop("FOUNDRY_PROFILE", None)
    if tmp is not None:
        env["FOUNDRY_REMAPPINGS"] = f"@openzeppelin/contracts/={OPENZEPPELIN}/"
        env["FOUNDRY_OUT"] = str(tmp / "out")
        env["FOUNDRY_CACHE_PATH"] = str(tmp / "cache")
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args, cwd=CONTRACTS, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(args)} ran longer than {TIMEOUT} s:\n{_tail(err.stdout)}\n{_tail(err.stderr)}")


def _tail(text: Any, lines: int = 120) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def _report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout (tail) ---\n{_tail(proc.stdout)}\n--- stderr (tail) ---\n{_tail(proc.stderr)}"


# ---------------------------------------------------------------------------------------------- forge test


@pytest.fixture(scope="module")
def forge_results() -> dict[str, Any]:
    """One `forge test` run for the module: results per test, logs included (-vv)."""
    _require(FORGE, "forge")
    proc = _run([str(FORGE), "test", "--json", "-vv"], _env())
    start = proc.stdout.find("{")
    try:
        results = json.loads(proc.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        results = None
    if not isinstance(results, dict):
        pytest.fail(f"forge test gave no JSON results (does it compile?)\n{_report(proc)}", pytrace=False)
    return {"proc": proc, "suites": results}


def _tests(forge_results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{suite}::{name}": result
        for suite, body in forge_results["suites"].items()
        for name, result in body["test_results"].items()
    }


def _describe_failure(name: str, result: dict[str, Any]) -> str:
    lines = [f"{name}: {result.get('status')}: {result.get('reason')}"]
    if result.get("counterexample"):
        lines.append(f"  counterexample: {json.dumps(result['counterexample'])[:4000]}")
    for log in result.get("decoded_logs") or []:
        lines.append(f"  log: {log}")
    return "\n".join(lines)


def test_forge_test_passes(forge_results: dict[str, Any]) -> None:
    """Unit, fuzz and invariant suites: forge exits 0 and every test passed."""
    proc = forge_results["proc"]
    tests = _tests(forge_results)
    failed = {name: r for name, r in tests.items() if r.get("status") != "Success"}
    details = "\n".join(_describe_failure(name, r) for name, r in failed.items())
    assert proc.returncode == 0 and not failed, f"forge test failed:\n{details}\n{_report(proc)}"
    # forge found the suites (a mistyped path would pass with nothing to run)
    assert len(tests) >= 100, f"only {len(tests)} forge tests ran"
    invariants = [r for name, r in tests.items() if "::invariant_" in name]
    assert len(invariants) >= 8, "the invariant suite did not run"
    for result in invariants:
        campaign = result["kind"]["Invariant"]
        assert campaign["runs"] > 0 and campaign["calls"] > 0, f"an invariant made no calls: {campaign}"
        assert campaign["reverts"] == 0, f"the handler reverted (its model broke): {campaign}"


def _counters(result: dict[str, Any]) -> dict[str, int]:
    counters = {}
    for log in result.get("decoded_logs") or []:
        match = re.fullmatch(r"counter (\w+) (\d+)", log.strip())
        if match:
            counters[match.group(1)] = int(match.group(2))
    return counters


def test_invariant_handler_really_drives_leases(forge_results: dict[str, Any]) -> None:
    """An invariant suite that never opens a lease proves nothing: the handler's counters show it
    opened, settled, released, reclaimed and slashed leases, and saw every wrong call refused."""
    tests = _tests(forge_results)
    replay = tests.get(f"{INVARIANT_SUITE}::test_handlerExercisesEveryAction()")
    summary = tests.get(f"{INVARIANT_SUITE}::invariant_callSummary()")
    assert replay is not None and summary is not None, f"invariant tests missing from {sorted(tests)[:5]}..."

    # a fixed 600-call sequence over every action (the test itself also asserts this)
    counters = _counters(replay)
    assert counters, f"no counters logged: {replay.get('decoded_logs')}"
    for path in LEASE_PATHS + ("settledAtDeadline", "unauthorizedRefused", "pausedRefused",
                                "closedLeaseRefused", "lateSettleRefused", "earlyReclaimRefused"):
        assert counters.get(path, 0) > 0, f"the handler never {path}: {counters}"

    # the fuzzed campaign (forge logs the counters of its last run): leases opened and closed
    fuzzed = _counters(summary)
    assert fuzzed.get("opened", 0) > 0, f"a fuzzed run opened no lease: {fuzzed}"
    assert sum(fuzzed.get(p, 0) for p in LEASE_PATHS[1:]) > 0, f"a fuzzed run closed no lease: {fuzzed}"
    # and every handler action was called in the campaign
    metrics = summary["kind"]["Invariant"]["metrics"]
    called = {key.rsplit(".", 1)[-1]: value["calls"] for key, value in metrics.items()}
    for action in ("openLease", "settleLease", "releaseLease", "reclaimLease", "slash", "unauthorizedCall"):
        assert called.get(action, 0) > 0, f"the fuzzer never called {action}: {called}"
    print(f"handler counters, fixed replay: {counters}\nhandler counters, last fuzzed run: {fuzzed}")


# ---------------------------------------------------------------------------------------------- coverage

_CELL = re.compile(r"([\d.]+)% \((\d+)/(\d+)\)")


def parse_coverage_summary(text: str) -> dict[str, dict[str, tuple[float, int, int]]]:
    """forge coverage's summary table -> {file: {column: (percent, hit, total)}}."""
    rows: dict[str, dict[str, tuple[float, int, int]]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] == "File":
            header = cells
            continue
        if header is None or len(cells) != len(header):
            continue
        values = {}
        for column, cell in zip(header[1:], cells[1:]):
            match = _CELL.fullmatch(cell)
            if match:
                values[column] = (float(match.group(1)), int(match.group(2)), int(match.group(3)))
        if values:
            rows[cells[0]] = values
    return rows


def test_parse_coverage_summary() -> None:
    table = """
| File                | % Lines           | % Statements      | % Branches      | % Funcs         |
|---------------------+-------------------+-------------------+-----------------+-----------------|
| src/LeaseEscrow.sol | 100.00% (137/137) | 100.00% (173/173) | 92.00% (23/25)  | 100.00% (23/23) |
| src/MarketToken.sol | 100.00% (2/2)     | 100.00% (1/1)     | 100.00% (0/0)   | 100.00% (1/1)   |
| Total               | 100.00% (139/139) | 100.00% (174/174) | 92.00% (23/25)  | 100.00% (24/24) |
"""
    rows = parse_coverage_summary(table)
    assert rows["src/LeaseEscrow.sol"]["% Branches"] == (92.0, 23, 25)
    assert rows["src/MarketToken.sol"]["% Branches"] == (100.0, 0, 0)
    assert rows["Total"]["% Lines"] == (100.0, 139, 139)


def test_branch_coverage_of_src(tmp_path: Path) -> None:
    """`forge coverage` (unoptimized, instrumented) covers at least 80 % of src's branches, per file
    and overall."""
    _require(FORGE, "forge")
    env = _env(tmp_path)
    env["FOUNDRY_PROFILE"] = "coverage"  # fewer fuzz and invariant runs: see foundry.toml
    proc = _run(
        [str(FORGE), "coverage", "--report", "summary", "--no-match-coverage", "(test|script)/"], env
    )
    assert proc.returncode == 0, f"forge coverage failed:\n{_report(proc)}"
    rows = parse_coverage_summary(proc.stdout)
    branches = {name: row["% Branches"] for name, row in rows.items() if "% Branches" in row}
    assert "src/LeaseEscrow.sol" in branches and "Total" in branches, f"no coverage table:\n{_report(proc)}"
    assert all(name == "Total" or name.startswith("src/") for name in branches), f"not only src: {branches}"
    low = {name: value for name, value in branches.items() if value[2] and value[0] < MIN_BRANCH_PERCENT}
    assert not low, f"branch coverage below {MIN_BRANCH_PERCENT} %: {low}\n{proc.stdout}"
    print(f"branch coverage: {branches}")


# ---------------------------------------------------------------------------------------------- slither


def test_slither_finds_nothing_high(tmp_path: Path) -> None:
    """slither on contracts/src (tests, scripts and node_modules filtered out): no High finding.
    Medium and low findings are fixed or triaged in the source (`slither-disable-next-line` with
    the reason)."""
    _require(FORGE, "forge")
    _require(SLITHER, "slither (pip: slither-analyzer, in the project's test extras)")
    proc = _run(
        [
            str(SLITHER), ".",
            "--compile-force-framework", "foundry",
            "--skip-clean",  # never `forge clean` anything (the build goes to tmp_path anyway)
            "--filter-paths", "(^|/)(test|script|node_modules)/",
            "--json", "-",
        ],
        _env(tmp_path),
    )
    start = proc.stdout.find("{")
    try:
        report = json.loads(proc.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        report = None
    assert isinstance(report, dict) and report.get("success"), f"slither did not run:\n{_report(proc)}"
    findings = (report.get("results") or {}).get("detectors") or []
    high = [f for f in findings if f.get("impact") == "High"]
    summary = "\n".join(f"{f.get('impact')}/{f.get('check')}: {f.get('description', '').strip()}" for f in findings)
    assert not high, f"slither found High-impact issues:\n{summary}"
    print(f"slither: {len(findings)} finding(s) below High\n{summary}")
