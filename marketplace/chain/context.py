"""Which chain and contracts this marketplace uses, from settings and the recorded deployments.

>>> chain = connect()            # None when CHAIN_URL is empty (no chain: nothing is paid)
>>> chain.escrow.address
'0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512'
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from marketplace.chain.client import ChainClient, Contract, address_of
from marketplace.models import ChainDeployment


class NotDeployed(Exception):
    """The contracts are not deployed on the configured chain (run ``manage.py deploy_contracts``)."""


@dataclass(frozen=True)
class Chain:
    client: ChainClient
    chain_id: int
    escrow: Contract
    token: Contract
    deployment: ChainDeployment


def enabled() -> bool:
    """Whether the marketplace moves money on a chain (``CHAIN_URL`` is set)."""
    return bool(settings.CHAIN_URL)


@lru_cache(maxsize=4)
def _client(url: str) -> ChainClient:
    return ChainClient(url)


def client() -> ChainClient:
    return _client(settings.CHAIN_URL)


def chain_id() -> int:
    """The configured chain's id (asked once per process)."""
    return client().chain_id()


def connect() -> Chain | None:
    """The client and the deployed escrow and token; None when no chain is configured."""
    if not enabled():
        return None
    node = client()
    cid = node.chain_id()
    rows = {row.name: row for row in ChainDeployment.objects.filter(chain_id=cid)}
    if "LeaseEscrow" not in rows or "MarketToken" not in rows:
        raise NotDeployed(f"the contracts are not deployed on chain {cid}: run `python manage.py deploy_contracts`")
    return Chain(client=node, chain_id=cid, escrow=node.contract("LeaseEscrow", rows["LeaseEscrow"].address),
                 token=node.contract("MarketToken", rows["MarketToken"].address), deployment=rows["LeaseEscrow"])


def operator_address() -> str:
    """The marketplace signer's address (from ``CHAIN_OPERATOR_KEY``; the key is never logged)."""
    if not settings.CHAIN_OPERATOR_KEY:
        raise NotDeployed("CHAIN_OPERATOR_KEY is not set: the marketplace cannot sign")
    return address_of(settings.CHAIN_OPERATOR_KEY)
