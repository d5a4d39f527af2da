"""The server-rendered pages through Django's test client: each renders, keeps other people's
objects out of reach (404), refuses the wrong role (403) and shows bad input next to the field
without writing anything."""
from __future__ import annotations

import re
from datetime import datetime, timezone as dt_timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects
from rest_framework.authtoken.models import Token

from marketplace.models import Account, Job, JobState, Node, NodeGpu, Offer, OfferStatus
from marketplace.services import benchmarks, jobs, nodes, offers
from marketplace.services.nodes import hash_join_token
from tests.conftest import PASSWORD
from tests.web.conftest import RTX_4090, node_for, offer_on, signed_in

GOOD_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
PROTECTED = ["/dashboard/", "/account/", "/nodes/", "/nodes/new/", "/jobs/", "/jobs/new/"]


def text(response: Any) -> str:
    return response.content.decode()


def error_after(page: str, field: str) -> str:
    """The HTML from a field's input to the end of its block: where its errors are shown."""
    rest = page[page.index(f'name="{field}"'):]
    return rest[:rest.index("</div>")]


def gpu_rows(*rows: tuple[str, str, str], total: int = 3) -> dict[str, str]:
    """POST data of the GPU formset: ``rows`` filled in, the rest blank."""
    data = {"gpus-TOTAL_FORMS": str(total), "gpus-INITIAL_FORMS": "0", "gpus-MIN_NUM_FORMS": "0",
            "gpus-MAX_NUM_FORMS": "16"}
    for index in range(total):
        model, count, vram = rows[index] if index < len(rows) else ("", "", "")
        data.update({f"gpus-{index}-model": model, f"gpus-{index}-count": count, f"gpus-{index}-vram_gb": vram})
    return data


def node_post(name: str = "rig-9", **overrides: str) -> dict[str, str]:
    body = {"name": name, "region": "eu-west", "cpu_cores": "16", "ram_gb": "128", **gpu_rows((RTX_4090, "2", ""))}
    body.update(overrides)
    return body


def offer_post(**overrides: str) -> dict[str, str]:
    body = {"gpu_model": RTX_4090, "gpu_count": "2", "price_per_gpu_hour_wei": "2000000000000000",
            "min_duration": "1", "max_duration": "24", "duration_unit": "hours"}
    body.update(overrides)
    return body


# --- public pages, login state, CSRF -----------------------------------------------------------

def test_the_home_page_explains_the_marketplace_and_links_onwards(client: Client, db: None) -> None:
    response = client.get("/")
    assertContains(response, "GPU Marketplace")
    for url in ("/offers/", "/signup/", "/login/"):
        assertContains(response, f'href="{url}"')


@pytest.mark.parametrize("url", PROTECTED)
def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, db: None, url: str) -> None:
    assertRedirects(client.get(url), f"/login/?next={url}", fetch_redirect_response=False)


def test_the_nav_shows_who_is_signed_in_and_their_role(provider_web: Client, client: Client) -> None:
    page = text(provider_web.get("/offers/"))
    assert "Signed in as <strong>alice</strong>" in page and "Provider" in page and "My nodes" in page
    anonymous = text(client.get("/offers/"))
    assert "Log in" in anonymous and "Signed in" not in anonymous


@pytest.mark.parametrize("url", ["/signup/", "/login/"])
def test_public_forms_carry_a_csrf_token(client: Client, db: None, url: str) -> None:
    assertContains(client.get(url), 'name="csrfmiddlewaretoken"')


