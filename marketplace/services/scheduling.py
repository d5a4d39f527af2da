"""Matching queued jobs to offers, reserving their GPUs, and applying what runs report.

Every function here is one transaction that re-reads and locks the rows it changes and checks
their state first, so a Celery task that runs twice (redelivered after a worker died) or two
workers racing on one job do no harm: the second finds nothing left to do.

GPU reservations are conditional UPDATEs (``reserved_gpus + n <= gpu_count``), so two jobs can
never hold the same GPUs, whatever the isolation level and even without row locks (SQLite).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, IntegerField, Subquery, Value, When
from django.utils import timezone

from marketplace import dispatch
from marketplace.models import AttemptOutcome, Job, JobAttempt, JobEvent, JobEventType, JobState, Node, Offer
from marketplace.services import job_inputs, leases, verification
from marketplace.services import jobs as job_service
from workers.runtime.spec import JobSpec, RunReport, RunState

log = logging.getLogger(__name__)

MATCH_CANDIDATES = 20  # cheapest offers considered per match; the rest are dearer anyway
PROGRESS_EVENT_STEP = 0.1  # record a progress event at most every 10 %, or when the message changes
START_TIMEOUT = timedelta(seconds=60)  # a run not started by then (its node is gone) is handed back
ORPHAN_GRACE = timedelta(seconds=10)  # matched but not handed to Ray after this: the worker died in between
LEASE_OPEN_TIMEOUT = timedelta(minutes=5)  # a lease not open by then (chain down, outbox stuck): try again later


@dataclass(frozen=True)
class Match:
    """A job matched to an offer: the attempt that now holds the GPUs."""

    attempt_id: int
    spec: JobSpec
    lease_pending: bool = False  # the run starts when its lease opens on chain (`services.leases`)


def lease_cost_wei(price_per_gpu_hour_wei: int, gpus: int, seconds: int) -> int:
    """What ``gpus`` GPUs cost for ``seconds`` at a price per GPU-hour, rounded up to the wei.

    >>> lease_cost_wei(3600, 2, 1800)
    3600
    """
    return -(-price_per_gpu_hour_wei * gpus * seconds // 3600)


def candidate_offers(job: Job, now: datetime) -> list[Offer]:
    """Offers that fit the job, cheapest first; ties go to the node with the best track record.

    A child of a split job (see `services.jobs`) prefers the nodes not running one of its siblings
    (an active attempt of another child of its parent) even when they are dearer, since spreading
    the blocks over nodes is what the split is for; a busy node still takes it when nothing else fits.
    """
    offers = Offer.objects.available(now).filter(
        vram_gb__gte=job.min_vram_gb, gpu_count__gte=F("reserved_gpus") + job.gpus)
    if job.gpu_model:
        offers = offers.filter(gpu_model=job.gpu_model)
    if job.max_price_wei is not None:
        offers = offers.filter(price_per_gpu_hour_wei__lte=job.max_price_wei)
    # A node that returned a wrong result for this job does not get it again.
    offers = offers.exclude(node_id__in=JobAttempt.objects.filter(job=job, outcome=AttemptOutcome.WRONG)
                            .values("node_id"))
    order: list[Any] = ["price_per_gpu_hour_wei", F("node__runs_failed") - F("node__runs_succeeded"), "id"]
    if job.parent_id is not None:
        sibling_nodes = JobAttempt.objects.filter(job__parent_id=job.parent_id, outcome=AttemptOutcome.ACTIVE) \
            .exclude(job_id=job.pk).values("node_id")
        offers = offers.annotate(sibling_here=Case(When(node_id__in=Subquery(sibling_nodes), then=Value(1)),
                                                   default=Value(0), output_field=IntegerField()))
        order.insert(0, "sibling_here")
    ordered = offers.order_by(*order)
    return [offer for offer in ordered[:MATCH_CANDIDATES]
            if lease_cost_wei(offer.price_per_gpu_hour_wei, job.gpus, offer.min_duration_s) <= job.budget_wei]


def _reserve(offer: Offer, gpus: int) -> bool:
    """Take ``gpus`` GPUs of the offer if they are still free; False if someone was faster."""
    return Offer.objects.filter(pk=offer.pk, reserved_gpus__lte=F("gpu_count") - gpus).update(
        reserved_gpus=F("reserved_gpus") + gpus) == 1


def _release(attempt: JobAttempt) -> None:
    """Free the attempt's GPUs, and have the queue looked at now: a waiting job may fit them."""
    if attempt.offer_id is not None:
        Offer.objects.filter(pk=attempt.offer_id, reserved_gpus__gte=attempt.gpus).update(
            reserved_gpus=F("reserved_gpus") - attempt.gpus)
        dispatch.enqueue_sweep()


