"""The escrow's pages through Django's test client: linking a wallet on the account page, a
provider's earnings, a developer's balance and a job's payment block, against ledger rows written by
`services.ledger.apply_event` (see `tests.web.escrow`)."""
from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from marketplace.models import Account, Job
from marketplace.services import jobs
from marketplace.services.accounts import sign_wallet_link, wallet_link_message
from tests.conftest import Person
from tests.web.escrow import (
    CHAIN_ID,
    DEPOSIT,
    DEVELOPER_KEY,
    ESCROW,
    LEASE_CAP,
    MIN_STAKE,
    OTHER_KEY,
    PROVIDER_STAKE,
    PROVIDER_WITHDRAWAL,
    TOKEN,
    UNUSED_RPC,
    Escrow,
    Market,
    funded_developer,
    market,
    staked_provider,
)

DEV = EthAccount.from_key(DEVELOPER_KEY)


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def between(page: str, start: str, end: str = "</section>") -> str:
    rest = page[page.index(start):]
    return rest[:rest.index(end)]


def field_errors(page: str, field: str) -> str:
    rest = page[page.index(f'name="{field}"'):]
    return rest[:rest.index("</div>")]


@pytest.fixture
def escrow(settings: Any, monkeypatch: pytest.MonkeyPatch, db: None) -> Escrow:
    return Escrow.configure(settings, monkeypatch)


@pytest.fixture
def the_market(escrow: Escrow, provider: Person, developer: Person) -> Market:
    return market(escrow, provider, developer)


# --- navigation ----------------------------------------------------------------------------------

def test_providers_find_earnings_and_developers_find_their_balance_in_the_nav(provider_web: Client,
                                                                               developer_web: Client) -> None:
    provider_page, developer_page = text(provider_web.get("/nodes/")), text(developer_web.get("/jobs/"))
    assert 'href="/earnings/"' in provider_page and 'href="/balance/"' not in provider_page
    assert 'href="/balance/"' in developer_page and 'href="/earnings/"' not in developer_page


@pytest.mark.parametrize("url", ["/earnings/", "/balance/"])
def test_anonymous_visitors_are_sent_to_log_in(client: Client, db: None, url: str) -> None:
    assertRedirects(client.get(url), f"/login/?next={url}", fetch_redirect_response=False)


def test_each_money_page_belongs_to_its_role(provider_web: Client, developer_web: Client) -> None:
    assert developer_web.get("/earnings/").status_code == 403
    assert provider_web.get("/balance/").status_code == 403


# --- the wallet on the account page ----------------------------------------------------------------

def test_the_account_page_offers_to_link_a_wallet(developer_web: Client) -> None:
    page = text(developer_web.get("/account/"))
    section = between(page, 'id="wallet"')
    assert "none yet" in section and 'name="address"' in section and 'name="signature"' in section
    assert "Show the message to sign" in section and "never sees your key" in section


def test_asking_for_the_message_shows_it_exactly_with_a_cast_command(developer_web: Client,
                                                                     developer: Person) -> None:
    response = developer_web.post("/account/wallet/", {"address": DEV.address, "signature": "", "step": "message"})
    assert response.status_code == 200
    page = text(response)
    message = wallet_link_message(developer.user, DEV.address)
    assert f'<pre class="wrap" id="wallet-message">{message}</pre>' in page
    assert f'cast wallet sign --private-key "$PRIVATE_KEY" "{message}"' in page
    assert 'class="error"' not in between(page, 'id="wallet"')  # asking is not a mistake
    assert f'value="{DEV.address}"' in page  # the address stays in the form for the next step
    assert Account.objects.get(user=developer.user).wallet_address == ""


def test_linking_without_a_signature_asks_for_it_and_shows_the_message(developer_web: Client,
                                                                       developer: Person) -> None:
    page = text(developer_web.post("/account/wallet/", {"address": DEV.address, "signature": ""}))
    assert "paste the signature" in field_errors(page, "signature")
    assert wallet_link_message(developer.user, DEV.address) in page


@pytest.mark.parametrize("address, words", [
    ("0x12345", "not an EVM address"),
    (DEV.address.lower(), f"did you mean {DEV.address}"),
])
@pytest.mark.parametrize("step", ["message", ""])
def test_a_bad_address_is_explained_next_to_the_field(developer_web: Client, developer: Person, address: str,
                                                      words: str, step: str) -> None:
    _, signature = sign_wallet_link(developer.user, DEVELOPER_KEY)
    page = text(developer_web.post("/account/wallet/", {"address": address, "signature": signature, "step": step}))
    assert words in field_errors(page, "address")
    assert 'id="wallet-message"' not in page
    assert Account.objects.get(user=developer.user).wallet_address == ""


