"""What a developer's or provider's own wallet does with the escrow, for the wallets we hold the
keys of: the demo accounts (`make run`), the tests and the gas script. Real users sign these
calls in their own wallets; the marketplace never holds their keys.

>>> fund_tenant(chain, minter_key=DEPLOYER, tenant_key=DEV, deposit=10**20, lease_cap=10**19)
"""
from __future__ import annotations

from marketplace.chain.client import Receipt, address_of
from marketplace.chain.context import Chain


def mint(chain: Chain, minter_key: str, to: str, amount: int) -> Receipt:
    """Mint test tokens (only the test token's owner, the deployer, can)."""
    return chain.client.transact(minter_key, chain.token, "mint", to, amount)


def deposit(chain: Chain, key: str, amount: int) -> Receipt:
    """Approve the escrow for ``amount`` and deposit it; the deposit's receipt."""
    chain.client.transact(key, chain.token, "approve", chain.escrow.address, amount)
    return chain.client.transact(key, chain.escrow, "deposit", amount)


def set_lease_cap(chain: Chain, key: str, cap: int) -> Receipt:
    return chain.client.transact(key, chain.escrow, "setLeaseCap", cap)


def register_provider(chain: Chain, key: str, stake: int) -> Receipt:
    chain.client.transact(key, chain.token, "approve", chain.escrow.address, stake)
    return chain.client.transact(key, chain.escrow, "registerProvider", stake)


def withdraw(chain: Chain, key: str, amount: int) -> Receipt:
    return chain.client.transact(key, chain.escrow, "withdraw", amount)


def withdrawable(chain: Chain, address: str) -> int:
    return int(chain.client.call(chain.escrow, "available", address))


def fund_tenant(chain: Chain, *, minter_key: str, tenant_key: str, deposit_wei: int, lease_cap: int) -> None:
    """Give a developer's wallet tokens, deposit them and set its lease cap."""
    mint(chain, minter_key, address_of(tenant_key), deposit_wei)
    deposit(chain, tenant_key, deposit_wei)
    set_lease_cap(chain, tenant_key, lease_cap)


def fund_provider(chain: Chain, *, minter_key: str, provider_key: str, stake: int) -> None:
    """Give a provider's wallet tokens and register it with them as stake."""
    mint(chain, minter_key, address_of(provider_key), stake)
    register_provider(chain, provider_key, stake)