def any_free_gpus(now: datetime | None = None) -> bool:
    """Whether any available offer has a GPU free: if not, no queued job can match (a cheap check
    that saves the sweep from trying every queued job in turn)."""
    return Offer.objects.available(now or timezone.now()).exists()


def spec_for(attempt: JobAttempt) -> JobSpec:
    """What the node needs to run this attempt."""
    job = attempt.job
    return JobSpec(job_id=job.pk, attempt=attempt.number, kind=job.kind, spec=job.spec, gpus=attempt.gpus,
                   node_id=attempt.node_id or 0, gpu_model=attempt.offer.gpu_model if attempt.offer else "")


def spec_to_run(match: Match) -> JobSpec | None:
    """The match's spec with its input artifacts' bytes attached (read outside the matching
    transaction: they may be megabytes); None, with the attempt failed, if an input is gone."""
    try:
        return job_inputs.attach_inputs(match.spec)
    except job_inputs.InputUnavailable as exc:
        fail_attempt(match.attempt_id, str(exc))
        return None


@transaction.atomic
def match_job(job_id: int, *, now: datetime | None = None) -> Match | None:
    """Match a queued job to the cheapest fitting offer (see `candidate_offers`) and reserve its GPUs;
    None if none fits now."""
    now = now or timezone.now()
    job = Job.objects.select_for_update().filter(pk=job_id, state=JobState.QUEUED).first()
    if job is None:
        return None  # already matched, cancelled or finished: nothing to do
    if job.parent_id is not None:
        # Siblings are matched one at a time (child row, then parent row: the family's lock order), so
        # each sees where the others went and they spread over the nodes even when matched at once.
        Job.objects.select_for_update().filter(pk=job.parent_id).values_list("pk").first()
    if not leases.enabled():
        for offer in candidate_offers(job, now):
            if _reserve(offer, job.gpus):
                return _open_attempt(job, offer)
        return None
    return _match_leased(job, now)


def _match_leased(job: Job, now: datetime) -> Match | None:
    """Matching with a chain: the cheapest offer whose provider is staked and whose lease the
    developer can pay; otherwise the job keeps waiting, with the (cheapest offer's) reason shown."""
    first_problem = leases.escrow_problem()
    if first_problem is None:
        for offer in candidate_offers(job, now):
            terms = leases.lease_terms(job, offer)
            problem = leases.offer_problem(job, offer, terms)
            if problem is None and terms is not None and _reserve(offer, job.gpus):
                return _open_attempt(job, offer, terms)
            first_problem = first_problem or problem
    if first_problem is not None:
        leases.note_waiting(job, first_problem)
    return None


def _open_attempt(job: Job, offer: Offer, terms: leases.LeaseTerms | None = None) -> Match:
    job.attempts += 1
    job.offer, job.node = offer, offer.node
    job.save(update_fields=["attempts", "offer", "node", "updated_at"])
    attempt = JobAttempt.objects.create(job=job, number=job.attempts, offer=offer, node=offer.node, gpus=job.gpus,
                                        price_per_gpu_hour_wei=offer.price_per_gpu_hour_wei)
    waiting = f"; waiting for lease {attempt.pk} to open on chain ({terms.reserved_wei} wei)" if terms else ""
    job_service.transition_job(job_id=job.pk, to_state=JobState.DISPATCHED, reason=(
        f"attempt {attempt.number}: offer {offer.pk} on node {offer.node.name} at "
        f"{offer.price_per_gpu_hour_wei} wei per GPU-hour{waiting}"))
    attempt.job = job
    if terms is not None:
        leases.request_open(job, attempt, offer, terms)
    return Match(attempt_id=attempt.pk, spec=spec_for(attempt), lease_pending=terms is not None)


