"""The native engine's Rust unit tests under pytest, so `make test` covers them: `cargo test` on the
crate (workers/evm/rust), in the release profile (it reuses what `make` built for the extension),
without the `python` feature (the tests link no Python).

Everything runs offline (`--offline`): the tests run inside a namespace without network, and `make`
fetched every crate beforehand (`cargo fetch`). `--locked`: Cargo.lock is committed and must match
Cargo.toml. Without cargo this test fails, not skips: a change to the engine must not pass unchecked.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "workers" / "evm" / "rust" / "Cargo.toml"
TIMEOUT = 1800  # seconds; a first build of the test binary (deps already built by `make`) takes about a minute

_RESULT = re.compile(r"^test result: (\w+)\. (\d+) passed; (\d+) failed;", re.MULTILINE)


def _cargo() -> str:
    """rustup's cargo: on PATH, else where rustup installs it (~/.cargo/bin, or $CARGO_HOME/bin)."""
    found = shutil.which("cargo")
    if found:
        return found
    home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    candidate = home / "bin" / "cargo"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail(
        "cargo is missing (not on PATH, nor in ~/.cargo/bin). The native EVM engine needs Rust with "
        "cargo, from rustup: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y "
        "--profile minimal; then `make test` fetches the crates and runs this again.",
        pytrace=False,
    )


def _tail(text: Any, lines: int = 200) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def test_rust_unit_tests_pass() -> None:
    """`cargo test --release --offline --locked` exits 0, and it really ran tests."""
    assert MANIFEST.is_file(), f"the crate is missing: {MANIFEST}"
    env = dict(os.environ, CARGO_TERM_COLOR="never", CARGO_NET_OFFLINE="true", RUST_BACKTRACE="1")
    args = [_cargo(), "test", "--release", "--offline", "--locked", "--manifest-path", str(MANIFEST)]
    try:
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(args)} ran longer than {TIMEOUT} s:\n{_tail(err.stdout)}\n{_tail(err.stderr)}")
    report = f"{' '.join(args)}: exit {proc.returncode}\n--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
    if proc.returncode != 0 and "offline" in proc.stderr:
        report += "\n(a crate is not fetched: run `make install` outside the loopback-only namespace, which runs `cargo fetch`)"
    assert proc.returncode == 0, f"the Rust unit tests failed:\n{report}"
    results = [(status, int(passed), int(failed)) for status, passed, failed in _RESULT.findall(proc.stdout)]
    assert results and all(status == "ok" and failed == 0 for status, _, failed in results), report
    passed = sum(p for _, p, _ in results)
    # a mistyped manifest or a feature that compiles the tests out would pass with nothing run
    assert passed > 0, f"cargo ran no test:\n{report}"
    print(f"cargo test: {passed} Rust test(s) passed")
