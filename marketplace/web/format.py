"""Formatting helpers shared by pages and API (display only: never used for arithmetic)."""
from __future__ import annotations

from decimal import Decimal

WEI_PER_ETH = 10**18


def wei_to_eth(wei: int | Decimal) -> str:
    """Exact decimal ETH for an integer amount of wei, without trailing zeros.

    >>> wei_to_eth(1_500_000_000_000_000)
    '0.0015'
    """
    whole, fraction = divmod(int(wei), WEI_PER_ETH)
    if not fraction:
        return str(whole)
    return f"{whole}.{fraction:018d}".rstrip("0")