def test_every_signed_in_form_carries_a_csrf_token(provider_web: Client, developer_web: Client, rig: Node,
                                                   provider: Any, developer: Any) -> None:
    offer = offer_on(provider, rig)
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    pages = [(provider_web, "/account/"), (provider_web, "/nodes/new/"), (provider_web, f"/nodes/{rig.pk}/"),
             (developer_web, "/jobs/new/"), (developer_web, f"/jobs/{job.pk}/")]
    for web, url in pages:
        page = text(web.get(url))
        forms = page.count("<form")
        assert forms and page.count('name="csrfmiddlewaretoken"') == forms, url
    assert f"/my-offers/{offer.pk}/pause/" in text(provider_web.get(f"/nodes/{rig.pk}/"))


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(provider: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(provider.user)
    response = strict.post("/account/payout/", {"payout_address": GOOD_ADDRESS})
    assert response.status_code == 403
    assert Account.objects.get(user=provider.user).payout_address == ""


def test_unknown_pages_and_huge_ids_are_a_friendly_404(provider_web: Client) -> None:
    for url in ("/no-such-page/", "/nodes/99999999999999999999999/", "/nodes/999999999999999999/"):
        response = provider_web.get(url)
        assert response.status_code == 404, url
        assertContains(response, "Not found", status_code=404)


# --- sign-up, login, logout --------------------------------------------------------------------

def test_signing_up_creates_the_account_and_signs_in(client: Client, db: None) -> None:
    response = client.post("/signup/", {"username": "newbie", "password": PASSWORD, "password_confirm": PASSWORD,
                                        "role": "provider"}, follow=True)
    assertRedirects(response, "/nodes/")
    assertContains(response, "Welcome, newbie")
    user = User.objects.get(username="newbie")
    assert user.account.role == "provider" and Token.objects.filter(user=user).exists()


@pytest.mark.parametrize(("data", "field_error"), [
    ({"password_confirm": "something else entirely"}, "The two passwords differ."),
    ({"username": "dave"}, "that username is taken"),
    ({"password": "short", "password_confirm": "short"}, "too short"),
    ({"username": "no spaces allowed"}, "Enter a valid username"),
    ({"role": "admin"}, "Select a valid choice"),
])
def test_bad_sign_ups_show_the_reason_and_write_nothing(client: Client, developer: Any, data: dict[str, str],
                                                        field_error: str) -> None:
    body = {"username": "newbie", "password": PASSWORD, "password_confirm": PASSWORD, "role": "developer", **data}
    before = User.objects.count()
    response = client.post("/signup/", body)
    assert response.status_code == 200
    assertContains(response, field_error)
    assertContains(response, 'class="error"')
    assert User.objects.count() == before
    assert "_auth_user_id" not in client.session


def test_logging_in_leads_to_the_dashboard_and_a_wrong_password_is_explained(client: Client, developer: Any) -> None:
    wrong = client.post("/login/", {"username": "dave", "password": "not the password"})
    assertContains(wrong, "Wrong username or password.")
    right = client.post("/login/", {"username": "dave", "password": PASSWORD})
    assertRedirects(right, "/dashboard/", fetch_redirect_response=False)
    assertRedirects(client.get("/dashboard/"), "/jobs/")


def test_password_guessing_is_stopped_after_the_failure_limit(client: Client, developer: Any, settings: Any) -> None:
    settings.AUTH_FAILURES_PER_MINUTE = 3
    for _ in range(3):
        assertContains(client.post("/login/", {"username": "dave", "password": "guess"}), "Wrong username")
    refused = client.post("/login/", {"username": "dave", "password": PASSWORD})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assertContains(refused, "Too many failed sign-ins", status_code=429)
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only(provider_web: Client) -> None:
    assert provider_web.get("/logout/").status_code == 405
    assert "_auth_user_id" in provider_web.session
    assertRedirects(provider_web.post("/logout/"), "/", fetch_redirect_response=False)
    assert "_auth_user_id" not in provider_web.session


def test_the_dashboard_sends_each_role_to_its_own_pages(provider_web: Client, developer_web: Client) -> None:
    assertRedirects(provider_web.get("/dashboard/"), "/nodes/")
    assertRedirects(developer_web.get("/dashboard/"), "/jobs/")


# --- roles --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/nodes/", "/nodes/new/"])
def test_developers_get_a_friendly_403_on_provider_pages(developer_web: Client, url: str) -> None:
    response = developer_web.get(url)
    assertContains(response, "This page is for providers", status_code=403)


@pytest.mark.parametrize("url", ["/jobs/", "/jobs/new/"])
def test_providers_get_a_friendly_403_on_developer_pages(provider_web: Client, url: str) -> None:
    assertContains(provider_web.get(url), "This page is for developers", status_code=403)


def test_a_developer_cannot_register_a_node_by_posting(developer_web: Client) -> None:
    assert developer_web.post("/nodes/new/", node_post()).status_code == 403
    assert not Node.objects.exists()


# --- account -----------------------------------------------------------------------------------

def test_the_account_page_shows_role_token_and_payout_form_uncached(provider_web: Client, provider: Any) -> None:
    response = provider_web.get("/account/")
    assertContains(response, provider.token)
    assertContains(response, "Provider")
    assertContains(response, "Rotate token")
    assertContains(response, 'name="payout_address"')
    assert response["Cache-Control"] == "no-store"


def test_rotating_the_token_replaces_it(developer_web: Client, developer: Any) -> None:
    assert developer_web.get("/account/token/").status_code == 405
    response = developer_web.post("/account/token/", follow=True)
    new = Token.objects.get(user=developer.user).key
    assert new != developer.token
    assertContains(response, new)
    assertContains(response, "the old one no longer works")
    assertNotContains(response, developer.token)


@pytest.mark.parametrize(("address", "message"), [
    ("0x123", "not an EVM address"),
    ("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeD", "did you mean 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
    ("", "This field is required."),
])
def test_a_bad_payout_address_is_explained_next_to_the_field(provider_web: Client, provider: Any, address: str,
                                                             message: str) -> None:
    response = provider_web.post("/account/payout/", {"payout_address": address})
    assert response.status_code == 200
    assert message in error_after(text(response), "payout_address")
    assert Account.objects.get(user=provider.user).payout_address == ""


def test_a_checksummed_payout_address_is_saved(provider_web: Client, provider: Any) -> None:
    response = provider_web.post("/account/payout/", {"payout_address": f"  {GOOD_ADDRESS} "}, follow=True)
    assertRedirects(response, "/account/")
    assertContains(response, f"Payouts will go to {GOOD_ADDRESS}")
    assert Account.objects.get(user=provider.user).payout_address == GOOD_ADDRESS


# --- nodes -------------------------------------------------------------------------------------

def test_the_node_list_shows_hardware_status_and_offer_counts(provider_web: Client, provider: Any,
                                                              other_provider: Any) -> None:
    online = node_for(provider, name="rig-a", online=True)
    node_for(provider, name="rig-b", region="us-east", gpus=[nodes.GpuDeclaration("NVIDIA H200", 8)])
    node_for(other_provider, name="not-mine")
    offer_on(provider, online)
    offers.withdraw_offer(provider=provider.user, offer_id=offer_on(provider, online).pk)
    page = text(provider_web.get("/nodes/"))
    assert "rig-a" in page and "rig-b" in page and "not-mine" not in page
    assert "8 × NVIDIA H200" in page and "2 × NVIDIA RTX 4090" in page
    assert '<span class="status online">online</span>' in page and '<span class="status offline">' in page
    row = page[page.index("rig-a"):page.index("rig-b")]
    assert re.search(r'<td class="num">1</td>\s*</tr>', row)  # the withdrawn offer does not count


def test_registering_a_node_shows_its_join_token_once(provider_web: Client, provider: Any) -> None:
    response = provider_web.post("/nodes/new/", node_post(name="rig-9", **gpu_rows((RTX_4090, "2", "24"))))
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    token = re.search(r'id="join-token">(node_[A-Za-z0-9_-]+)<', text(response)).group(1)
    node = Node.objects.get(provider=provider.user, name="rig-9")
    assert node.join_token_hash == hash_join_token(token)
    assert [(g.model, g.count, g.vram_gb) for g in node.gpus.all()] == [(RTX_4090, 2, 24)]
    assertContains(response, "shown only once", status_code=201)
    assertContains(response, f"python -m workers.agent join --api http://testserver --token {token}", status_code=201)
    assertNotContains(provider_web.get(f"/nodes/{node.pk}/"), token)


def test_blank_gpu_rows_are_ignored(provider_web: Client) -> None:
    body = node_post(**gpu_rows(("", "", ""), ("NVIDIA L4", "4", ""), ("", "", ""), total=3))
    assert provider_web.post("/nodes/new/", body).status_code == 201
    assert [(g.model, g.count) for g in NodeGpu.objects.all()] == [("NVIDIA L4", 4)]


@pytest.mark.parametrize(("body", "message"), [
    (node_post(**gpu_rows()), "declare at least one GPU"),
    (node_post(**gpu_rows((RTX_4090, "1", ""), (RTX_4090, "1", ""))), "is listed twice"),
    (node_post(**gpu_rows((RTX_4090, "1", "48"))), "has 24 GB of VRAM, not 48"),
    (node_post(**gpu_rows(("", "2", ""))), "Choose a GPU model for this row."),
    (node_post(**gpu_rows((RTX_4090, "", ""))), "How many of them?"),
    (node_post(**gpu_rows(("Voodoo 2", "1", ""))), "Select a valid choice"),
    (node_post(name="has space"), "letters, digits"),
    (node_post(region="EU West"), "lower-case letters"),
    (node_post(cpu_cores="0"), "greater than or equal to 1"),
    (node_post(ram_gb="lots"), "Enter a whole number"),
    ({"name": "rig-9", "region": "eu-west", "cpu_cores": "1", "ram_gb": "1"}, "ManagementForm data is missing"),
])
def test_bad_node_registrations_are_explained_and_write_nothing(provider_web: Client, body: dict[str, str],
                                                                message: str) -> None:
    response = provider_web.post("/nodes/new/", body)
    assert response.status_code == 200
    assertContains(response, message)
    assertContains(response, 'role="alert"')
    assert not Node.objects.exists() and not NodeGpu.objects.exists()


def test_a_second_node_with_the_same_name_is_refused_next_to_the_name(provider_web: Client, rig: Node) -> None:
    response = provider_web.post("/nodes/new/", node_post(name=rig.name))
    assertContains(response, "you already have a node named")
    assert Node.objects.count() == 1


def test_another_providers_node_and_offers_are_not_found(provider_web: Client, other_provider: Any) -> None:
    theirs = node_for(other_provider, name="theirs")
    offer = offer_on(other_provider, theirs)
    assert provider_web.get(f"/nodes/{theirs.pk}/").status_code == 404
    assert provider_web.post(f"/nodes/{theirs.pk}/", offer_post()).status_code == 404
    for action in ("pause", "resume", "withdraw"):
        assert provider_web.post(f"/my-offers/{offer.pk}/{action}/").status_code == 404
    offer.refresh_from_db()
    assert offer.status == OfferStatus.ACTIVE and Offer.objects.count() == 1


def test_the_node_page_shows_gpus_status_offers_and_jobs(provider_web: Client, provider: Any, developer: Any,
                                                         rig: Node) -> None:
    offer_on(provider, rig, gpu_count=1, price=1_500_000_000_000_000)
    job = jobs.submit_job(owner=developer.user, kind="benchmark", spec={"measurements": ["gpu"]})
    Job.objects.filter(pk=job.pk).update(node=rig)
    page = text(provider_web.get(f"/nodes/{rig.pk}/"))
    assert "NVIDIA RTX 4090" in page and "24 GB" in page
    assert "never" in page and '<span class="status offline">offline</span>' in page
    assert "1500000000000000 wei" in page and "0.0015 ETH" in page
    assert "1 min – 1 d" in page
    assert f'<td class="num">{job.pk}</td><td>benchmark</td>' in page
    assert "measurements" not in page  # the developer's spec stays private


def test_creating_an_offer_converts_lease_durations_to_seconds(provider_web: Client, rig: Node) -> None:
    response = provider_web.post(f"/nodes/{rig.pk}/", offer_post(min_duration="2", max_duration="3"), follow=True)
    assertRedirects(response, f"/nodes/{rig.pk}/")
    assertContains(response, "at 2000000000000000 wei (0.002 ETH) per GPU-hour")
    offer = Offer.objects.get()
    assert (offer.gpu_count, offer.min_duration_s, offer.max_duration_s) == (2, 7200, 10800)
    provider_web.post(f"/nodes/{rig.pk}/", offer_post(gpu_count="0"))
    offers.withdraw_offer(provider=offer.provider, offer_id=offer.pk)
    provider_web.post(f"/nodes/{rig.pk}/", offer_post(min_duration="5", max_duration="90", duration_unit="minutes"))
    assert Offer.objects.exclude(pk=offer.pk).get().min_duration_s == 300


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"gpu_count": "3"}, "gpu_count", "at most 2 more can be offered"),
    ({"price_per_gpu_hour_wei": "0"}, "price_per_gpu_hour_wei", "price must be a positive integer"),
    ({"price_per_gpu_hour_wei": "0.5"}, "price_per_gpu_hour_wei", "Enter a whole number of wei"),
    ({"min_duration": "5", "max_duration": "2"}, "max_duration", "lease durations must satisfy"),
    ({"min_duration": "90", "max_duration": "60", "duration_unit": "minutes"}, "max_duration", "lease durations"),
    ({"max_duration": "9999"}, "max_duration", "lease durations must satisfy"),
    ({"gpu_model": "NVIDIA H200"}, "gpu_model", "Select a valid choice"),
])
def test_bad_offers_are_explained_next_to_the_field_and_write_nothing(provider_web: Client, rig: Node,
                                                                      data: dict[str, str], field: str,
                                                                      message: str) -> None:
    before = Offer.objects.count()
    response = provider_web.post(f"/nodes/{rig.pk}/", offer_post(**data))
    assert response.status_code == 200
    assert message in error_after(text(response), field)
    assert Offer.objects.count() == before