def ready_to_start(attempt: JobAttempt) -> bool:
    """Whether the attempt may run: its lease is open, or it needs none (no chain when matched)."""
    return not leases.has_lease(attempt) or leases.lease_is_open(attempt)


def lease_overdue(attempt: JobAttempt, now: datetime) -> bool:
    """Matched long ago and its lease is still not open: give its GPUs back and queue the job again."""
    return attempt.created_at < now - LEASE_OPEN_TIMEOUT and not ready_to_start(attempt)


def startable_attempt(attempt_id: int) -> JobAttempt | None:
    """The attempt if it is active, not handed to Ray yet, and its lease is open."""
    attempt = JobAttempt.objects.select_related("job", "offer", "node").filter(
        pk=attempt_id, outcome=AttemptOutcome.ACTIVE, submitted_at__isnull=True).first()
    return attempt if attempt is not None and ready_to_start(attempt) else None


@transaction.atomic
def requeue_unleased(attempt_id: int, reason: str) -> bool:
    """The attempt's lease could not open (the developer's balance changed, the escrow paused...):
    free the GPUs and queue the job again with the reason; no run was lost, so no attempt counts."""
    locked = _locked_active(attempt_id)
    if locked is None:
        return False
    attempt, job = locked
    _finish(attempt, AttemptOutcome.CANCELLED, reason)  # releases the lease if it opened after all
    job_service.transition_job(job_id=job.pk, to_state=JobState.QUEUED, reason=reason[:2000])
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now(), wait_reason=reason[:500])
    return True


def mark_submitted(attempt_id: int) -> None:
    JobAttempt.objects.filter(pk=attempt_id, submitted_at__isnull=True).update(submitted_at=timezone.now())


def _locked_active(attempt_id: int) -> tuple[JobAttempt, Job] | None:
    """The attempt and its job, locked, if the attempt is still the job's active one.

    Locks the job first, then the attempt: the same order as cancellation, so the two never deadlock.
    """
    job_id = JobAttempt.objects.filter(pk=attempt_id).values_list("job_id", flat=True).first()
    if job_id is None:
        return None
    job = Job.objects.select_for_update().get(pk=job_id)
    attempt = JobAttempt.objects.select_for_update().filter(pk=attempt_id, outcome=AttemptOutcome.ACTIVE).first()
    return None if attempt is None else (attempt, job)


def _finish(attempt: JobAttempt, outcome: str, reason: str) -> None:
    """End the attempt, free its GPUs, and give back its lease's reservation unless it succeeded
    (settled) or was proven wrong (slashed)."""
    attempt.outcome, attempt.reason, attempt.finished_at = outcome, reason[:2000], timezone.now()
    attempt.save(update_fields=["outcome", "reason", "finished_at"])
    _release(attempt)
    if outcome not in (AttemptOutcome.SUCCEEDED, AttemptOutcome.WRONG):
        leases.release(attempt)


