"""The escrow's pages in a real headless Chromium (Debian's ``/usr/bin/chromium``, through the
browser fixtures of ``tests/e2e``): linking a wallet (errors, then success), a provider's earnings, a
developer's balance and a job's payment block. Every step is saved as a full-page screenshot under
``test-output/screenshots/``.

The ledger is written as in production (`tests.web.escrow`: real signatures, real matching,
`services.ledger.apply_event`); the pages are read with JavaScript off, as they must work without it.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from playwright.sync_api import Browser, Page, expect

from marketplace.models import Account, Job
from marketplace.services import jobs
from marketplace.services.accounts import sign_wallet_link
from tests.conftest import PASSWORD, Person, sign_up
from tests.e2e.conftest import browser, loopback_page, snap  # noqa: F401 (browser, snap: fixtures)
from tests.web.escrow import (
    DEVELOPER_KEY,
    ESCROW,
    LEASE_CAP,
    OTHER_KEY,
    PROVIDER_STAKE,
    TOKEN,
    Escrow,
    Market,
    market,
    staked_provider,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Snap = Callable[[str], Path]
DEV = EthAccount.from_key(DEVELOPER_KEY)


@pytest.fixture
def page(browser: Browser, live_server: Any) -> Iterator[Page]:  # noqa: F811
    """As ``tests/e2e``'s page, with JavaScript off: every page must work without it."""
    with loopback_page(browser, live_server.url, javascript=False) as tab:
        yield tab


@pytest.fixture
def people(transactional_db: None) -> tuple[Person, Person]:
    return sign_up("alice", "provider"), sign_up("dave", "developer")


@pytest.fixture
def escrow(settings: Any, monkeypatch: pytest.MonkeyPatch, transactional_db: None) -> Escrow:
    return Escrow.configure(settings, monkeypatch)


@pytest.fixture
def the_market(escrow: Escrow, people: tuple[Person, Person]) -> Market:
    return market(escrow, *people)


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header")).to_contain_text(f"Signed in as {username}")


def test_a_developer_links_a_wallet_after_two_mistakes(page: Page, snap: Snap, escrow: Escrow,
                                                       people: tuple[Person, Person]) -> None:
    _, developer = people
    log_in(page, "dave")
    page.get_by_role("link", name="Account").click()
    wallet = page.locator("#wallet")
    expect(wallet.locator("#linked-wallet")).to_have_text("none yet")
    snap("account")

    # The address without its checksum: refused next to the field, with the checksummed form offered.
    page.get_by_label("Wallet address").fill(DEV.address.lower())
    page.get_by_role("button", name="Show the message to sign").click()
    expect(wallet.locator(".field.has-error .error")).to_contain_text(f"did you mean {DEV.address}?")
    expect(page.locator("#wallet-message")).to_have_count(0)
    snap("bad-address")

    # The right address: the exact message, and the cast command that signs it.
    page.get_by_label("Wallet address").fill(DEV.address)
    page.get_by_role("button", name="Show the message to sign").click()
    message = page.locator("#wallet-message").inner_text()
    assert message == f"Link wallet {DEV.address} to GPU marketplace account dave (id {developer.user.pk})"
    expect(page.locator("#sign-command")).to_have_text(f'cast wallet sign --private-key "$PRIVATE_KEY" "{message}"')
    expect(page.get_by_label("Wallet address")).to_have_value(DEV.address)
    snap("message")

    # Signed by another wallet: the page names the signer and keeps the message up.
    wrong = EthAccount.from_key(OTHER_KEY).sign_message(encode_defunct(text=message))
    page.get_by_label("Signature").fill("0x" + bytes(wrong.signature).hex())
    page.get_by_role("button", name="Link wallet").click()
    expect(wallet.locator(".field.has-error .error")).to_contain_text(
        f"made by {EthAccount.from_key(OTHER_KEY).address}, not {DEV.address}")
    expect(page.locator("#wallet-message")).to_have_text(message)
    assert Account.objects.get(user=developer.user).wallet_address == ""
    snap("wrong-signer")

    # Signed by the wallet itself: linked.
    right = DEV.sign_message(encode_defunct(text=message))
    page.get_by_label("Signature").fill("0x" + bytes(right.signature).hex())
    page.get_by_role("button", name="Link wallet").click()
    expect(page.locator(".messages")).to_contain_text(f"Wallet {DEV.address} is linked to your account.")
    expect(page.locator("#linked-wallet")).to_have_text(DEV.address)
    snap("linked")
    assert Account.objects.get(user=developer.user).wallet_address == DEV.address


