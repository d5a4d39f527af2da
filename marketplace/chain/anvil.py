"""A local anvil (Foundry's dev chain) for `make run` and the tests, driven without web3.

anvil comes from the pinned npm package (`npm ci` installs node_modules/@foundry-rs/anvil); it is
started bound to loopback with no fork URL, so it never reaches the network. Each anvil runs in its
own process group, and `AnvilProcess.stop()` ends the group, so nothing outlives it (the npm shim,
when it is what runs, forwards signals to the native binary but may exit first).

The accounts below are anvil's default dev accounts: they are derived from the PUBLIC mnemonic
"test test test test test test test test test test test junk", their private keys are printed by
every anvil and published in Foundry's documentation. They are for local chains only: anything sent
to them on a real network is taken at once by bots. Never use them for real money.

>>> with start_anvil(8545) as chain:
...     rpc(chain.url, "eth_chainId")
'0x7a69'
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHAIN_ID = 31337
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"  # public: dev chains only
DEV_BALANCE_WEI = 10_000 * 10**18  # what anvil gives each dev account


@dataclass(frozen=True)
class DevAccount:
    """One of anvil's well-known dev accounts (a public key pair: never for real money)."""

    address: str  # checksummed
    private_key: str  # 0x hex


ANVIL_ACCOUNTS: tuple[DevAccount, ...] = tuple(DevAccount(address, key) for address, key in (
    ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
     "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
     "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    ("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
     "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    ("0x90F79bf6EB2c4f870365E785982E1f101E93b906",
     "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
    ("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
     "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
    ("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
     "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"),
    ("0x976EA74026E726554dB657fA54763abd0C3a0aa9",
     "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"),
    ("0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
     "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"),
    ("0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
     "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"),
    ("0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
     "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"),
))

# Plain urllib, but never through a proxy from the environment: a chain URL is always dialled directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_REQUEST_IDS = itertools.count(1)


class AnvilError(RuntimeError):
    """anvil could not be found, started or reached; the message says why and what to do."""


class RpcError(Exception):
    """The node answered a JSON-RPC call with an error object."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method, self.code, self.message, self.data = method, code, message, data


def rpc(url: str, method: str, params: Sequence[Any] = (), *, timeout_s: float = 10.0) -> Any:
    """One JSON-RPC call over HTTP: the ``result``, or `RpcError`; `OSError` when nothing answers.

    >>> rpc("http://127.0.0.1:8545", "eth_getBalance", [ANVIL_ACCOUNTS[0].address, "latest"])
    '0x21e19e0c9bab2400000'
    """
    body = json.dumps({"jsonrpc": "2.0", "id": next(_REQUEST_IDS), "method": method, "params": list(params)})
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        error = answer["error"]
        raise RpcError(method, int(error.get("code", 0)), str(error.get("message", "")), error.get("data"))
    return answer.get("result")


def anvil_binary() -> Path:
    """The anvil to run: ``ANVIL_BIN``, else the npm package's, else ``anvil`` on PATH.

    Of the npm package, the native binary is preferred to its Node shim (one process, signals
    straight to anvil, and no Node needed once installed).

    >>> anvil_binary().name
    'anvil'
    """
    configured = os.environ.get("ANVIL_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            raise AnvilError(f"ANVIL_BIN={configured} is not an executable file")
        return Path(configured)
    shim = ROOT / "node_modules" / ".bin" / "anvil"
    if shim.exists():
        native = sorted((ROOT / "node_modules" / "@foundry-rs").glob(f"anvil-{_platform()}-*/bin/anvil"))
        return native[0] if native else shim
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise AnvilError("anvil is not installed: run `npm ci` in the project root (it installs @foundry-rs/anvil "
                     "from package-lock.json), or set ANVIL_BIN to an anvil binary")


def _platform() -> str:
    return {"win32": "win32", "darwin": "darwin"}.get(sys.platform, "linux")


def anvil_argv(port: int, *, host: str = "127.0.0.1", chain_id: int = DEFAULT_CHAIN_ID,
               block_time: float | None = None, state_path: Path | None = None,
               state_interval_s: int | None = None) -> list[str]:
    """The command line `start_anvil` runs (no fork URL: the chain starts empty and stays local).

    >>> anvil_argv(8545)[1:]
    ['--host', '127.0.0.1', '--port', '8545', '--chain-id', '31337', '--accounts', '10', '--mnemonic', ...]
    """
    argv = [str(anvil_binary()), "--host", host, "--port", str(port), "--chain-id", str(chain_id),
            "--accounts", str(len(ANVIL_ACCOUNTS)), "--mnemonic", ANVIL_MNEMONIC, "--color", "never"]
    if block_time is not None:
        argv += ["--block-time", f"{block_time:g}"]
    if state_path is not None:
        argv += ["--state", str(state_path)]
        if state_interval_s:
            argv += ["--state-interval", str(state_interval_s)]
    return argv


@dataclass
class AnvilProcess:
    """A running anvil; a context manager that stops it on exit."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    chain_id: int
    log_path: Path
    state_path: Path | None = None
    _own_log: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def accounts(self) -> tuple[DevAccount, ...]:
        return ANVIL_ACCOUNTS

    def rpc(self, method: str, *params: Any) -> Any:
        """`rpc` against this anvil: ``chain.rpc("evm_mine")``."""
        return rpc(self.url, method, params)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM to the whole group (anvil then writes ``state_path``), SIGKILL if it lingers; idempotent."""
        if self.running():
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process, signal.SIGKILL)  # stragglers of the group (a shim's child)
        code = self.process.wait()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)
        return code

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> AnvilProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # the group anvil leads (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def start_anvil(port: int, *, host: str = "127.0.0.1", chain_id: int = DEFAULT_CHAIN_ID,
                block_time: float | None = None, state_path: Path | None = None, log_path: Path | None = None,
                state_interval_s: int | None = None, timeout_s: float = 30.0) -> AnvilProcess:
    """Start anvil on ``host:port`` and return once it answers ``eth_chainId`` with ``chain_id``.

    Mines a block per transaction unless ``block_time`` (seconds) is given. With ``state_path`` the
    chain is loaded from that file if it exists and written back on stop (and every
    ``state_interval_s`` seconds). Raises `AnvilError` if the port is taken or anvil dies or hangs.

    >>> chain = start_anvil(8545, state_path=Path(".run/chain-state.json"))
    >>> chain.url
    'http://127.0.0.1:8545'
    >>> chain.stop()
    0
    """
    _check_port_free(host, port)
    argv = anvil_argv(port, host=host, chain_id=chain_id, block_time=block_time, state_path=state_path,
                      state_interval_s=state_interval_s)
    own_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    if state_path is not None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "ANVIL_IP_ADDR"}  # --host decides
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    chain = AnvilProcess(process, host, port, chain_id, log_path, state_path, own_log)
    try:
        _wait_until_answering(chain, timeout_s)
    except BaseException:
        chain.stop()  # the error carries the log's tail
        raise
    return chain


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as anvil binds: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise AnvilError(f"cannot start anvil on {host}:{port}: the port is taken ({exc.strerror})") from None


def _wait_until_answering(chain: AnvilProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        code = chain.process.poll()
        if code is not None:
            raise AnvilError(f"anvil exited with code {code} before answering on {chain.url}:\n{chain.log_tail()}")
        try:
            answered = int(rpc(chain.url, "eth_chainId", timeout_s=2), 16)
        except OSError:
            answered = None
        if answered is not None:
            if answered != chain.chain_id:
                raise AnvilError(f"{chain.url} answers chain id {answered}, not {chain.chain_id}")
            return
        if time.monotonic() > deadline:
            raise AnvilError(f"anvil did not answer on {chain.url} within {timeout_s:g} s:\n{chain.log_tail()}")
        time.sleep(0.05)


def ping(url: str, chain_id: int | None = None) -> str:
    """'' when ``url`` answers ``eth_chainId`` (with ``chain_id``, if given), else what went wrong.

    >>> ping("http://127.0.0.1:8545", 31337)
    ''
    """
    try:
        answered = int(rpc(url, "eth_chainId", timeout_s=3), 16)
    except (OSError, ValueError, TypeError, RpcError) as exc:
        return f"{url} does not answer eth_chainId: {exc}"
    if chain_id is not None and answered != chain_id:
        return f"{url} is chain {answered}, not {chain_id}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m marketplace.chain.anvil ping [--url URL] [--chain-id N]``: the compose health check."""
    parser = argparse.ArgumentParser(prog="python -m marketplace.chain.anvil")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("ping", help="exit 0 if the node answers eth_chainId (with --chain-id, if given)")
    check.add_argument("--url", default="http://127.0.0.1:8545")
    check.add_argument("--chain-id", type=int, default=None)
    args = parser.parse_args(argv)
    problem = ping(args.url, args.chain_id)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
