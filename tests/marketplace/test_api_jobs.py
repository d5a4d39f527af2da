"""Jobs over the API: submission and its checks, reading, cancelling, events and results."""
from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.throttling import SimpleRateThrottle

from marketplace.models import Job, JobEvent
from marketplace.services.jobs import transition_job
from tests.conftest import submit_job
from workers.runtime import kinds

JOBS = "/api/v1/jobs/"


def post(person: Any, body: Any) -> Any:
    return person.client.post(JOBS, body, format="json")


def assert_refused(response: Any, code: str, status: int = 400) -> None:
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert not Job.objects.exists() and not JobEvent.objects.exists()


# --- submitting --------------------------------------------------------------------------------

def test_a_job_with_only_a_kind_gets_every_default(developer):
    response = post(developer, {"kind": "benchmark"})

    assert response.status_code == 201
    body = response.json()
    assert {k: v for k, v in body.items() if k not in {"id", "created_at", "updated_at"}} == {
        "kind": "benchmark", "state": "queued", "spec": {"measurements": []},
        "requirements": {"gpu_model": "", "min_vram_gb": 0, "gpus": 1},
        "max_price_wei": None, "budget_wei": str(10**16), "queue_timeout_s": None, "offer": None, "node": None,
        "attempts": 0, "progress": 0.0, "progress_message": "", "wait_reason": "", "lease": None,
        "result_artifact": None, "parent": None, "children": [], "finished_at": None}
    assert Job.objects.get(pk=body["id"]).owner == developer.user


def test_the_default_budget_comes_from_settings(developer, settings):
    settings.JOB_DEFAULT_BUDGET_WEI = 12345
    assert submit_job(developer)["budget_wei"] == "12345"


def test_a_job_with_every_field(developer):
    body = submit_job(developer, spec={"measurements": ["cpu_gflops", "gpu"]},
                      requirements={"gpu_model": "NVIDIA H100 80GB HBM3", "min_vram_gb": 80, "gpus": 8},
                      max_price_wei=str(3 * 10**15), budget_wei=10**18)

    assert body["spec"] == {"measurements": ["cpu_gflops", "gpu"]}
    assert body["requirements"] == {"gpu_model": "NVIDIA H100 80GB HBM3", "min_vram_gb": 80, "gpus": 8}
    assert (body["max_price_wei"], body["budget_wei"]) == (str(3 * 10**15), str(10**18))
    job = Job.objects.get(pk=body["id"])
    assert (job.gpu_model, job.min_vram_gb, job.gpus, int(job.max_price_wei), int(job.budget_wei)) == (
        "NVIDIA H100 80GB HBM3", 80, 8, 3 * 10**15, 10**18)


def test_a_job_may_leave_the_price_open_explicitly(developer):
    assert submit_job(developer, max_price_wei=None)["max_price_wei"] is None


def test_a_submitted_job_has_its_first_two_events(developer):
    job = submit_job(developer)

    events = developer.client.get(f"{JOBS}{job['id']}/events/").json()

    assert events["count"] == 2
    assert [(e["type"], e["from_state"], e["to_state"]) for e in events["results"]] == [
        ("state", "", "pending"), ("state", "pending", "queued")]


def test_a_reserved_kind_cannot_be_submitted_yet(developer, monkeypatch):
    reserved = kinds.JobKind(name="quantum", description="not yet", spec_schema={"type": "object"}, available=False)
    monkeypatch.setitem(kinds._REGISTRY, reserved.name, reserved)
    assert_refused(post(developer, {"kind": "quantum", "spec": {}}), "job_kind_unavailable")


@pytest.mark.parametrize(("kind", "code"), [("mining", "unknown_job_kind"), ("BENCHMARK", "unknown_job_kind"),
                                            ("", "blank"), (None, "null"), ("x" * 33, "max_length"),
                                            (["benchmark"], "invalid")])
def test_an_unknown_or_malformed_kind_is_refused(developer, kind, code):
    assert_refused(post(developer, {"kind": kind}), code)


def test_a_job_needs_a_kind(developer):
    assert_refused(post(developer, {"spec": {}}), "required")