def test_an_offer_is_paused_resumed_and_withdrawn_with_post_buttons(provider_web: Client, provider: Any,
                                                                   rig: Node) -> None:
    offer = offer_on(provider, rig, gpu_count=2)
    assert provider_web.get(f"/my-offers/{offer.pk}/pause/").status_code == 405
    for action, status in (("pause", "paused"), ("resume", "active"), ("withdraw", "withdrawn")):
        response = provider_web.post(f"/my-offers/{offer.pk}/{action}/", follow=True)
        assertRedirects(response, f"/nodes/{rig.pk}/#offers")
        offer.refresh_from_db()
        assert offer.status == status
        assertContains(response, f'<span class="status {status}">{status}</span>')
    response = provider_web.post(f"/my-offers/{offer.pk}/resume/", follow=True)
    assertContains(response, "a withdrawn offer cannot become active")


# --- public offer search -----------------------------------------------------------------------

@pytest.fixture
def market(provider: Any, other_provider: Any) -> dict[str, Offer]:
    """Offers on three nodes: cheap 4090s online in eu-west, H200s offline in us-east, one paused L4."""
    eu = node_for(provider, name="eu", online=True, gpus=[nodes.GpuDeclaration(RTX_4090, 4),
                                                          nodes.GpuDeclaration("NVIDIA L4", 1)])
    us = node_for(other_provider, name="us", region="us-east", gpus=[nodes.GpuDeclaration("NVIDIA H200", 8)])
    paused = offer_on(provider, eu, gpu_model="NVIDIA L4", price=1)
    offers.pause_offer(provider=provider.user, offer_id=paused.pk)
    return {"cheap": offer_on(provider, eu, gpu_count=2, price=2 * 10**15),
            "h200": offer_on(other_provider, us, gpu_count=8, gpu_model="NVIDIA H200", price=5 * 10**16),
            "paused": paused}