def test_a_provider_reads_its_earnings_and_how_to_withdraw(page: Page, snap: Snap, the_market: Market) -> None:
    m = the_market
    log_in(page, "alice")
    page.get_by_role("link", name="Earnings").click()
    expect(page.get_by_role("heading", name="Earnings", exact=True)).to_be_visible()
    expect(page.locator("#wallet-address")).to_have_text(m.provider_wallet)
    expect(page.locator("#stake")).to_contain_text(f"{PROVIDER_STAKE} wei")
    expect(page.locator("#registered")).to_contain_text("yes, taking leases")
    expect(page.locator("#open-leases")).to_have_text("1")
    expect(page.locator("#earned")).to_contain_text(f"{m.provider_earned} wei")
    expect(page.locator("#available")).to_contain_text(f"{m.provider_available} wei")
    expect(page.locator("#slashed")).to_contain_text("0 wei")
    expect(page.locator("#withdraw-command")).to_contain_text(
        f'cast send {ESCROW} "withdraw(uint256)" {m.provider_available} --private-key "$PRIVATE_KEY"')
    expect(page.locator("#stake-command")).to_contain_text('"addStake(uint256)"')
    expect(page.locator("#escrow-address")).to_have_text(ESCROW)
    expect(page.locator("#token-address")).to_have_text(TOKEN)
    rows = page.locator("table.leases tbody tr")
    expect(rows).to_have_count(2)
    settled = page.locator(f"#lease-{m.settled.lease_id}")
    expect(settled).to_contain_text("settled")
    expect(settled).to_contain_text(f"{m.payment} wei")
    expect(settled).to_contain_text(m.settled.close_tx)
    # Hashes and addresses wrap inside the page rather than widening it.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    snap("earnings")


def test_a_developer_reads_its_balance_then_a_jobs_payment(page: Page, snap: Snap, the_market: Market) -> None:
    m = the_market
    log_in(page, "dave")
    page.get_by_role("link", name="Balance").click()
    expect(page.get_by_role("heading", name="Balance", exact=True)).to_be_visible()
    expect(page.locator("#available")).to_contain_text(f"{m.developer_available} wei")
    expect(page.locator("#reserved")).to_contain_text(f"{m.reserved_each} wei")
    expect(page.locator("#lease-cap")).to_contain_text(f"{LEASE_CAP} wei")
    expect(page.locator("#spent")).to_contain_text(f"{m.payment} wei")
    expect(page.locator("#deposit-command")).to_contain_text(f'cast send {ESCROW} "deposit(uint256)" "$AMOUNT"')
    expect(page.locator("#cap-command")).to_contain_text('"setLeaseCap(uint256)" "$CAP"')
    expect(page.locator("#withdraw-command")).to_contain_text(f'"withdraw(uint256)" {m.developer_available}')
    expect(page.locator(f"#reservation-{m.open.lease_id}")).to_contain_text(f"job {m.open_job.pk}")
    spend = page.locator(f"#lease-{m.settled.lease_id}")
    expect(spend).to_contain_text(f"{m.fee} wei")
    expect(spend).to_contain_text(f"{m.reserved_each - m.payment} wei")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    snap("balance")

    spend.get_by_role("link", name=f"job {m.settled_job.pk}").click()
    payment = page.locator("#payment")
    expect(payment.get_by_role("heading", name="Payment")).to_be_visible()
    expect(page.locator("#lease-state")).to_have_text("settled")
    expect(page.locator("#lease-paid")).to_contain_text(f"{m.payment} wei")
    expect(page.locator("#lease-fee")).to_contain_text(f"{m.fee} wei")
    expect(page.locator("#lease-refund")).to_contain_text(f"{m.reserved_each - m.payment} wei")
    expect(page.locator("#lease-open-tx")).to_have_text(m.settled.open_tx)
    expect(page.locator("#lease-settle-tx")).to_have_text(m.settled.close_tx)
    snap("job-settled")


def test_a_queued_job_shows_why_it_waits_for_funds(page: Page, snap: Snap, escrow: Escrow,
                                                   people: tuple[Person, Person]) -> None:
    provider, developer = people
    staked_provider(escrow, provider)
    address, signature = sign_wallet_link(developer.user, DEVELOPER_KEY)
    from marketplace.services.accounts import link_wallet

    link_wallet(user=developer.user, address=address, signature=signature)
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    assert escrow.match(job) is None
    log_in(page, "dave")
    page.goto(f"/jobs/{job.pk}/")
    expect(page.locator("#job-state")).to_have_text("queued")
    expect(page.locator("#wait-reason")).to_have_text(Job.objects.get(pk=job.pk).wait_reason)
    expect(page.locator("#wait-reason")).to_contain_text(re.compile(r"waiting for funds: .* above your lease cap"))
    expect(page.locator("#no-lease")).to_be_visible()
    snap("job-waiting")
