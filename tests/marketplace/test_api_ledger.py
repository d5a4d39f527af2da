"""GET /api/v1/ledger/ (your escrow position and leases) and the lease on the job representation.

The ledger rows come from `services.ledger.apply_event` fed the contract's events, and the leases
from the real matching (see `tests.web.escrow`): the API is read against the real writer.
"""
from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace.models import Job
from marketplace.services import jobs
from tests.conftest import Person
from tests.web.escrow import (
    CHAIN_ID,
    DEPOSIT,
    DEVELOPER_KEY,
    ESCROW,
    FEE_BPS,
    LEASE_CAP,
    MIN_STAKE,
    OTHER_KEY,
    PROVIDER_STAKE,
    PROVIDER_WITHDRAWAL,
    RESULT_HASH,
    TOKEN,
    Escrow,
    Market,
    funded_developer,
    leased_job,
    market,
    staked_provider,
)

URL = "/api/v1/ledger/"
AMOUNTS = ("available", "reserved", "pending_reservations", "stake", "lease_cap", "deposited", "withdrawn", "earned",
           "spent", "fees", "compensated", "slashed")
ZERO_POSITION = {**{name: "0" for name in AMOUNTS}, "registered": False, "unbonding_at": None, "open_leases": 0}


@pytest.fixture
def escrow(settings: Any, monkeypatch: pytest.MonkeyPatch, db: None) -> Escrow:
    return Escrow.configure(settings, monkeypatch)


@pytest.fixture
def the_market(escrow: Escrow, provider: Person, developer: Person) -> Market:
    return market(escrow, provider, developer)


def ledger(person: Person, **params: Any) -> dict[str, Any]:
    response = person.client.get(URL, params)
    assert response.status_code == 200, response.json()
    return response.json()


def test_without_a_chain_the_ledger_is_empty_and_says_there_is_no_chain(developer: Person) -> None:
    body = ledger(developer)
    assert body == {"chain": None, "address": None, **ZERO_POSITION,
                    "leases": {"count": 0, "next": None, "previous": None, "results": []}}


def test_without_a_chain_a_linked_wallet_is_still_named(developer: Person) -> None:
    wallet = Escrow.link(developer, DEVELOPER_KEY)
    body = ledger(developer)
    assert body["chain"] is None and body["address"] == wallet and body["available"] == "0"


def test_with_a_chain_but_no_wallet_the_contracts_are_named_and_the_position_is_zero(escrow: Escrow,
                                                                                      developer: Person) -> None:
    body = ledger(developer)
    assert body["chain"] == {"id": CHAIN_ID, "escrow": ESCROW, "token": TOKEN, "min_stake_wei": str(MIN_STAKE),
                             "fee_bps": FEE_BPS, "paused": False}
    assert body["address"] is None
    assert {name: body[name] for name in ZERO_POSITION} == ZERO_POSITION
    assert body["leases"]["results"] == []


def test_a_developer_sees_deposits_reservations_and_spend(the_market: Market, developer: Person) -> None:
    m = the_market
    body = ledger(developer)
    assert body["address"] == m.developer_wallet
    assert {name: body[name] for name in ("available", "reserved", "lease_cap", "deposited", "spent", "withdrawn",
                                          "compensated", "pending_reservations")} == {
        "available": str(m.developer_available), "reserved": str(m.reserved_each), "lease_cap": str(LEASE_CAP),
        "deposited": str(DEPOSIT), "spent": str(m.payment), "withdrawn": "0", "compensated": "0",
        "pending_reservations": "0"}
    assert (body["registered"], body["stake"], body["open_leases"]) == (False, "0", 0)


def test_a_developers_leases_come_newest_first_with_amounts_and_transactions(the_market: Market,
                                                                            developer: Person) -> None:
    m = the_market
    leases = ledger(developer)["leases"]
    assert leases["count"] == 2
    newest, oldest = leases["results"]
    assert (newest["id"], newest["job"], newest["state"], newest["role"]) == (
        m.open.lease_id, m.open_job.pk, "open", "tenant")
    assert newest["close_tx"] is None and newest["result_hash"] is None and newest["open_tx"] == m.open.open_tx
    assert oldest == {
        "id": m.settled.lease_id, "job": m.settled_job.pk, "role": "tenant", "state": "settled",
        "tenant": m.developer_wallet, "provider": m.provider_wallet, "rate_per_hour_wei": str(10**15),
        "reserved_wei": str(m.reserved_each), "payment_wei": str(m.payment), "fee_wei": str(m.fee),
        "refund_wei": str(m.reserved_each - m.payment), "slashed_wei": "0", "used_seconds": 1800,
        "open_tx": m.settled.open_tx, "close_tx": m.settled.close_tx, "result_hash": "0x" + RESULT_HASH.hex(),
        "deadline": oldest["deadline"], "opened_at": oldest["opened_at"], "closed_at": oldest["closed_at"]}
    assert len(oldest["open_tx"]) == len(oldest["close_tx"]) == 66 and oldest["closed_at"]


def test_a_provider_sees_stake_earnings_and_its_leases_as_provider(the_market: Market, provider: Person) -> None:
    m = the_market
    body = ledger(provider)
    assert body["address"] == m.provider_wallet
    assert (body["registered"], body["stake"], body["open_leases"], body["unbonding_at"]) == (
        True, str(PROVIDER_STAKE), 1, None)
    assert (body["available"], body["earned"], body["withdrawn"], body["slashed"]) == (
        str(m.provider_available), str(m.provider_earned), str(PROVIDER_WITHDRAWAL), "0")
    assert [(row["state"], row["role"], row["payment_wei"]) for row in body["leases"]["results"]] == [
        ("open", "provider", "0"), ("settled", "provider", str(m.payment))]