def listed_ids(response: Any) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="offer-(\d+)">', text(response))]


def test_the_offer_search_is_public_and_shows_wei_eth_and_node_status(client: Client,
                                                                      market: dict[str, Offer]) -> None:
    response = client.get("/offers/")
    assert listed_ids(response) == [market["cheap"].pk, market["h200"].pk]  # cheapest first, paused hidden
    page = text(response)
    assert "2000000000000000" in page and ">0.002<" in page and ">0.05<" in page
    assert '<span class="status online">online</span>' in page and '<span class="status offline">' in page
    assert "2 / 2" in page and "141 GB" in page


@pytest.mark.parametrize(("query", "expected"), [
    ({"gpu_model": RTX_4090}, ["cheap"]),
    ({"min_vram_gb": "100"}, ["h200"]),
    ({"min_gpus": "3"}, ["h200"]),
    ({"max_price_wei": str(10**16)}, ["cheap"]),
    ({"region": "us-east"}, ["h200"]),
    ({"available": "on"}, ["cheap"]),
    ({"ordering": "-price"}, ["h200", "cheap"]),
    ({"ordering": "-vram"}, ["h200", "cheap"]),
    ({"ordering": "vram", "region": "eu-west"}, ["cheap"]),
])
def test_the_offer_search_filters_like_the_api(client: Client, market: dict[str, Offer], query: dict[str, str],
                                               expected: list[str]) -> None:
    assert listed_ids(client.get("/offers/", query)) == [market[name].pk for name in expected]


