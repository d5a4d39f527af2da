"""The shell commands the pages show users to run from their own wallets (Foundry's ``cast``).

The marketplace never holds a user's key: deposits, lease caps, stakes and withdrawals are the
user's own transactions. Each command is ready to paste: the key comes from the ``PRIVATE_KEY``
environment variable (never typed into a page), amounts the user chooses from ``AMOUNT`` / ``CAP``,
and everything else (contract addresses, the RPC address, amounts we know) is filled in.

>>> withdraw(chain, 750)
'cast send 0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512 "withdraw(uint256)" 750 --private-key "$PRIVATE_KEY" --rpc-url http://127.0.0.1:8545'
"""
from __future__ import annotations

import shlex

from marketplace.services.balances import ChainInfo

KEY = '--private-key "$PRIVATE_KEY"'
AMOUNT = '"$AMOUNT"'
CAP = '"$CAP"'
_SPECIAL_IN_DOUBLE_QUOTES = set('"$`\\!')


def quoted(text: str) -> str:
    """``text`` as one shell word: in double quotes when that is safe (it reads best), else shlex's."""
    return f'"{text}"' if not _SPECIAL_IN_DOUBLE_QUOTES & set(text) else shlex.quote(text)


def send(chain: ChainInfo, contract: str, signature: str, *args: str | int) -> str:
    """``cast send`` of one function of ``contract``, signed by the user's own key."""
    words = ["cast send", contract, quoted(signature), *(str(arg) for arg in args), KEY,
             f"--rpc-url {shlex.quote(chain.rpc_url)}"]
    return " ".join(words)


def sign_link_message(message: str) -> str:
    """``cast wallet sign`` of the wallet-link message (EIP-191 personal_sign, as `link_wallet` checks)."""
    return f"cast wallet sign {KEY} {quoted(message)}"


def withdraw(chain: ChainInfo, amount: int | str) -> str:
    return send(chain, chain.escrow, "withdraw(uint256)", amount)


def approve(chain: ChainInfo, amount: int | str) -> str:
    """Let the escrow pull ``amount`` of the token from the wallet (before deposit or stake)."""
    return send(chain, chain.token, "approve(address,uint256)", chain.escrow, amount)


def deposit(chain: ChainInfo, amount: int | str = AMOUNT) -> list[str]:
    return [approve(chain, amount), send(chain, chain.escrow, "deposit(uint256)", amount)]


def set_lease_cap(chain: ChainInfo, cap: int | str = CAP) -> str:
    return send(chain, chain.escrow, "setLeaseCap(uint256)", cap)


def register_provider(chain: ChainInfo, stake: int | str) -> list[str]:
    return [approve(chain, stake), send(chain, chain.escrow, "registerProvider(uint256)", stake)]


def add_stake(chain: ChainInfo, amount: int | str = AMOUNT) -> list[str]:
    return [approve(chain, amount), send(chain, chain.escrow, "addStake(uint256)", amount)]


def start_unbonding(chain: ChainInfo) -> str:
    return send(chain, chain.escrow, "startUnbonding()")


def complete_unbonding(chain: ChainInfo) -> str:
    return send(chain, chain.escrow, "completeUnbonding()")