@pytest.mark.parametrize("signature, words", [
    ("0x1234", "not a valid 65-byte hex signature"),
    ("0x" + "zz" * 65, "not a valid 65-byte hex signature"),
])
def test_a_malformed_signature_is_explained_next_to_the_field(developer_web: Client, developer: Person,
                                                              signature: str, words: str) -> None:
    page = text(developer_web.post("/account/wallet/", {"address": DEV.address, "signature": signature}))
    assert words in field_errors(page, "signature")
    assert Account.objects.get(user=developer.user).wallet_address == ""


def test_a_signature_from_another_wallet_names_the_signer(developer_web: Client, developer: Person) -> None:
    message = encode_defunct(text=wallet_link_message(developer.user, DEV.address))
    signature = "0x" + bytes(EthAccount.from_key(OTHER_KEY).sign_message(message).signature).hex()
    page = text(developer_web.post("/account/wallet/", {"address": DEV.address, "signature": signature}))
    assert f"made by {EthAccount.from_key(OTHER_KEY).address}, not {DEV.address}" in field_errors(page, "signature")
    assert wallet_link_message(developer.user, DEV.address) in page  # so the right wallet can sign it now


def test_the_right_signature_links_the_wallet(developer_web: Client, developer: Person) -> None:
    address, signature = sign_wallet_link(developer.user, DEVELOPER_KEY)
    response = developer_web.post("/account/wallet/", {"address": f" {address} ", "signature": signature})
    assertRedirects(response, "/account/#wallet", fetch_redirect_response=False)
    page = text(developer_web.get("/account/"))
    assert f"Wallet {address} is linked to your account." in page
    assert f'<code class="address" id="linked-wallet">{address}</code>' in page
    assert Account.objects.get(user=developer.user).wallet_address == address


def test_linking_needs_a_post_with_a_csrf_token(developer: Person) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(developer.user)
    address, signature = sign_wallet_link(developer.user, DEVELOPER_KEY)
    assert strict.post("/account/wallet/", {"address": address, "signature": signature}).status_code == 403
    assert strict.get("/account/wallet/").status_code == 405
    assert Account.objects.get(user=developer.user).wallet_address == ""


# --- without a chain -----------------------------------------------------------------------------

def test_without_a_chain_the_money_pages_say_so_and_show_zeros(provider_web: Client,
                                                               developer_web: Client) -> None:
    for client, url in ((provider_web, "/earnings/"), (developer_web, "/balance/")):
        page = text(client.get(url))
        assert "runs without a chain" in page and "cast send" not in page
        assert '<span class="amount">0 wei' in page


def test_without_a_chain_a_job_page_has_no_payment_block(developer_web: Client, developer: Person) -> None:
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    assertNotContains(developer_web.get(f"/jobs/{job.pk}/"), 'id="payment"')


# --- a provider's earnings -------------------------------------------------------------------------

def test_earnings_show_stake_earnings_and_the_contracts(the_market: Market, provider_web: Client) -> None:
    m = the_market
    page = text(provider_web.get("/earnings/"))
    position = between(page, 'id="position"', "</dl>")
    for name, value in (("stake", PROVIDER_STAKE), ("earned", m.provider_earned), ("available", m.provider_available),
                        ("withdrawn", PROVIDER_WITHDRAWAL), ("slashed", 0)):
        assert re.search(rf'id="{name}"><span class="amount">{value} wei', position), name
    assert 'id="open-leases">1<' in position and "yes, taking leases" in position
    assert f'<code class="address" id="wallet-address">{m.provider_wallet}</code>' in page
    assert f'id="escrow-address">{ESCROW}<' in page and f'id="token-address">{TOKEN}<' in page
    assert f"<dt>Chain id</dt><dd>{CHAIN_ID}</dd>" in page and "2.5 %" in page


def test_earnings_give_the_exact_withdraw_and_stake_commands(the_market: Market, provider_web: Client) -> None:
    page = text(provider_web.get("/earnings/"))
    assert (f'cast send {ESCROW} "withdraw(uint256)" {the_market.provider_available} --private-key "$PRIVATE_KEY" '
            f"--rpc-url {UNUSED_RPC}") in page
    assert f'cast send {TOKEN} "approve(address,uint256)" {ESCROW} "$AMOUNT"' in page
    assert f'cast send {ESCROW} "addStake(uint256)" "$AMOUNT"' in page
    assert "registerProvider" not in page  # already registered