def test_the_search_sorts_by_benchmark_score_and_shows_it(client: Client, market: dict[str, Offer]) -> None:
    page = text(client.get("/offers/"))
    assert '<option value="-score">Best benchmark score</option>' in page
    assert f'<tr id="offer-{market["cheap"].pk}">' in page and 'title="Not benchmarked yet">—</td>' in page

    # The newer H200 offer would come first on a tie; the eu node's benchmark puts its 4090s first.
    benchmarks.record_benchmark(node_id=market["cheap"].node_id, output={"cpu_gflops": 41.7},
                                now=datetime(2025, 3, 1, 12, 0, tzinfo=dt_timezone.utc))
    response = client.get("/offers/", {"ordering": "-score"})

    assert listed_ids(response) == [market["cheap"].pk, market["h200"].pk]
    assertContains(response, '<option value="-score" selected>Best benchmark score</option>', html=False)
    assertContains(response, 'title="Benchmarked 2025-03-01 12:00 UTC">42</td>')


def test_a_search_without_matches_says_so(client: Client, market: dict[str, Offer]) -> None:
    response = client.get("/offers/", {"gpu_model": "NVIDIA T4"})
    assert listed_ids(response) == []
    assertContains(response, "No offers match these filters.")


@pytest.mark.parametrize(("query", "message"), [
    ({"min_vram_gb": "lots"}, "Enter a whole number."),
    ({"min_gpus": "0"}, "greater than or equal to 1"),
    ({"gpu_model": "Voodoo 2"}, "Select a valid choice"),
    ({"max_price_wei": "-1"}, "Enter a whole number of wei"),
    ({"max_price_wei": "9" * 100}, "Enter a whole number of wei"),
    ({"ordering": "popularity"}, "Select a valid choice"),
    ({"page_size": "1000"}, "Select a valid choice"),
    ({"after": "not-a-cursor"}, "That page link is broken"),
    ({"before": "1_" + "9" * 30}, "That page link is broken"),
    ({"region": "x" * 40}, "at most 32 characters"),
])
def test_bad_search_values_show_a_message_never_a_500(client: Client, market: dict[str, Offer],
                                                      query: dict[str, str], message: str) -> None:
    response = client.get("/offers/", query)
    assert response.status_code == 200
    assertContains(response, message)


