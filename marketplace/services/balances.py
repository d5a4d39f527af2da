"""Read-side queries over the escrow ledger, for the API and the pages: a user's position in the
escrow (`account_ledger`), the leases of their wallet, and where the contracts are.

Nothing here writes, and a page view never asks the chain: the rows read (`Wallet`, `Lease`,
`ChainDeployment`) are the chain's events as `services.ledger` mirrored them.

Which chain (`current_chain_id`):

- ``CHAIN_URL`` empty: no chain (``None``). The marketplace moves no money; a position reads all
  zeros with no leases. The API answers ``200`` with ``"chain": null`` and that zero position (the same
  shape as with a chain, so clients need one code path), never an error: having no chain is a
  configuration, not a mistake of the caller.
- ``CHAIN_ID`` set: that id.
- otherwise the chain id of the one recorded escrow deployment (``manage.py deploy_contracts``);
- none recorded: ``None`` as well (nothing is deployed, so there is no ledger to read), rather than a
  question to the node that could hold a page for the client's timeout while the node is down;
- several chains recorded (``CHAIN_URL`` moved): the node's answer, asked once per process, ``None``
  if it does not answer.

Addresses are compared as stored: the ledger keeps the checksummed form the chain's logs decode
to, and `services.accounts.link_wallet` only accepts checksummed addresses.

>>> summary = account_ledger(dave)
>>> summary.chain.chain_id, summary.address, summary.position.available
(31337, '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC', 250000000000000000)
>>> [lease.lease_id for lease in summary.leases()]     # newest first
[12, 7]
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from marketplace.models import Account, ChainDeployment, Lease, LeaseState, Wallet

ESCROW = "LeaseEscrow"
TOKEN = "MarketToken"


def current_chain_id() -> int | None:
    """The id of the chain the marketplace uses, None when it uses none (see the module docstring).

    >>> current_chain_id()      # CHAIN_URL="http://127.0.0.1:8545", one deployment recorded
    31337
    """
    if not settings.CHAIN_URL:
        return None
    if settings.CHAIN_ID:
        return int(settings.CHAIN_ID)
    recorded = set(ChainDeployment.objects.filter(name=ESCROW).values_list("chain_id", flat=True).distinct()[:2])
    if len(recorded) <= 1:
        return int(recorded.pop()) if recorded else None
    return _node_chain_id()


def _node_chain_id() -> int | None:
    from marketplace.chain import context
    from marketplace.chain.client import ChainError

    try:
        return context.chain_id()
    except ChainError:
        return None


def rpc_url_for_users() -> str:
    """The RPC address to print in the commands users run from their own machines.

    ``CHAIN_PUBLIC_URL`` when the settings define one (``CHAIN_URL`` may be a host name only the
    marketplace's containers resolve, or carry a provider's key in its path), else ``CHAIN_URL``
    without any user:password part.
    """
    public = str(getattr(settings, "CHAIN_PUBLIC_URL", "") or "")
    if public:
        return public
    parts = urlsplit(settings.CHAIN_URL)
    if parts.username is None and parts.password is None:
        return settings.CHAIN_URL
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ChainInfo:
    """The chain in use and its contracts (empty addresses: not deployed there yet)."""

    chain_id: int
    escrow: str
    token: str
    rpc_url: str
    min_stake_wei: int | None
    fee_bps: int | None
    unbonding_delay_s: int | None
    paused: bool

    @property
    def deployed(self) -> bool:
        return bool(self.escrow and self.token)


def _int_or_none(value: object) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isascii() and text.isdigit() else None


def chain_info(chain_id: int | None = None) -> ChainInfo | None:
    """The chain in use (or ``chain_id``) with its recorded contracts; None when there is no chain."""
    cid = current_chain_id() if chain_id is None else chain_id
    if cid is None:
        return None
    rows = {row.name: row for row in ChainDeployment.objects.filter(chain_id=cid, name__in=(ESCROW, TOKEN))}
    escrow = rows.get(ESCROW)
    facts = dict(escrow.settings) if escrow is not None else {}
    return ChainInfo(chain_id=cid, escrow=escrow.address if escrow else "",
                     token=rows[TOKEN].address if TOKEN in rows else "", rpc_url=rpc_url_for_users(),
                     min_stake_wei=_int_or_none(facts.get("min_stake")), fee_bps=_int_or_none(facts.get("fee_bps")),
                     unbonding_delay_s=_int_or_none(facts.get("unbonding_delay_s")),
                     paused=bool(facts.get("paused", False)))


@dataclass(frozen=True)
class Position:
    """One wallet's balances in the escrow, in wei (all zero for a wallet the chain never saw)."""

    available: int = 0  # withdrawable now
    reserved: int = 0  # held by open leases, as tenant
    stake: int = 0  # as provider
    lease_cap: int = 0
    deposited: int = 0
    withdrawn: int = 0
    earned: int = 0  # lease payments received, after fees
    spent: int = 0  # lease payments made, fees included
    fees: int = 0  # as treasury
    compensated: int = 0  # slashed stake received, as tenant
    slashed: int = 0  # stake lost, as provider
    registered: bool = False
    unbonding_at: datetime | None = None
    open_leases: int = 0  # as provider

    @classmethod
    def of(cls, row: Wallet | None) -> Position:
        if row is None:
            return cls()
        return cls(available=int(row.available), reserved=int(row.reserved), stake=int(row.stake),
                   lease_cap=int(row.lease_cap), deposited=int(row.deposited), withdrawn=int(row.withdrawn),
                   earned=int(row.earned), spent=int(row.spent), fees=int(row.fees),
                   compensated=int(row.compensated), slashed=int(row.slashed), registered=row.registered,
                   unbonding_at=row.unbonding_at, open_leases=row.open_leases)


