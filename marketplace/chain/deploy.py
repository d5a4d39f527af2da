"""Deploying the token and the escrow, and recording where they are per chain id.

Idempotent: when the database already records a deployment on this chain and the code is there,
nothing is sent. A chain that lost its contracts (a restarted anvil) gets new ones, and what the
ledger learnt from the old ones is forgotten.

>>> deploy(client, deployer_key=KEY, operator="0x7099...", params=DeployParams())
{'MarketToken': '0x5FbD...', 'LeaseEscrow': '0xe7f1...'}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction

from marketplace.chain.client import ChainClient, Contract, Receipt, address_of
from marketplace.models import ChainDeployment, ChainSigner, ChainTx, TxState
from marketplace.services import ledger

ROLES = ("OPERATOR_ROLE", "ARBITER_ROLE")  # what the marketplace's one signer may do


@dataclass(frozen=True)
class DeployParams:
    fee_bps: int = 250
    min_stake: int = 10**18
    unbonding_delay_s: int = 7 * 24 * 3600
    settle_window_s: int = 3600
    treasury: str = ""  # "": the deployer
    guardian: str = ""  # "": the deployer
    token: str = ""  # "": deploy the test token

    @classmethod
    def from_settings(cls) -> DeployParams:
        return cls(fee_bps=settings.CHAIN_FEE_BPS, min_stake=settings.CHAIN_MIN_STAKE_WEI,
                   unbonding_delay_s=settings.CHAIN_UNBONDING_DELAY_S, settle_window_s=settings.CHAIN_SETTLE_WINDOW_S,
                   treasury=settings.CHAIN_TREASURY, guardian=settings.CHAIN_GUARDIAN,
                   token=settings.CHAIN_TOKEN_ADDRESS)


def existing(client: ChainClient) -> dict[str, str] | None:
    """The recorded deployment on the client's chain if its code is really there, else None."""
    rows = {row.name: row.address for row in ChainDeployment.objects.filter(chain_id=client.chain_id())}
    if {"LeaseEscrow", "MarketToken"} <= rows.keys() and all(
            len(client.w3.eth.get_code(address)) > 0 for address in rows.values()):
        return rows
    return None


def deploy(client: ChainClient, *, deployer_key: str, operator: str, params: DeployParams) -> dict[str, str]:
    """Deploy (unless already there), grant the operator its roles, record the addresses."""
    found = existing(client)
    if found is not None:
        return found
    deployer = address_of(deployer_key)
    token, token_block, token_tx = _token(client, deployer_key, deployer, params)
    escrow, receipt = client.deploy(
        deployer_key, "LeaseEscrow", token.address, deployer, params.treasury or deployer, params.fee_bps,
        params.min_stake, params.unbonding_delay_s, params.settle_window_s)
    for role in ROLES:
        client.transact(deployer_key, escrow, "grantRole", client.call(escrow, role), operator)
    client.transact(deployer_key, escrow, "grantRole", client.call(escrow, "GUARDIAN_ROLE"),
                    params.guardian or deployer)
    facts = {**asdict(params), "treasury": params.treasury or deployer, "guardian": params.guardian or deployer,
             "token": token.address, "operator": operator, "admin": deployer}
    _record(client.chain_id(), escrow, receipt, token, token_block, token_tx, facts)
    return {"MarketToken": token.address, "LeaseEscrow": escrow.address}


def _token(client: ChainClient, key: str, deployer: str, params: DeployParams) -> tuple[Contract, int, str]:
    if params.token:
        return client.contract("MarketToken", params.token), 0, ""  # any ERC-20: only its ERC-20 ABI is used
    token, receipt = client.deploy(key, "MarketToken", deployer)
    return token, receipt.block_number, receipt.tx_hash


@transaction.atomic
def _record(chain_id: int, escrow: Contract, receipt: Receipt, token: Contract, token_block: int, token_tx: str,
            facts: dict[str, object]) -> None:
    ledger.forget(chain_id)  # anything learnt from earlier contracts on this chain no longer holds
    ChainDeployment.objects.filter(chain_id=chain_id).delete()
    # Calls meant for the old contracts will never happen, and the signer's nonce starts again from
    # what this chain says (a restarted anvil is a new chain with the same id).
    ChainTx.objects.filter(chain_id=chain_id, state__in=(TxState.QUEUED, TxState.SIGNED, TxState.SENT)).update(
        state=TxState.CANCELLED, error="the contracts were redeployed", handled=True)
    ChainSigner.objects.filter(chain_id=chain_id).delete()
    # The follower mirrors `treasury` and `paused` from events; the rest are as deployed.
    settings_ = {key: value for key, value in facts.items() if key != "treasury"}
    settings_["min_stake"] = str(facts["min_stake"])
    ChainDeployment.objects.create(chain_id=chain_id, name="LeaseEscrow", address=escrow.address,
                                   block_number=receipt.block_number, tx_hash=receipt.tx_hash, settings=settings_)
    ChainDeployment.objects.create(chain_id=chain_id, name="MarketToken", address=token.address,
                                   block_number=token_block, tx_hash=token_tx, settings={})