@transaction.atomic
def requeue_attempt(attempt_id: int, reason: str) -> bool:
    """The run was lost (its node died, or it never started): free its GPUs and queue the job
    again, or fail it once it has used up JOB_MAX_ATTEMPTS. False if the attempt was not active."""
    locked = _locked_active(attempt_id)
    if locked is None:
        return False
    attempt, job = locked
    _finish(attempt, AttemptOutcome.LOST, reason)
    dispatch.enqueue_stop_run(attempt.run_name)  # in case it is only unreachable, not dead
    # Its node lost a run: treat it as offline until its agent heartbeats again, so the retry does
    # not land on a machine that just died while its last heartbeat still looks fresh.
    Node.objects.filter(id=attempt.node_id or 0).update(last_heartbeat_at=None)
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        job_service.transition_job(job_id=job.pk, to_state=JobState.FAILED,
                                   reason=f"{reason}; gave up after {job.attempts} attempts")
        return True
    job_service.transition_job(job_id=job.pk, to_state=JobState.QUEUED,
                               reason=f"{reason}; attempt {attempt.number} lost, queued again")
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now(), progress=0.0, progress_message="")
    dispatch.enqueue_dispatch(job.pk)
    return True


@transaction.atomic
def apply_report(attempt_id: int, report: RunReport) -> str:
    """Bring the job up to date with its run: started, progress, logs, then success or failure.

    Returns what happened ("stale", "progress", "succeeded", "failed"). Reports about an attempt
    that is no longer active (lost, cancelled) are ignored: only one attempt can ever finish a job.
    """
    locked = _locked_active(attempt_id)
    if locked is None:
        return "stale"
    attempt, job = locked
    if report.state != RunState.STARTING and job.state == JobState.DISPATCHED:
        where = ", ".join(f"{key} {value}" for key, value in sorted(report.extra.items()))
        node_name = attempt.node.name if attempt.node else "?"
        job = job_service.transition_job(job_id=job.pk, to_state=JobState.RUNNING,
                                         reason=f"running on node {node_name} ({where})" if where else
                                         f"running on node {node_name}")
        attempt.started_at = timezone.now()
        attempt.save(update_fields=["started_at"])
    _record_progress(job, attempt, report)
    if report.state == RunState.SUCCEEDED:
        _succeed(job, attempt, report.output or {})
        return "succeeded"
    if report.state == RunState.FAILED:
        _fail(job, attempt, report.error or "the run failed")
        return "failed"
    return "progress"


def _record_progress(job: Job, attempt: JobAttempt, report: RunReport) -> None:
    lines = report.logs[max(0, attempt.log_offset - report.log_offset):]
    JobEvent.objects.bulk_create(JobEvent(job=job, type=JobEventType.LOG, reason=line) for line in lines)
    attempt.log_offset += len(lines)
    attempt.save(update_fields=["log_offset"])
    moved = report.progress - job.progress >= PROGRESS_EVENT_STEP or report.message != job.progress_message
    if moved and report.state not in RunState.TERMINAL:
        JobEvent.objects.create(job=job, type=JobEventType.PROGRESS,
                                reason=f"{report.progress:.0%} {report.message}".strip())
    Job.objects.filter(pk=job.pk).update(progress=report.progress, progress_message=report.message[:255])
    job.progress, job.progress_message = report.progress, report.message[:255]
    job_service.record_family_progress(job)


def _succeed(job: Job, attempt: JobAttempt, output: dict[str, Any]) -> None:
    from marketplace.services import artifacts, benchmarks

    wrong = verification.wrong_result(job, output)
    if wrong is not None:
        _prove_wrong(job, attempt, wrong)
        return
    body = json.dumps(output, sort_keys=True, indent=2).encode()
    artifact, _ = artifacts.store_artifact(owner=job.owner, chunks=[body], name=f"job-{job.pk}-result.json",
                                           content_type="application/json")
    Job.objects.filter(pk=job.pk).update(result=output, result_artifact=artifact, progress=1.0)
    _finish(attempt, AttemptOutcome.SUCCEEDED, "succeeded")
    leases.settle(attempt, body)
    _count_run(attempt, succeeded=True)
    if job.kind == "benchmark" and attempt.node_id:
        benchmarks.record_benchmark(node_id=attempt.node_id, output=output)
    job_service.transition_job(job_id=job.pk, to_state=JobState.SUCCEEDED,
                               reason=f"result stored as artifact {artifact.pk}")
    dispatch.enqueue_stop_run(attempt.run_name)


