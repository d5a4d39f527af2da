"""The pages in a real headless Chromium: a provider's, a visitor's and a developer's first visit.

Every page visited is saved as a full-page screenshot under ``test-output/screenshots/``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect
from rest_framework.authtoken.models import Token

from marketplace.models import Account, Job, JobState, Node, Offer, OfferStatus
from marketplace.services import accounts, nodes, offers
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

RTX_4090 = "NVIDIA RTX 4090"
BAD_ADDRESS = "0x12345"
GOOD_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
Snap = Callable[[str], Path]


def sign_up_in_browser(page: Page, snap: Snap, username: str, role_label: str) -> None:
    page.goto("/")
    snap("home")
    page.get_by_role("link", name="Sign up").first.click()
    expect(page.get_by_role("heading", name="Sign up")).to_be_visible()
    snap("signup")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_label(role_label).check()
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("header")).to_contain_text(f"Signed in as {username}")


def test_a_provider_registers_a_node_and_puts_its_gpus_on_offer(page: Page, live_server: Any, snap: Snap) -> None:
    sign_up_in_browser(page, snap, "alice", "Provider: I rent out GPU machines")
    expect(page).to_have_url(re.compile(r"/nodes/$"))
    expect(page.locator("header .role")).to_have_text("Provider")
    expect(page.get_by_text("You have no nodes yet.")).to_be_visible()
    snap("nodes-empty")

    # The payout wallet: a bad address is explained next to the field, a checksummed one is kept.
    page.get_by_role("link", name="Account").click()
    snap("account")
    page.get_by_label("Payout wallet").fill(BAD_ADDRESS)
    page.get_by_role("button", name="Save payout wallet").click()
    expect(page.locator("#payout .field .error")).to_contain_text("not an EVM address")
    snap("payout-bad")
    page.get_by_label("Payout wallet").fill(GOOD_ADDRESS)
    page.get_by_role("button", name="Save payout wallet").click()
    expect(page.locator(".messages")).to_contain_text(f"Payouts will go to {GOOD_ADDRESS}")
    snap("payout-saved")
    assert Account.objects.get(user__username="alice").payout_address == GOOD_ADDRESS

    # A node with two RTX 4090s; the join token is on the answer to the form, once.
    page.get_by_role("link", name="Register a node").first.click()
    snap("node-form")
    page.get_by_label("Name").fill("rig-1")
    page.get_by_label("Region").fill("eu-west")
    page.get_by_label("CPU cores").fill("32")
    page.get_by_label("RAM (GB)", exact=True).fill("256")
    page.get_by_label("Row 1 GPU model").select_option(RTX_4090)
    page.get_by_label("Row 1 Count").fill("2")
    page.get_by_role("button", name="Register node").click()
    expect(page.get_by_role("heading", name="Node rig-1 registered")).to_be_visible()
    expect(page.locator(".warning")).to_contain_text("shown only once")
    token = page.locator("#join-token").inner_text()
    assert token.startswith("node_")
    expect(page.locator("#join-command")).to_have_text(
        f"python -m workers.agent join --api {live_server.url} --token {token}")
    snap("join-token")
    node = Node.objects.get(name="rig-1")
    assert node.join_token_hash == nodes.hash_join_token(token)

    page.get_by_role("link", name="Go to the node and offer its GPUs").click()
    expect(page.get_by_role("heading", name="Node rig-1")).to_be_visible()
    assert token not in page.content()
    snap("node-detail")

    # An offer of both GPUs, then pause and resume it.
    page.get_by_label("GPU model").select_option(RTX_4090)
    page.get_by_label("GPUs", exact=True).fill("2")
    page.get_by_label("Price per GPU-hour (wei)").fill("2000000000000000")
    page.get_by_label("Shortest lease").fill("1")
    page.get_by_label("Longest lease").fill("24")
    page.get_by_label("Lease durations in").select_option("hours")
    page.get_by_role("button", name="Create offer").click()
    expect(page.locator(".messages")).to_contain_text("Offered 2 × NVIDIA RTX 4090 at 2000000000000000 wei "
                                                      "(0.002 ETH) per GPU-hour")
    row = page.locator("tr.offer")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("0.002 ETH")
    expect(row.locator(".status")).to_have_text("active")
    snap("offer-created")
    offer = Offer.objects.get(node=node)
    assert (offer.gpu_count, offer.min_duration_s, offer.max_duration_s) == (2, 3600, 86400)

    row.get_by_role("button", name="Pause").click()
    expect(page.locator("tr.offer .status")).to_have_text("paused")
    snap("offer-paused")
    page.locator("tr.offer").get_by_role("button", name="Resume").click()
    expect(page.locator("tr.offer .status")).to_have_text("active")
    snap("offer-resumed")
    offer.refresh_from_db()
    assert offer.status == OfferStatus.ACTIVE

    page.get_by_role("link", name="My nodes").click()
    expect(page.locator("tbody tr")).to_contain_text("2 × NVIDIA RTX 4090")
    snap("nodes")


@pytest.fixture
def listed_offer(transactional_db: None) -> Offer:
    """A provider with an online node offering 2 x RTX 4090 at 0.002 ETH, and a dearer H100 elsewhere."""
    alice, _ = accounts.register_user(username="alice", password=PASSWORD, role="provider")
    node, _ = nodes.register_node(provider=alice, name="rig-1", region="eu-west", cpu_cores=32, ram_gb=256,
                                  gpus=[nodes.GpuDeclaration(RTX_4090, 2)])
    nodes.record_heartbeat(node=node, now=timezone.now())
    other, _ = nodes.register_node(provider=alice, name="rig-2", region="us-east", cpu_cores=64, ram_gb=512,
                                   gpus=[nodes.GpuDeclaration("NVIDIA H100 PCIe", 4)])
    offers.create_offer(provider=alice, node_id=other.pk, gpu_model="NVIDIA H100 PCIe", gpu_count=4,
                        price_per_gpu_hour_wei=3 * 10**16)
    return offers.create_offer(provider=alice, node_id=node.pk, gpu_model=RTX_4090, gpu_count=2,
                               price_per_gpu_hour_wei=2 * 10**15)


def test_a_visitor_finds_the_offer_with_filters_and_sees_when_nothing_matches(page: Page, snap: Snap,
                                                                              listed_offer: Offer) -> None:
    page.goto("/")
    snap("home")
    page.get_by_role("link", name="Browse offers").click()
    expect(page.locator("table.offers tbody tr")).to_have_count(2)
    snap("all-offers")

    page.get_by_label("GPU model").select_option(RTX_4090)
    page.get_by_label("Min free GPUs").fill("2")
    page.get_by_label("Max price (wei/GPU-h)").fill("3000000000000000")
    page.get_by_label("Region").fill("eu-west")
    page.get_by_label("Only available now").check()
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table.offers tbody tr")
    expect(rows).to_have_count(1)
    row = page.locator(f"#offer-{listed_offer.pk}")
    for cell in (RTX_4090, "24 GB", "2 / 2", "2000000000000000", "0.002", "eu-west", "online"):
        expect(row).to_contain_text(cell)
    expect(page.get_by_label("Only available now")).to_be_checked()  # the form keeps what was asked
    snap("found")

    page.get_by_label("Min VRAM (GB)").fill("80")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No offers match these filters.")).to_be_visible()
    snap("no-match")

    page.goto("/offers/?min_vram_gb=lots")
    expect(page.locator(".field .error")).to_contain_text("Enter a whole number.")
    snap("bad-filter")


def test_a_developer_rotates_the_api_token_and_submits_a_benchmark_job(page: Page, snap: Snap) -> None:
    sign_up_in_browser(page, snap, "dave", "Developer: I run jobs on rented GPUs")
    expect(page).to_have_url(re.compile(r"/jobs/$"))
    expect(page.get_by_text("You have not submitted any jobs yet.")).to_be_visible()
    snap("jobs-empty")

    page.get_by_role("link", name="Account").click()
    old = page.locator("#api-token").inner_text()
    assert old == Token.objects.get(user__username="dave").key
    snap("account")
    page.get_by_role("button", name="Rotate token").click()
    expect(page.locator(".messages")).to_contain_text("the old one no longer works")
    new = page.locator("#api-token").inner_text()
    assert new != old and new == Token.objects.get(user__username="dave").key
    snap("token-rotated")

    page.get_by_role("link", name="Submit a job").click()
    snap("job-form")
    page.get_by_label("Kind").select_option("benchmark")
    page.get_by_label("Spec").fill('{"measurements": ["cpu_gflops",}')
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator(".field.has-error .error")).to_contain_text("Not valid JSON")
    assert not Job.objects.exists()
    snap("job-bad-json")

    page.get_by_label("Spec").fill('{"measurements": ["cpu_gflops", "memory_bandwidth"]}')
    page.get_by_label("GPU model").select_option(RTX_4090)
    page.get_by_label("GPUs", exact=True).fill("1")
    page.get_by_label("Max price (wei/GPU-h)").fill("3000000000000000")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#job-state")).to_have_text("queued")
    events = page.locator("table.events tbody tr")
    expect(events).to_have_count(2)
    expect(events.nth(0)).to_contain_text("submitted")
    expect(events.nth(1)).to_contain_text("waiting for a matching offer")
    expect(page.locator("pre.json")).to_contain_text("memory_bandwidth")
    snap("job-queued")
    job = Job.objects.get(owner__username="dave")
    assert job.state == JobState.QUEUED and job.gpu_model == RTX_4090

    page.get_by_role("link", name="My jobs").click()
    expect(page.locator("tbody tr")).to_contain_text("queued")
    snap("jobs")
