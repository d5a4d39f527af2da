"""Matching, reservations and run reports (the scheduling service, on the real database)."""
from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from marketplace.models import AttemptOutcome, Job, JobAttempt, Node, Offer
from marketplace.services import jobs, nodes, offers, scheduling
from marketplace.services.jobs import Requirements
from workers.runtime.spec import RunReport, RunState

RTX = "NVIDIA RTX 4090"


def node_with_offer(person: Any, name: str, price: int, count: int = 2, online: bool = True) -> tuple[Node, Offer]:
    node, _ = nodes.register_node(provider=person.user, name=name, region="eu-west", cpu_cores=8, ram_gb=32,
                                  gpus=[nodes.GpuDeclaration(RTX, count)])
    offer = offers.create_offer(provider=person.user, node_id=node.pk, gpu_model=RTX, gpu_count=count,
                                price_per_gpu_hour_wei=price)
    if online:
        nodes.record_heartbeat(node=node)
    return node, offer


def submit(person: Any, **fields: Any) -> Job:
    requirements = Requirements(gpu_model=fields.pop("gpu_model", RTX), gpus=fields.pop("gpus", 1))
    return jobs.submit_job(owner=person.user, kind="benchmark", requirements=requirements, **fields)


def test_lease_cost_rounds_up_to_the_wei():
    assert scheduling.lease_cost_wei(3600, 1, 3600) == 3600
    assert scheduling.lease_cost_wei(1, 1, 1) == 1  # 1/3600 wei is still a wei
    assert scheduling.lease_cost_wei(10**15, 2, 60) == 33_333_333_333_334  # 3.3e13 rounded up


def test_it_matches_the_cheapest_online_offer_that_fits(provider, developer):
    node_with_offer(provider, "dear", price=3 * 10**15)
    cheap_node, cheap = node_with_offer(provider, "cheap", price=10**15)
    node_with_offer(provider, "cheapest-but-offline", price=10**14, online=False)
    job = submit(developer)
    match = scheduling.match_job(job.pk)
    assert match is not None and match.spec.node_id == cheap_node.pk
    job.refresh_from_db()
    assert (job.state, job.offer_id, job.attempts) == ("dispatched", cheap.pk, 1)
    assert Offer.objects.get(pk=cheap.pk).reserved_gpus == 1


def test_ties_go_to_the_node_with_the_better_record(provider, developer):
    shaky, _ = node_with_offer(provider, "shaky", price=10**15)
    solid, _ = node_with_offer(provider, "solid", price=10**15)
    Node.objects.filter(pk=shaky.pk).update(runs_failed=3)
    Node.objects.filter(pk=solid.pk).update(runs_succeeded=3)
    match = scheduling.match_job(submit(developer).pk)
    assert match is not None and match.spec.node_id == solid.pk


def test_it_respects_max_price_budget_and_requirements(provider, developer):
    node_with_offer(provider, "rig", price=10**15, count=2)
    assert scheduling.match_job(submit(developer, max_price_wei=10**14).pk) is None
    # The shortest lease (60 s) of 2 GPUs at 1e15 wei/GPU-hour costs 3.33e13 wei.
    assert scheduling.match_job(submit(developer, gpus=2, budget_wei=3 * 10**13).pk) is None
    assert scheduling.match_job(submit(developer, gpus=3).pk) is None
    assert scheduling.match_job(submit(developer, gpu_model="NVIDIA A100 40GB").pk) is None
    assert scheduling.match_job(submit(developer, gpus=2, budget_wei=4 * 10**13).pk) is not None


def test_two_jobs_never_hold_the_same_gpus(provider, developer):
    _, offer = node_with_offer(provider, "rig", price=10**15, count=1)
    first, second = submit(developer), submit(developer)
    assert scheduling.match_job(first.pk) is not None
    assert scheduling.match_job(second.pk) is None
    assert Offer.objects.get(pk=offer.pk).reserved_gpus == 1
    assert Job.objects.get(pk=second.pk).state == "queued"


def test_matching_twice_is_harmless(provider, developer):
    node_with_offer(provider, "rig", price=10**15)
    job = submit(developer)
    assert scheduling.match_job(job.pk) is not None
    assert scheduling.match_job(job.pk) is None  # a redelivered task finds nothing to do
    assert JobAttempt.objects.filter(job=job).count() == 1