@pytest.mark.parametrize(("ordering", "order_by"), [
    ("price", ("price_per_gpu_hour_wei", "id")),
    ("-price", ("-price_per_gpu_hour_wei", "-id")),
    ("-vram", ("-vram_gb", "-id")),  # every offer ties on VRAM: the id decides
    ("-score", ("-score", "-id")),
])
def test_the_offer_search_pages_with_next_and_previous_links(client: Client, provider: Any, ordering: str,
                                                             order_by: tuple[str, str]) -> None:
    node = node_for(provider, gpus=[nodes.GpuDeclaration(RTX_4090, 60)])
    for i in range(60):
        offer = offer_on(provider, node, price=10**15 + (i % 7))  # ties on price too
        Offer.objects.filter(pk=offer.pk).update(score=[0, 35, 164_535][i % 3])  # and on score
    expected = list(Offer.objects.order_by(*order_by).values_list("pk", flat=True))
    seen: list[int] = []
    pages: list[list[int]] = []
    response = client.get("/offers/", {"region": "eu-west", "ordering": ordering})
    assertNotContains(response, "Previous")
    while True:
        pages.append(listed_ids(response))
        seen += pages[-1]
        link = re.search(r'<a href="\?([^"]+)">Next', text(response))
        if not link:
            break
        assert "region=eu-west" in link.group(1)
        response = client.get("/offers/?" + link.group(1).replace("&amp;", "&"))
    assert seen == expected and [len(p) for p in pages] == [25, 25, 10]
    back = re.search(r'<a href="\?([^"]+)">← Previous', text(response)).group(1).replace("&amp;", "&")
    response = client.get("/offers/?" + back)
    assert listed_ids(response) == pages[1]
    back = re.search(r'<a href="\?([^"]+)">← Previous', text(response)).group(1).replace("&amp;", "&")
    response = client.get("/offers/?" + back)
    assert listed_ids(response) == pages[0]
    page = text(response)
    assert "Previous" not in page and "First page" not in page  # walking back found nothing before it


def test_the_offer_search_never_counts_and_runs_a_bounded_number_of_queries(client: Client,
                                                                            market: dict[str, Offer]) -> None:
    with CaptureQueriesContext(connection) as queries:
        client.get("/offers/", {"available": "on", "page_size": "100", "after": "1_1"})
    sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
    assert "COUNT(" not in sql and " OFFSET " not in sql
    assert len(queries.captured_queries) <= 3
    assert "LIMIT 101" in sql


