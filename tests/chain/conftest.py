"""Fixtures for tests that talk to a chain: one real anvil per session, and cheap isolation per test.

``anvil`` is shared by the whole session (starting one takes a fraction of a second, but deploying
contracts into each would not); a test that changes chain state and must not leak it asks for
``anvil_snapshot`` instead, which reverts everything it did (``evm_snapshot`` / ``evm_revert``).
"""
from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marketplace.chain.anvil import AnvilError, AnvilProcess, start_anvil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_test_anvil(log_path: Path, **options: Any) -> AnvilProcess:
    """An anvil on a free loopback port (another free one if that port is taken meanwhile)."""
    for attempt in range(3):
        try:
            return start_anvil(free_port(), log_path=log_path, **options)
        except AnvilError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    """A fresh anvil (chain id 31337, the ten dev accounts funded) for the session."""
    chain = start_test_anvil(tmp_path_factory.mktemp("anvil") / "anvil.log")
    yield chain
    chain.stop()


@pytest.fixture
def anvil_snapshot(anvil: AnvilProcess) -> Iterator[AnvilProcess]:
    """The session's anvil, with every change the test makes to the chain undone afterwards."""
    snapshot = anvil.rpc("evm_snapshot")
    yield anvil
    assert anvil.rpc("evm_revert", snapshot) is True, "evm_revert refused the test's snapshot"


# --- a deployed marketplace on the session's anvil ----------------------------------------------

from marketplace.chain.anvil import ANVIL_ACCOUNTS  # noqa: E402

DEPLOYER, OPERATOR, DEVELOPER_WALLET, PROVIDER_WALLET, TREASURY, STRANGER = ANVIL_ACCOUNTS[:6]
MIN_STAKE = 10**18
FEE_BPS = 250


@pytest.fixture
def chain(anvil_snapshot: AnvilProcess, settings: Any, db: None) -> Any:
    """Token and escrow freshly deployed (undone after the test), the marketplace configured to
    use them with ANVIL_ACCOUNTS[1] as its signer, and no Celery (tests drive the tasks' functions)."""
    from marketplace.chain import context
    from marketplace.chain.deploy import DeployParams, deploy

    settings.CHAIN_URL = anvil_snapshot.url
    settings.CHAIN_OPERATOR_KEY = OPERATOR.private_key
    settings.CHAIN_CONFIRMATIONS = 0
    settings.DISPATCH_QUEUE_ENABLED = False
    deploy(context.client(), deployer_key=DEPLOYER.private_key, operator=OPERATOR.address,
           params=DeployParams(fee_bps=FEE_BPS, min_stake=MIN_STAKE, unbonding_delay_s=60, settle_window_s=600,
                               treasury=TREASURY.address))
    return context.connect()