def _prove_wrong(job: Job, attempt: JobAttempt, wrong: str) -> None:
    """The run says it succeeded but its result contradicts the block headers: slash the provider
    (the developer is refunded and compensated) and run the job again on another node."""
    reason = f"wrong result from node {attempt.node.name if attempt.node else '?'}: {wrong}"
    _finish(attempt, AttemptOutcome.WRONG, reason)
    leases.slash(attempt, reason)
    _count_run(attempt, succeeded=False)
    dispatch.enqueue_stop_run(attempt.run_name)
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        job_service.transition_job(job_id=job.pk, to_state=JobState.FAILED,
                                   reason=f"{reason}; gave up after {job.attempts} attempts")
        return
    job_service.transition_job(job_id=job.pk, to_state=JobState.QUEUED, reason=f"{reason}; queued again")
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now(), progress=0.0, progress_message="")
    dispatch.enqueue_dispatch(job.pk)


def _count_run(attempt: JobAttempt, *, succeeded: bool) -> None:
    """Keep the node's track record (ties in matching go to the better one)."""
    if attempt.node_id is not None:
        counter = "runs_succeeded" if succeeded else "runs_failed"
        Node.objects.filter(id=attempt.node_id).update(**{counter: F(counter) + 1})


def _fail(job: Job, attempt: JobAttempt, error: str) -> None:
    _finish(attempt, AttemptOutcome.FAILED, error)
    _count_run(attempt, succeeded=False)
    job_service.transition_job(job_id=job.pk, to_state=JobState.FAILED, reason=error[:2000])
    dispatch.enqueue_stop_run(attempt.run_name)


@transaction.atomic
def fail_attempt(attempt_id: int, reason: str) -> bool:
    """The run cannot work anywhere (for instance the node has no executor for the kind)."""
    locked = _locked_active(attempt_id)
    if locked is None:
        return False
    attempt, job = locked
    _fail(job, attempt, reason)
    return True


def end_active_attempt(job: Job, *, outcome: str, reason: str) -> JobAttempt | None:
    """Close the job's active attempt, if any, freeing its GPUs and stopping its run (in the caller's
    transaction: used by cancellation)."""
    attempt = JobAttempt.objects.select_for_update().filter(job=job, outcome=AttemptOutcome.ACTIVE).first()
    if attempt is None:
        return None
    _finish(attempt, outcome, reason)
    dispatch.enqueue_stop_run(attempt.run_name)
    return attempt


def active_attempts(limit: int = 1000) -> list[JobAttempt]:
    """Attempts whose runs the monitor should look at (oldest first)."""
    return list(JobAttempt.objects.filter(outcome=AttemptOutcome.ACTIVE).select_related("job", "offer", "node")
                .order_by("id")[:limit])


def unstarted_too_long(attempt: JobAttempt, now: datetime) -> bool:
    """Submitted long ago and still not running: its node is probably gone."""
    submitted = attempt.submitted_at or attempt.created_at
    return attempt.started_at is None and submitted < now - START_TIMEOUT


@transaction.atomic
def fail_timed_out_jobs(now: datetime | None = None) -> int:
    """Fail queued jobs whose queue timeout has passed; returns how many."""
    now = now or timezone.now()
    failed = 0
    for job in Job.objects.select_for_update(skip_locked=True).filter(
            state=JobState.QUEUED, queue_timeout_s__isnull=False, queued_at__isnull=False)[:500]:
        assert job.queued_at is not None and job.queue_timeout_s is not None
        if job.queued_at + timedelta(seconds=job.queue_timeout_s) <= now:
            job_service.transition_job(job_id=job.pk, to_state=JobState.FAILED,
                                       reason=f"no offer matched within the queue timeout of {job.queue_timeout_s} s")
            failed += 1
    return failed


def queued_job_ids(limit: int = 500) -> list[int]:
    return list(Job.objects.filter(state=JobState.QUEUED).order_by("queued_at", "id").values_list("id", flat=True)
                [:limit])
