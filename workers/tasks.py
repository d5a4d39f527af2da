"""Celery tasks: thin. They take ids, re-read rows through the services, and talk to Ray only
through `workers.ray_client`. Each is idempotent: run it twice and the second finds nothing to do.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from marketplace.models import JobAttempt
from marketplace.services import scheduling
from workers import ray_client
from workers.celery import app
from workers.runtime.spec import RunState

log = logging.getLogger(__name__)


def _ray() -> None:
    ray_client.configure(settings.RAY_ADDRESS, settings.RAY_NAMESPACE, settings.RAY_NODE_IP)


@contextmanager
def _single(name: str, ttl_s: int) -> Iterator[bool]:
    """True for the one caller that holds the named lock (sweeps must not overlap)."""
    key = f"lock:{name}"
    acquired = cache.add(key, "1", timeout=ttl_s)
    try:
        yield bool(acquired)
    finally:
        if acquired:
            cache.delete(key)


def _start_matched(match: scheduling.Match) -> None:
    """Hand a matched attempt to Ray; a refusal queues the job again (or fails it). An attempt
    waiting for its lease to open on chain starts later (`start_attempt`, when the lease opens)."""
    if match.lease_pending:
        return
    spec = scheduling.spec_to_run(match)
    if spec is None:
        return  # an input vanished from storage: the attempt has failed
    _ray()
    try:
        ray_client.submit(spec)
    except ray_client.RunFailed as exc:
        if exc.retriable:
            scheduling.requeue_attempt(match.attempt_id, exc.reason)
        else:
            scheduling.fail_attempt(match.attempt_id, exc.reason)
        return
    scheduling.mark_submitted(match.attempt_id)


@app.task(name="market.dispatch_job")
def dispatch_job(job_id: int) -> str:
    """Match a queued job to an offer, reserve its GPUs, and start it on that node."""
    match = scheduling.match_job(job_id)
    if match is None:
        return "no match"
    _start_matched(match)
    return match.spec.run_name


@app.task(name="market.sweep_queue")
def sweep_queue() -> int:
    """Fail jobs past their queue timeout and try to match every queued job (capacity may have
    appeared, or a dispatch message was lost). Returns how many jobs were matched."""
    with _single("sweep_queue", ttl_s=120) as mine:
        if not mine:
            return 0
        scheduling.fail_timed_out_jobs()
        matched = 0
        if not scheduling.any_free_gpus():
            return 0
        for job_id in scheduling.queued_job_ids():
            match = scheduling.match_job(job_id)
            if match is not None:
                _start_matched(match)
                matched += 1
            elif not scheduling.any_free_gpus():
                break  # every GPU is taken: the rest of the queue cannot match either
        return matched


@app.task(name="market.monitor_runs")
def monitor_runs() -> int:
    """Bring every active run's job up to date: started, progress, logs, result, or lost."""
    with _single("monitor_runs", ttl_s=60) as mine:
        if not mine:
            return 0
        attempts = scheduling.active_attempts()
        submitted = [a for a in attempts if a.submitted_at is not None]
        _resubmit_orphans([a for a in attempts if a.submitted_at is None])
        if not submitted:
            return 0
        _ray()
        statuses = ray_client.poll({a.run_name: a.log_offset for a in submitted})
        now = timezone.now()
        for attempt in submitted:
            _apply(attempt, statuses[attempt.run_name], now)
        return len(submitted)


def _apply(attempt: JobAttempt, status: ray_client.RunStatus, now: datetime) -> None:
    if status.lost:
        scheduling.requeue_attempt(attempt.pk, status.reason)
    elif status.report is not None:
        if status.report.state == RunState.STARTING:
            ray_client.start(status.name)
        scheduling.apply_report(attempt.pk, status.report)
    if scheduling.unstarted_too_long(attempt, now) and (status.report is None or
                                                         status.report.state == RunState.STARTING):
        scheduling.requeue_attempt(attempt.pk, "the run did not start on its node in time")


def _resubmit_orphans(attempts: list[JobAttempt]) -> None:
    """Attempts matched (and leased) but never handed to Ray (the worker died in between): hand
    them over now. Attempts still waiting for their lease are left alone."""
    now = timezone.now()
    for attempt in attempts:
        if attempt.created_at < now - scheduling.ORPHAN_GRACE and scheduling.ready_to_start(attempt):
            _start_matched(scheduling.Match(attempt_id=attempt.pk, spec=scheduling.spec_for(attempt)))
        elif scheduling.lease_overdue(attempt, now):
            scheduling.requeue_unleased(attempt.pk, f"the lease did not open on chain within "
                                                    f"{scheduling.LEASE_OPEN_TIMEOUT.seconds // 60} minutes")


@app.task(name="market.start_attempt")
def start_attempt(attempt_id: int) -> bool:
    """Start an attempt whose lease just opened (idempotent: started or ended ones are skipped)."""
    attempt = scheduling.startable_attempt(attempt_id)
    if attempt is None:
        return False
    _start_matched(scheduling.Match(attempt_id=attempt.pk, spec=scheduling.spec_for(attempt)))
    return True


@app.task(name="market.chain_outbox")
def chain_outbox() -> int:
    """Send the marketplace's queued contract calls and read their receipts (see marketplace.chain.outbox)."""
    from marketplace.chain import context, outbox

    if not context.enabled():
        return 0
    with _single("chain_outbox", ttl_s=120) as mine:
        chain = _connected() if mine else None
        return outbox.process(chain) if chain is not None else 0


@app.task(name="market.chain_sync")
def chain_sync() -> int:
    """Apply the escrow's confirmed events to the ledger, then send what they made us queue."""
    from marketplace.chain import context, follower

    if not context.enabled():
        return 0
    with _single("chain_sync", ttl_s=120) as mine:
        chain = _connected() if mine else None
        if chain is None:
            return 0
        applied = follower.sync(chain).applied
    chain_outbox()
    return applied


def _connected() -> Any:
    """The configured chain, or None (logged) while the contracts are not deployed on it yet."""
    from marketplace.chain import context

    try:
        return context.connect()
    except context.NotDeployed as exc:
        log.warning("chain: %s", exc)
        return None


@app.task(name="market.stop_run")
def stop_run(run_name: str) -> bool:
    """Stop a run on its node (idempotent: a run already gone is fine)."""
    _ray()
    return ray_client.stop(run_name)