# --- jobs --------------------------------------------------------------------------------------

def test_the_job_list_shows_only_my_jobs_newest_first(developer_web: Client, developer: Any,
                                                      other_developer: Any) -> None:
    first = jobs.submit_job(owner=developer.user, kind="benchmark")
    second = jobs.submit_job(owner=developer.user, kind="benchmark",
                             requirements=jobs.Requirements(gpu_model=RTX_4090, gpus=2), max_price_wei=3 * 10**15)
    theirs = jobs.submit_job(owner=other_developer.user, kind="benchmark")
    page = text(developer_web.get("/jobs/"))
    assert page.index(f"/jobs/{second.pk}/") < page.index(f"/jobs/{first.pk}/")
    assert f"/jobs/{theirs.pk}/" not in page
    assert "2 × NVIDIA RTX 4090" in page and "0.003" in page


def test_an_empty_job_list_points_to_the_submit_form(developer_web: Client) -> None:
    assertContains(developer_web.get("/jobs/"), "You have not submitted any jobs yet.")


def test_submitting_a_job_queues_it_and_shows_its_events(developer_web: Client, developer: Any) -> None:
    form = developer_web.get("/jobs/new/")
    assertContains(form, '<option value="benchmark"')
    assertContains(form, '<option value="evm_block"')
    response = developer_web.post("/jobs/new/", {
        "kind": "benchmark", "spec": '{"measurements": ["cpu_gflops"]}', "gpu_model": RTX_4090, "gpus": "2",
        "min_vram_gb": "16", "max_price_wei": "3000000000000000", "budget_wei": ""}, follow=True)
    job = Job.objects.get(owner=developer.user)
    assertRedirects(response, f"/jobs/{job.pk}/")
    assert (job.state, job.spec, job.gpus, job.min_vram_gb, int(job.max_price_wei)) == (
        JobState.QUEUED, {"measurements": ["cpu_gflops"]}, 2, 16, 3 * 10**15)
    page = text(response)
    assert '<span class="state queued" id="job-state">queued</span>' in page
    assert "submitted" in page and "waiting for a matching offer" in page and "Cancel job" in page
    assert "0.003 ETH" in page and "0.01 ETH" in page  # the default budget


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"spec": "{not json"}, "spec", "Not valid JSON"),
    ({"spec": '{"measurements": ["vibes"]}'}, "spec", "spec[&#x27;measurements&#x27;][0]"),
    ({"spec": '{"duration_s": 601}'}, "spec", "spec[&#x27;duration_s&#x27;]: 601 is greater than the maximum"),
    ({"spec": '{"duration_s": NaN}'}, "spec", "spec[&#x27;duration_s&#x27;]: nan is not a finite number"),
    ({"kind": "mining"}, "kind", "Select a valid choice"),
    ({"kind": "evm_block", "spec": '{"blocks": [999]}'}, "spec",
     "spec[&#x27;blocks&#x27;][0]: no artifact 999 of yours"),
    ({"gpus": "0"}, "gpus", "greater than or equal to 1"),
    ({"budget_wei": "0"}, "budget_wei", "budget_wei must be a positive integer"),
    ({"max_price_wei": "lots"}, "max_price_wei", "Enter a whole number of wei"),
])
def test_bad_jobs_are_explained_next_to_the_field_and_write_nothing(developer_web: Client,
                                                                    data: dict[str, str], field: str,
                                                                    message: str) -> None:
    body = {"kind": "benchmark", "spec": "{}", "gpu_model": "", "gpus": "1", "min_vram_gb": "0", **data}
    response = developer_web.post("/jobs/new/", body)
    assert response.status_code == 200
    assert message in error_after(text(response), field)
    assert not Job.objects.exists()