def report(state: str, **fields: Any) -> RunReport:
    return RunReport(state=state, **fields)


def test_reports_move_the_job_and_only_the_active_attempt_can_finish_it(provider, developer, settings):
    node, offer = node_with_offer(provider, "rig", price=10**15)
    job = submit(developer)
    match = scheduling.match_job(job.pk)
    assert match is not None
    assert scheduling.apply_report(match.attempt_id, report(RunState.RUNNING, progress=0.5, message="half",
                                                            logs=("line 1",))) == "progress"
    job.refresh_from_db()
    assert (job.state, job.progress, job.progress_message) == ("running", 0.5, "half")
    assert job.events.filter(type="log").get().reason == "line 1"
    assert scheduling.requeue_attempt(match.attempt_id, "node lost")
    node.refresh_from_db()
    assert node.last_heartbeat_at is None  # offline until its agent heartbeats again
    assert Offer.objects.get(pk=offer.pk).reserved_gpus == 0
    assert scheduling.apply_report(match.attempt_id, report(RunState.SUCCEEDED, output={"x": 1})) == "stale"
    job.refresh_from_db()
    assert job.state == "queued" and job.result is None


def test_success_stores_the_result_frees_the_gpus_and_scores_the_node(provider, developer):
    node, offer = node_with_offer(provider, "rig", price=10**15)
    job = submit(developer)
    match = scheduling.match_job(job.pk)
    assert match is not None
    output = {"cpu_gflops": 42.4, "memory_bandwidth_gbps": 10.0}
    assert scheduling.apply_report(match.attempt_id, report(RunState.SUCCEEDED, output=output)) == "succeeded"
    job.refresh_from_db()
    assert (job.state, job.result, job.progress) == ("succeeded", output, 1.0)
    assert job.result_artifact is not None and job.result_artifact.owner == developer.user
    offer.refresh_from_db()
    assert (offer.reserved_gpus, offer.score) == (0, 42)
    assert Node.objects.get(pk=node.pk).runs_succeeded == 1
    assert JobAttempt.objects.get(pk=match.attempt_id).outcome == AttemptOutcome.SUCCEEDED


def test_a_job_fails_after_its_last_attempt_is_lost(provider, developer, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    node, _ = node_with_offer(provider, "rig", price=10**15)
    job = submit(developer)
    for _ in range(2):
        nodes.record_heartbeat(node=node)
        match = scheduling.match_job(job.pk)
        assert match is not None
        scheduling.requeue_attempt(match.attempt_id, "node lost")
    job.refresh_from_db()
    assert job.state == "failed" and "gave up after 2 attempts" in job.events.last().reason
    assert list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True)) == ["lost", "lost"]


def test_cancelling_a_dispatched_job_frees_its_gpus(provider, developer):
    _, offer = node_with_offer(provider, "rig", price=10**15)
    job = submit(developer)
    match = scheduling.match_job(job.pk)
    assert match is not None
    jobs.cancel_job(owner=developer.user, job_id=job.pk)
    assert Offer.objects.get(pk=offer.pk).reserved_gpus == 0
    assert JobAttempt.objects.get(pk=match.attempt_id).outcome == AttemptOutcome.CANCELLED
    assert scheduling.apply_report(match.attempt_id, report(RunState.SUCCEEDED, output={})) == "stale"


def test_queued_jobs_past_their_timeout_fail_with_the_reason(developer):
    job = submit(developer, queue_timeout_s=5)
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timezone.timedelta(seconds=6))
    assert scheduling.fail_timed_out_jobs() == 1
    job.refresh_from_db()
    assert job.state == "failed" and "queue timeout of 5 s" in job.events.last().reason


def test_the_attempts_endpoint_lists_each_attempt(provider, developer):
    node_with_offer(provider, "rig", price=10**15)
    job = submit(developer)
    match = scheduling.match_job(job.pk)
    assert match is not None
    scheduling.requeue_attempt(match.attempt_id, "node lost")
    body = developer.client.get(f"/api/v1/jobs/{job.pk}/attempts/").json()
    assert [(a["number"], a["outcome"], a["reason"]) for a in body["results"]] == [(1, "lost", "node lost")]
    assert provider.client.get(f"/api/v1/jobs/{job.pk}/attempts/").status_code == 404