@pytest.mark.parametrize("spec", [
    {"measurements": "cpu_gflops"},  # wrong type
    {"measurements": ["warp_speed"]},  # not a known measurement
    {"measurements": [1]},
    {"measurements": ["gpu", "gpu"]},  # twice
    {"iterations": 10},  # unknown key
    {"measurements": [], "extra": True},
    [], ["cpu_gflops"], "cpu_gflops", 7, True,  # not an object
])
def test_a_malformed_spec_is_refused(developer, spec):
    response = post(developer, {"kind": "benchmark", "spec": spec})

    assert_refused(response, "invalid_spec")
    assert response.json()["field"] == "spec"


def test_a_null_spec_is_refused(developer):
    assert post(developer, {"kind": "benchmark", "spec": None}).status_code == 400
    assert not Job.objects.exists()


def test_a_spec_over_the_size_limit_is_refused_before_it_is_checked(developer, settings):
    settings.JOB_SPEC_MAX_BYTES = 1024

    assert_refused(post(developer, {"kind": "benchmark", "spec": {"padding": "x" * 1024}}), "spec_too_large")


def test_a_spec_over_the_default_size_limit_is_refused(developer):
    assert_refused(post(developer, {"kind": "benchmark", "spec": {"measurements": ["gpu"] * 20_000}}),
                   "spec_too_large")


@pytest.mark.parametrize(("requirements", "code"), [
    ({"gpu_model": "NVIDIA GTX 480"}, "invalid_choice"),
    ({"gpus": 0}, "min_value"),
    ({"gpus": 65}, "max_value"),
    ({"gpus": "two"}, "invalid"),
    ({"min_vram_gb": -1}, "min_value"),
    ({"min_vram_gb": 1025}, "max_value"),
    ({"cpus": 4}, "unknown_field"),
    ("NVIDIA L4", "invalid"),
])
def test_impossible_requirements_are_refused(developer, requirements, code):
    assert_refused(post(developer, {"kind": "benchmark", "requirements": requirements}), code)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("max_price_wei", 0, "invalid_price"),
    ("budget_wei", 0, "invalid_budget"),
    ("budget_wei", None, "null"),
    ("budget_wei", -1, "range"),
    ("max_price_wei", "-1", "invalid"),
    ("budget_wei", 2**256, "range"),
    ("budget_wei", 1.5, "invalid"),
    ("budget_wei", "1e18", "invalid"),
])
def test_impossible_amounts_of_money_are_refused(developer, field, value, code):
    assert_refused(post(developer, {"kind": "benchmark", field: value}), code)


def test_job_submissions_are_throttled_per_user_but_reading_is_not(monkeypatch, developer, other_developer):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"job_create": "3/min"})
    for _ in range(3):
        submit_job(developer)

    throttled = post(developer, {"kind": "benchmark"})

    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert Job.objects.filter(owner=developer.user).count() == 3
    assert developer.client.get(JOBS).status_code == 200
    assert post(other_developer, {"kind": "benchmark"}).status_code == 201


# --- reading -----------------------------------------------------------------------------------

def test_a_developer_lists_their_jobs_newest_first(developer, other_developer):
    first, second = submit_job(developer), submit_job(developer)
    submit_job(other_developer)

    body = developer.client.get(JOBS).json()

    assert body["count"] == 2
    assert [job["id"] for job in body["results"]] == [second["id"], first["id"]]


def test_a_developer_reads_one_job(developer):
    job = submit_job(developer, requirements={"gpus": 2})
    response = developer.client.get(f"{JOBS}{job['id']}/")
    assert response.status_code == 200
    assert response.json() == job


@pytest.mark.parametrize(("query", "expected"), [
    ({"state": "queued"}, ["queued"]),
    ({"state": "cancelled"}, ["cancelled"]),
    ({"state": "succeeded"}, []),
    ({"kind": "benchmark"}, ["cancelled", "queued"]),
    ({"kind": "evm_block"}, []),
    ({}, ["cancelled", "queued"]),
])
def test_jobs_can_be_filtered_by_state_and_kind(developer, query, expected):
    submit_job(developer)
    cancelled = submit_job(developer)
    developer.client.post(f"{JOBS}{cancelled['id']}/cancel/")

    response = developer.client.get(JOBS, query)

    assert response.status_code == 200
    assert [job["state"] for job in response.json()["results"]] == expected


def test_an_unknown_state_filter_is_refused(developer):
    response = developer.client.get(JOBS, {"state": "exploded"})
    assert response.status_code == 400
    assert set(response.json()) >= {"code", "detail"}


