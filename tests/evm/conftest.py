"""Fixtures for the EVM library: where the mainnet blocks are, and one Ray cluster per session.

The 47 shared mainnet blocks are read from ``../shared/data/mainnet`` when present; otherwise
the seven small blocks kept under ``tests/data/mainnet`` (Frontier to Cancun, one with BLOCKHASH)
stand in, so a clone without ``../shared`` still tests every part.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_DATA

LOCAL_DATA = Path(__file__).resolve().parents[1] / "data"


def mainnet_dir() -> Path:
    shared = SHARED_DATA / "mainnet"
    return shared if (shared / "index.json").exists() else LOCAL_DATA / "mainnet"


def mainnet_index() -> list[dict[str, Any]]:
    return json.loads((mainnet_dir() / "index.json").read_text())


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[str]:
    """A private Ray cluster for these tests (stopped after them, so later tests connect to their
    own clusters): four logical CPUs, so the CLI test can start its own
    two shards while the shared pool's two sit idle."""
    from workers.cluster import local_cluster

    with local_cluster(4, namespace="evm-tests") as address:
        yield address


@pytest.fixture(scope="package")
def ray_pool(ray_cluster: str) -> Iterator[Any]:
    """Two long-lived shard actors, reused by every test that loads a block into them."""
    from workers.evm import RayPool

    pool = RayPool(workers=2)
    yield pool
    pool.close()