def test_another_developers_job_is_not_found(developer_web: Client, other_developer: Any) -> None:
    theirs = jobs.submit_job(owner=other_developer.user, kind="benchmark")
    assert developer_web.get(f"/jobs/{theirs.pk}/").status_code == 404
    assert developer_web.post(f"/jobs/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == JobState.QUEUED


def test_cancelling_a_job_is_a_post_and_finished_jobs_explain_why_not(developer_web: Client,
                                                                       developer: Any) -> None:
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    assert developer_web.get(f"/jobs/{job.pk}/cancel/").status_code == 405
    response = developer_web.post(f"/jobs/{job.pk}/cancel/", follow=True)
    assertRedirects(response, f"/jobs/{job.pk}/")
    assertContains(response, '<span class="state cancelled" id="job-state">cancelled</span>')
    assertNotContains(response, "Cancel job")
    done = jobs.submit_job(owner=developer.user, kind="benchmark")
    Job.objects.filter(pk=done.pk).update(state=JobState.SUCCEEDED, finished_at=timezone.now())
    response = developer_web.post(f"/jobs/{done.pk}/cancel/", follow=True)
    assertContains(response, "already succeeded")


def test_the_job_list_is_paginated_and_tolerates_a_junk_page_number(developer_web: Client, developer: Any) -> None:
    made = [jobs.submit_job(owner=developer.user, kind="benchmark").pk for _ in range(30)]
    first = re.findall(r'href="/jobs/(\d+)/"', text(developer_web.get("/jobs/")))
    second = re.findall(r'href="/jobs/(\d+)/"', text(developer_web.get("/jobs/", {"page": "2"})))
    assert [int(pk) for pk in first + second] == made[::-1]
    assert len(first) == 25
    assertContains(developer_web.get("/jobs/", {"page": "lots"}), "Page 1 of 2")
    assertContains(developer_web.get("/jobs/", {"page": "99"}), "Page 2 of 2")


def test_an_evm_block_result_shows_a_row_per_block(developer_web: Client, developer: Any) -> None:
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    block = {"artifact": 4, "number": 19933122, "fork": "cancun", "transactions": 45, "gas_used": 2056821,
             "verified": True, "reexecuted": 6, "rounds": 3, "workers": 2, "elapsed_s": 0.8123456,
             "mismatch": None, "checks": {"gas_used": True}}
    result = {"engine": "reference", "workers": 2, "workers_requested": 2,
              "blocks": [block, {**block, "number": 19923400, "transactions": 24, "gas_used": 1624049,
                                 "reexecuted": 0, "rounds": 1, "elapsed_s": 0.1}],
              "totals": {"blocks": 2, "transactions": 69, "gas_used": 3680870, "reexecuted": 6, "elapsed_s": 0.9123456,
                         "verified": True}}
    Job.objects.filter(pk=job.pk).update(kind="evm_block", spec={"blocks": [4, 5]}, result=result,
                                         state=JobState.SUCCEEDED)

    page = text(developer_web.get(f"/jobs/{job.pk}/"))

    table = page[page.index('<table class="evm-blocks">'):page.index("</table>", page.index("evm-blocks"))]
    cells = [re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", table, re.S)]
    assert cells[9:27] == ["19933122", "cancun", "45", "2,056,821", "yes", "6", "3", "2", "0.812",
                           "19923400", "cancun", "24", "1,624,049", "yes", "0", "1", "2", "0.100"]
    assert cells[27:] == ["2 blocks", "", "69", "3,680,870", "all", "6", "", "", "0.912"]
    assert "<summary>Full result (JSON)</summary>" in page  # the whole document is still there


def test_a_result_that_is_not_shaped_like_blocks_is_shown_as_json(developer_web: Client, developer: Any) -> None:
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    Job.objects.filter(pk=job.pk).update(kind="evm_block", result={"blocks": "<b>odd</b>"}, state=JobState.SUCCEEDED)
    page = text(developer_web.get(f"/jobs/{job.pk}/"))
    assert "evm-blocks" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page


def test_a_split_job_links_to_its_children_and_they_back_to_it(developer_web: Client, developer: Any) -> None:
    from tests.conftest import upload

    blocks = [upload(developer, f"block {n}".encode()).json()["id"] for n in range(2)]
    parent = jobs.submit_job(owner=developer.user, kind="evm_block", spec={"blocks": blocks, "nodes": 2})
    first, second = parent.children.order_by("id")

    page = text(developer_web.get(f"/jobs/{parent.pk}/"))
    assert f'<a href="/jobs/{first.pk}/">job {first.pk}</a>' in page
    assert f'<a href="/jobs/{second.pk}/">job {second.pk}</a>' in page
    child_page = text(developer_web.get(f"/jobs/{second.pk}/"))
    assert f'<a href="/jobs/{parent.pk}/" id="job-parent">job {parent.pk}</a>' in child_page