def test_an_unregistered_provider_is_told_how_to_register(escrow: Escrow, provider: Person,
                                                          provider_web: Client) -> None:
    Escrow.link(provider, OTHER_KEY)
    page = text(provider_web.get("/earnings/"))
    assert f'cast send {ESCROW} "registerProvider(uint256)" {MIN_STAKE}' in page
    assert "Nothing to withdraw yet." in page and "no: register with a stake" in page


def test_earnings_list_the_providers_leases_with_full_transaction_hashes(the_market: Market,
                                                                         provider_web: Client) -> None:
    m = the_market
    page = text(provider_web.get("/earnings/"))
    table = between(page, '<table class="leases">', "</table>")
    assert table.index(f'id="lease-{m.open.lease_id}"') < table.index(f'id="lease-{m.settled.lease_id}"')
    settled = between(table, f'id="lease-{m.settled.lease_id}"', "</tr>")
    assert f"job {m.settled_job.pk}" in settled and ">settled<" in settled
    assert f"{m.payment} wei" in settled and f"{m.fee} wei" in settled
    assert f'<code class="hash">{m.settled.open_tx}</code>' in settled
    assert f'<code class="hash">{m.settled.close_tx}</code>' in settled
    assert 'href="/jobs/' not in table  # the developer's job page is not the provider's


def test_a_provider_without_a_wallet_is_sent_to_link_one(escrow: Escrow, provider_web: Client) -> None:
    page = text(provider_web.get("/earnings/"))
    assert "Link your wallet" in page and 'href="/account/#wallet"' in page and "No leases yet" in page


# --- a developer's balance -------------------------------------------------------------------------

def test_the_balance_shows_available_reserved_cap_and_spend(the_market: Market, developer_web: Client) -> None:
    m = the_market
    position = between(text(developer_web.get("/balance/")), 'id="position"', "</dl>")
    for name, value in (("available", m.developer_available), ("reserved", m.reserved_each),
                        ("lease-cap", LEASE_CAP), ("deposited", DEPOSIT), ("spent", m.payment),
                        ("compensated", 0), ("withdrawn", 0)):
        assert re.search(rf'id="{name}"><span class="amount">{value} wei', position), name


def test_the_balance_gives_the_deposit_cap_and_withdraw_commands(the_market: Market,
                                                                 developer_web: Client) -> None:
    page = text(developer_web.get("/balance/"))
    rpc = f'--private-key "$PRIVATE_KEY" --rpc-url {UNUSED_RPC}'
    assert f'cast send {TOKEN} "approve(address,uint256)" {ESCROW} "$AMOUNT" {rpc}' in page
    assert f'cast send {ESCROW} "deposit(uint256)" "$AMOUNT" {rpc}' in page
    assert f'cast send {ESCROW} "setLeaseCap(uint256)" "$CAP" {rpc}' in page
    assert f'cast send {ESCROW} "withdraw(uint256)" {the_market.developer_available} {rpc}' in page


def test_the_balance_lists_reservations_and_spend_per_job(the_market: Market, developer_web: Client) -> None:
    m = the_market
    page = text(developer_web.get("/balance/"))
    reservations = between(page, 'id="reservations"', "</table>")
    assert f'id="reservation-{m.open.lease_id}"' in reservations
    assert f'id="reservation-{m.settled.lease_id}"' not in reservations
    assert f'href="/jobs/{m.open_job.pk}/"' in reservations
    spend = between(page, 'id="leases"', "</table>")
    settled = between(spend, f'id="lease-{m.settled.lease_id}"', "</tr>")
    assert f'href="/jobs/{m.settled_job.pk}/"' in settled
    for value in (m.reserved_each, m.payment, m.fee, m.reserved_each - m.payment):
        assert f"{value} wei" in settled
    assert m.settled.open_tx in settled and m.settled.close_tx in settled


def test_the_balance_pages_its_leases(the_market: Market, developer_web: Client, monkeypatch: Any) -> None:
    from marketplace.web import views

    monkeypatch.setattr(views, "LIST_PAGE_SIZE", 1)
    first = text(developer_web.get("/balance/"))
    assert "Page 1 of 2" in first
    second = text(developer_web.get("/balance/?page=2"))
    assert f'id="lease-{the_market.settled.lease_id}"' in between(second, 'id="leases"', "</table>")