@dataclass(frozen=True)
class AccountLedger:
    """A user's escrow position: the chain, their linked wallet ("" if none) and its balances."""

    chain: ChainInfo | None  # None: no chain configured, or nothing deployed on it yet
    address: str
    position: Position
    pending_reservations: int  # lease openings on their way to the chain, not in ``reserved`` yet
    enabled: bool = False  # a chain is configured (CHAIN_URL), deployed or not

    def leases(self) -> QuerySet[Lease]:
        """The wallet's leases as tenant or provider, newest first (none without a chain or wallet)."""
        if self.chain is None or not self.address:
            return Lease.objects.none()
        return leases_of(self.chain.chain_id, self.address)

    def leases_as_tenant(self) -> QuerySet[Lease]:
        """The leases this wallet paid or pays for, newest first."""
        return self.leases().filter(tenant=self.address)

    def leases_as_provider(self) -> QuerySet[Lease]:
        """The leases paying (or that paid) this wallet for its GPUs, newest first."""
        return self.leases().filter(provider=self.address)

    def open_leases_as_tenant(self) -> QuerySet[Lease]:
        """The reservations: leases this wallet pays for that are still open, newest first."""
        return self.leases_as_tenant().filter(state=LeaseState.OPEN)


def leases_of(chain_id: int, address: str) -> QuerySet[Lease]:
    """Leases with ``address`` as tenant or provider on one chain, newest first."""
    return Lease.objects.filter(Q(tenant=address) | Q(provider=address), chain_id=chain_id).order_by("-id")


def lease_role(lease: Lease, address: str) -> str:
    """``"tenant"``, ``"provider"`` or ``"both"``: what ``address`` was in the lease."""
    tenant, provider = lease.tenant == address, lease.provider == address
    if tenant and provider:
        return "both"
    return "tenant" if tenant else "provider"


def linked_wallet(user: User) -> tuple[str, datetime | None]:
    """The user's linked wallet address ("" when none) and when it was linked."""
    row = Account.objects.filter(user=user).values_list("wallet_address", "wallet_linked_at").first()
    return (row[0], row[1]) if row else ("", None)


def account_ledger(user: User, chain_id: int | None = None) -> AccountLedger:
    """The user's position in the escrow on the chain in use (or ``chain_id``), from the ledger rows."""
    address, _ = linked_wallet(user)
    chain = chain_info(chain_id)
    enabled = bool(settings.CHAIN_URL)
    if chain is None or not address:
        return AccountLedger(chain=chain, address=address, position=Position(), pending_reservations=0,
                             enabled=enabled)
    row = Wallet.objects.filter(chain_id=chain.chain_id, address=address).first()
    return AccountLedger(chain=chain, address=address, position=Position.of(row),
                         pending_reservations=_pending(chain.chain_id, address), enabled=enabled)


def _pending(chain_id: int, address: str) -> int:
    from marketplace.services import leases

    return leases.pending_reservations(chain_id, address)