def test_the_job_list_pages_by_limit_and_offset_and_caps_the_limit(developer):
    Job.objects.bulk_create(Job(owner=developer.user, kind="benchmark", budget_wei=1) for _ in range(130))

    assert len(developer.client.get(JOBS).json()["results"]) == 20
    assert len(developer.client.get(JOBS, {"limit": 10000}).json()["results"]) == 100
    body = developer.client.get(JOBS, {"limit": 100, "offset": 100}).json()
    assert body["count"] == 130 and len(body["results"]) == 30


# --- cancelling --------------------------------------------------------------------------------

def test_a_developer_cancels_a_queued_job(developer):
    job = submit_job(developer)

    response = developer.client.post(f"{JOBS}{job['id']}/cancel/")

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["finished_at"] is not None
    last = JobEvent.objects.filter(job_id=job["id"]).last()
    assert (last.from_state, last.to_state, last.reason) == ("queued", "cancelled", "cancelled by its owner")


def test_cancelling_twice_is_harmless(developer):
    job = submit_job(developer)
    first = developer.client.post(f"{JOBS}{job['id']}/cancel/")

    second = developer.client.post(f"{JOBS}{job['id']}/cancel/")

    assert second.status_code == 200
    assert second.json() == first.json()
    assert JobEvent.objects.filter(job_id=job["id"], to_state="cancelled").count() == 1


@pytest.mark.parametrize("state", ["dispatched", "running"])
def test_a_running_job_can_be_cancelled(developer, state):
    job = submit_job(developer)
    transition_job(job_id=job["id"], to_state="dispatched")
    if state == "running":
        transition_job(job_id=job["id"], to_state="running")

    assert developer.client.post(f"{JOBS}{job['id']}/cancel/").json()["state"] == "cancelled"


@pytest.mark.parametrize("final", ["succeeded", "failed"])
def test_a_finished_job_cannot_be_cancelled(developer, final):
    job = submit_job(developer)
    Job.objects.filter(pk=job["id"]).update(state=final, finished_at=timezone.now())

    response = developer.client.post(f"{JOBS}{job['id']}/cancel/")

    assert response.status_code == 409
    assert response.json()["code"] == "job_finished"
    assert Job.objects.get(pk=job["id"]).state == final


# --- results -----------------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["queued", "running", "failed", "cancelled"])
def test_a_result_is_not_ready_until_the_job_succeeded(developer, state):
    job = submit_job(developer)
    Job.objects.filter(pk=job["id"]).update(state=state)

    response = developer.client.get(f"{JOBS}{job['id']}/result/")

    assert response.status_code == 409
    assert response.json() == {"code": "result_not_ready", "detail": f"job {job['id']} is {state}"}


def test_a_succeeded_jobs_result_can_be_read(developer):
    job = submit_job(developer)
    Job.objects.filter(pk=job["id"]).update(state="succeeded", result={"cpu_gflops": 812.5})

    response = developer.client.get(f"{JOBS}{job['id']}/result/")

    assert response.status_code == 200
    assert response.json() == {"state": "succeeded", "result": {"cpu_gflops": 812.5}, "result_artifact": None}


# --- what the API does not allow ---------------------------------------------------------------

def test_a_job_cannot_be_edited_or_deleted(developer):
    job = submit_job(developer)
    assert developer.client.patch(f"{JOBS}{job['id']}/", {"state": "succeeded"}, format="json").status_code == 405
    assert developer.client.delete(f"{JOBS}{job['id']}/").status_code == 405
    assert Job.objects.get(pk=job["id"]).state == "queued"


@pytest.mark.parametrize(("method", "suffix"), [
    ("get", ""), ("post", ""), ("get", "1/"), ("post", "1/cancel/"), ("get", "1/events/"), ("get", "1/result/"),
])
def test_jobs_need_a_token(anon, method, suffix):
    response = getattr(anon, method)(f"{JOBS}{suffix}")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db(transaction=True)
def test_racing_cancels_of_one_job_all_succeed_and_record_one_event(developer):
    """Cancelling is idempotent under concurrency too: six cancels at once, each on its own connection."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from django.db import connection
    from rest_framework.test import APIClient

    job = submit_job(developer)
    start = Barrier(6)

    def cancel(_: int) -> int:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {developer.token}")
            start.wait()
            return client.post(f"{JOBS}{job['id']}/cancel/").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(cancel, range(6)))

    assert statuses == [200] * 6
    assert JobEvent.objects.filter(job_id=job["id"], to_state="cancelled").count() == 1