def test_a_wallet_shared_with_another_account_does_not_link_to_its_jobs(the_market: Market,
                                                                        other_developer: Person) -> None:
    from tests.web.conftest import signed_in

    Escrow.link(other_developer, DEVELOPER_KEY)  # the same wallet, signed for a second account
    page = text(signed_in(other_developer).get("/balance/"))
    assert f"job {the_market.settled_job.pk}" in page and f'href="/jobs/{the_market.settled_job.pk}/"' not in page


# --- a job's payment block -------------------------------------------------------------------------

def test_a_job_page_shows_its_settled_lease(the_market: Market, developer_web: Client) -> None:
    m = the_market
    block = between(text(developer_web.get(f"/jobs/{m.settled_job.pk}/")), 'id="payment"')
    assert 'id="lease-state">settled<' in block
    for name, value in (("reserved", m.reserved_each), ("paid", m.payment), ("fee", m.fee),
                        ("refund", m.reserved_each - m.payment), ("slashed", 0)):
        assert re.search(rf'id="lease-{name}"><span class="amount">{value} wei', block), name
    assert f'<code class="hash">{m.settled.open_tx}</code>' in block
    assert f'<code class="hash">{m.settled.close_tx}</code>' in block
    assert "30 min" in block and m.provider_wallet in block


def test_a_job_page_shows_a_lease_still_opening(escrow: Escrow, provider: Person, developer: Person,
                                                developer_web: Client) -> None:
    staked_provider(escrow, provider)
    funded_developer(escrow, developer)
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    escrow.match(job)
    block = between(text(developer_web.get(f"/jobs/{job.pk}/")), 'id="payment"')
    assert 'id="lease-state">opening<' in block and "not on chain yet" in block


def test_a_queued_job_page_says_why_it_waits(escrow: Escrow, provider: Person, developer: Person,
                                             developer_web: Client) -> None:
    staked_provider(escrow, provider)
    wallet = Escrow.link(developer, DEVELOPER_KEY)
    escrow.deposit(wallet, 10)
    escrow.set_lease_cap(wallet, LEASE_CAP)
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    assert escrow.match(job) is None
    block = between(text(developer_web.get(f"/jobs/{job.pk}/")), 'id="payment"')
    reason = Job.objects.get(pk=job.pk).wait_reason
    assert reason.startswith("waiting for funds") and f'<p class="notice" id="wait-reason">{reason}</p>' in block
    assert 'id="no-lease"' in block


def test_the_account_page_names_the_chain(escrow: Escrow, developer_web: Client) -> None:
    assertContains(developer_web.get("/account/"), f"(chain {CHAIN_ID})")


def test_commands_quote_what_the_shell_would_read(db: None) -> None:
    from marketplace.web.commands import quoted

    assert quoted("Link wallet 0xAb to GPU marketplace account a.b@c+d-e_f (id 7)") == (
        '"Link wallet 0xAb to GPU marketplace account a.b@c+d-e_f (id 7)"')
    assert quoted('say "$HOME"') == "'say \"$HOME\"'"


def test_the_rpc_address_in_commands_never_carries_credentials(escrow: Escrow, settings: Any) -> None:
    from marketplace.services.balances import rpc_url_for_users

    settings.CHAIN_URL = "https://user:secret@rpc.example:8545/path"
    assert rpc_url_for_users() == "https://rpc.example:8545/path"
    settings.CHAIN_PUBLIC_URL = "https://public.example/"
    assert rpc_url_for_users() == "https://public.example/"



def test_a_stake_below_the_minimum_is_pointed_out(escrow: Escrow, provider: Person, provider_web: Client) -> None:
    escrow.register(Escrow.link(provider, OTHER_KEY), MIN_STAKE - 1)
    assertContains(provider_web.get("/earnings/"), "yes, but the stake is below the minimum")


def test_before_the_escrow_is_deployed_the_money_pages_say_so(settings: Any, provider_web: Client,
                                                               developer_web: Client) -> None:
    settings.CHAIN_URL = UNUSED_RPC
    for client, url in ((provider_web, "/earnings/"), (developer_web, "/balance/")):
        page = text(client.get(url))
        assert "escrow contract is not deployed" in page and "deploy_contracts" in page and "cast send" not in page
