"""marketplace.chain.anvil: a local anvil that starts, answers, funds the dev accounts and leaves nothing behind."""
from __future__ import annotations

import re
import time
from typing import Any

import psutil
import pytest

from marketplace.chain import anvil as anvil_module
from marketplace.chain.anvil import (ANVIL_ACCOUNTS, DEV_BALANCE_WEI, AnvilError, RpcError, anvil_argv, main, rpc,
                                     start_anvil)
from tests.chain.conftest import free_port, start_test_anvil

TEN_ETH = hex(10 * 10**18)


def test_it_answers_as_chain_31337_with_the_ten_dev_accounts_funded(anvil):
    assert anvil.url == f"http://127.0.0.1:{anvil.port}"
    assert rpc(anvil.url, "eth_chainId") == "0x7a69"
    assert rpc(anvil.url, "eth_accounts") == [account.address.lower() for account in ANVIL_ACCOUNTS]
    for account in ANVIL_ACCOUNTS:
        assert int(anvil.rpc("eth_getBalance", account.address, "latest"), 16) == DEV_BALANCE_WEI


def test_the_documented_private_keys_are_the_ones_anvil_derives(anvil):
    printed = anvil.log_path.read_text().split("Private Keys", 1)[1].split("Wallet", 1)[0]
    assert re.findall(r"0x[0-9a-f]{64}", printed) == [account.private_key for account in ANVIL_ACCOUNTS]


def test_it_never_forks_and_binds_loopback(anvil):
    argv = anvil_argv(8545)
    assert not any(part.startswith(("--fork", "--rpc-url", "-f")) for part in argv)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    listening = {conn.laddr.ip for conn in psutil.Process(anvil.process.pid).net_connections()
                 if conn.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}


def test_a_json_rpc_error_is_raised_with_its_code(anvil):
    with pytest.raises(RpcError) as raised:
        anvil.rpc("eth_noSuchMethod")
    assert raised.value.code == -32601 and raised.value.method == "eth_noSuchMethod"


def test_stop_ends_every_process_it_started_and_is_idempotent(tmp_path):
    chain = start_test_anvil(tmp_path / "anvil.log")
    group = [chain.process.pid] + [child.pid for child in psutil.Process(chain.process.pid).children(recursive=True)]
    assert chain.stop() == 0
    assert chain.stop() == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in group)
    with pytest.raises(OSError):
        rpc(chain.url, "eth_chainId", timeout_s=1)


def test_the_context_manager_stops_it(tmp_path):
    with start_test_anvil(tmp_path / "anvil.log") as chain:
        assert chain.running()
    assert not chain.running()


def test_a_taken_port_fails_clearly(anvil):
    with pytest.raises(AnvilError, match=rf"cannot start anvil on 127.0.0.1:{anvil.port}: the port is taken"):
        start_anvil(anvil.port)


def test_an_anvil_that_dies_at_start_fails_with_its_output(tmp_path, monkeypatch):
    broken = tmp_path / "anvil"
    broken.write_text("#!/bin/sh\necho 'error: something is wrong' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("ANVIL_BIN", str(broken))
    with pytest.raises(AnvilError, match=r"(?s)anvil exited with code 3 before answering.*something is wrong"):
        start_anvil(free_port(), timeout_s=10)


def test_a_missing_anvil_says_to_run_npm_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("ANVIL_BIN", raising=False)
    monkeypatch.setattr(anvil_module, "ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnvilError, match=r"run `npm ci` in the project root"):
        anvil_module.anvil_binary()


def test_the_npm_packages_native_binary_is_preferred_to_its_node_shim(monkeypatch):
    monkeypatch.delenv("ANVIL_BIN", raising=False)
    binary = anvil_module.anvil_binary()
    assert binary.parent.parent.name.startswith("anvil-") and binary.name == "anvil"


def test_state_survives_a_restart_when_a_state_file_is_given(tmp_path):
    state = tmp_path / "chain" / "state.json"
    with start_test_anvil(tmp_path / "first.log", state_path=state) as chain:
        chain.rpc("anvil_mine", "0x5")
        chain.rpc("anvil_setBalance", ANVIL_ACCOUNTS[9].address, TEN_ETH)
    assert state.is_file()
    with start_test_anvil(tmp_path / "second.log", state_path=state) as chain:
        assert int(chain.rpc("eth_blockNumber"), 16) >= 5
        assert chain.rpc("eth_getBalance", ANVIL_ACCOUNTS[9].address, "latest") == TEN_ETH


def test_with_a_block_time_blocks_come_without_transactions(tmp_path):
    with start_test_anvil(tmp_path / "anvil.log", block_time=0.2) as chain:
        deadline = time.monotonic() + 10
        while int(chain.rpc("eth_blockNumber"), 16) < 2:
            assert time.monotonic() < deadline, "no blocks were mined"
            time.sleep(0.1)


def test_the_ping_command_checks_the_node_and_its_chain_id(anvil, capsys):
    assert main(["ping", "--url", anvil.url, "--chain-id", "31337"]) == 0
    assert main(["ping", "--url", anvil.url, "--chain-id", "1"]) == 1
    assert "is chain 31337, not 1" in capsys.readouterr().err
    assert main(["ping", "--url", f"http://127.0.0.1:{free_port()}"]) == 1


# The next two run in this order: the first changes the chain through `anvil_snapshot`, the second sees none of it.
_BEFORE: dict[str, Any] = {}


def test_anvil_snapshot_lets_a_test_change_the_chain(anvil_snapshot):
    _BEFORE["block"] = anvil_snapshot.rpc("eth_blockNumber")
    anvil_snapshot.rpc("anvil_setBalance", ANVIL_ACCOUNTS[8].address, "0x1")
    anvil_snapshot.rpc("anvil_mine", "0x3")
    assert anvil_snapshot.rpc("eth_getBalance", ANVIL_ACCOUNTS[8].address, "latest") == "0x1"


def test_anvil_snapshot_undid_the_previous_tests_changes(anvil):
    assert int(anvil.rpc("eth_getBalance", ANVIL_ACCOUNTS[8].address, "latest"), 16) == DEV_BALANCE_WEI
    assert anvil.rpc("eth_blockNumber") == _BEFORE.get("block", anvil.rpc("eth_blockNumber"))