def test_the_leases_are_paginated_like_other_lists(the_market: Market, developer: Person) -> None:
    first = ledger(developer, limit=1)
    assert first["leases"]["count"] == 2 and len(first["leases"]["results"]) == 1
    assert first["leases"]["previous"] is None and "offset=1" in first["leases"]["next"]
    second = developer.client.get(first["leases"]["next"]).json()
    assert second["leases"]["results"][0]["id"] == the_market.settled.lease_id
    assert second["leases"]["next"] is None
    assert second["available"] == first["available"]  # the position is on every page


@pytest.mark.parametrize("params", [{"limit": "abc"}, {"offset": "-3"}, {"limit": "0"}, {"limit": "100000"},
                                    {"offset": "99999999999999999999999"}])
def test_odd_paging_parameters_never_break_the_ledger(the_market: Market, developer: Person,
                                                      params: dict[str, str]) -> None:
    response = developer.client.get(URL, params)
    assert response.status_code in (200, 404), response.content


def test_nobody_sees_another_wallets_position_or_leases(the_market: Market, other_developer: Person,
                                                        escrow: Escrow) -> None:
    Escrow.link(other_developer, OTHER_KEY)
    body = ledger(other_developer)
    assert body["available"] == "0" and body["leases"]["count"] == 0


def test_rows_of_another_chain_are_not_this_chains(escrow: Escrow, developer: Person, settings: Any) -> None:
    funded_developer(escrow, developer)
    settings.CHAIN_ID = 1  # the operator pins another chain: nothing recorded there yet
    body = ledger(developer)
    assert body["chain"]["id"] == 1 and body["chain"]["escrow"] is None and body["available"] == "0"


def test_anonymous_callers_are_refused(anon: Any, db: None) -> None:
    assert anon.get(URL).status_code == 401


# --- the job's lease and wait reason -------------------------------------------------------------

def job_body(person: Person, job: Job) -> dict[str, Any]:
    response = person.client.get(f"/api/v1/jobs/{job.pk}/")
    assert response.status_code == 200
    return response.json()


def test_a_job_without_a_chain_has_no_lease_and_no_wait_reason(developer: Person) -> None:
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    body = job_body(developer, job)
    assert body["lease"] is None and body["wait_reason"] == ""


def test_a_job_that_cannot_be_paid_for_says_why_it_waits(escrow: Escrow, provider: Person,
                                                         developer: Person) -> None:
    staked_provider(escrow, provider)
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    assert escrow.match(job) is None
    body = job_body(developer, job)
    assert body["state"] == "queued" and body["lease"] is None
    assert body["wait_reason"].startswith("waiting for funds: link a wallet")


def test_a_jobs_lease_goes_from_opening_to_open_to_settled(escrow: Escrow, provider: Person,
                                                           developer: Person) -> None:
    provider_wallet = staked_provider(escrow, provider)
    developer_wallet = funded_developer(escrow, developer)
    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    row = escrow.match(job)
    assert row is not None
    opening = job_body(developer, job)["lease"]
    assert opening == {"id": row.lease_id, "state": "opening", "open_tx": None, "settle_tx": None,
                       "tenant": developer_wallet, "provider": provider_wallet, "rate_per_hour_wei": str(10**15),
                       "reserved_wei": str(10**15), "payment_wei": "0", "fee_wei": "0", "refund_wei": "0",
                       "slashed_wei": "0", "result_hash": None, "deadline": None, "used_seconds": None,
                       "error": None}
    assert job_body(developer, job)["wait_reason"] == ""

    lease = escrow.open(row)
    opened = job_body(developer, job)["lease"]
    assert (opened["state"], opened["open_tx"], opened["settle_tx"]) == ("open", lease.open_tx, None)

    lease = escrow.settle(lease, 1800)
    settled = job_body(developer, job)["lease"]
    assert (settled["state"], settled["settle_tx"], settled["payment_wei"], settled["used_seconds"]) == (
        "settled", lease.close_tx, str(10**15 // 2), 1800)
    assert settled["result_hash"] == "0x" + RESULT_HASH.hex()


def test_the_job_list_carries_leases_without_a_query_per_unleased_job(escrow: Escrow, provider: Person,
                                                                      developer: Person) -> None:
    staked_provider(escrow, provider)
    funded_developer(escrow, developer)
    leased, lease = leased_job(escrow, developer)
    for _ in range(5):
        jobs.submit_job(owner=developer.user, kind="benchmark")
    with CaptureQueriesContext(connection) as few:
        body = developer.client.get("/api/v1/jobs/").json()
    by_id = {row["id"]: row["lease"] for row in body["results"]}
    assert by_id.pop(leased.pk)["state"] == "open" and set(by_id.values()) == {None}
    for _ in range(5):
        jobs.submit_job(owner=developer.user, kind="benchmark")
    with CaptureQueriesContext(connection) as more:
        developer.client.get("/api/v1/jobs/")
    assert len(more.captured_queries) == len(few.captured_queries)


def test_the_schema_describes_the_new_shapes(anon: Any, db: None) -> None:
    schema = anon.get("/api/schema/?format=json").json()
    assert {"/api/v1/wallet/", "/api/v1/ledger/"} <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert {"lease", "wait_reason"} <= set(components["Job"]["properties"])
    assert "leases" in components["Ledger"]["properties"]
