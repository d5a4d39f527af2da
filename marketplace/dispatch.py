"""THE seam to Celery: the only place the Django side queues work. Ids only, after commit.

Queuing is best effort by design: the database is the source of truth, and the periodic sweeps
(`workers.tasks.sweep_queue`, `monitor_runs`) find any job whose message was lost (broker down
at submit time, Redis restarted, worker killed). A broker outage therefore delays work; it never
fails the request that submitted it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)


def _after_commit(send: Callable[[], object], what: str) -> None:
    def safely() -> None:
        try:
            send()
        except Exception as exc:  # noqa: BLE001 - any broker failure: the sweeper retries
            log.warning("could not queue %s (%s); the periodic sweep will pick it up", what, type(exc).__name__)

    if settings.DISPATCH_QUEUE_ENABLED:
        transaction.on_commit(safely)


def enqueue_dispatch(job_id: int) -> None:
    """Match and start the job once the current transaction commits.

    >>> enqueue_dispatch(job.pk)  # inside services.jobs.submit_job
    """
    from workers import tasks

    _after_commit(lambda: tasks.dispatch_job.delay(job_id), f"job {job_id}")


def enqueue_stop_run(run_name: str) -> None:
    """Stop a run on its node (cancelled, lost, or finished and its result stored)."""
    from workers import tasks

    _after_commit(lambda: tasks.stop_run.delay(run_name), f"stop of {run_name}")


def enqueue_sweep() -> None:
    """Look at the queue now (GPUs were just freed) instead of at the next periodic sweep."""
    from workers import tasks

    _after_commit(lambda: tasks.sweep_queue.delay(), "a queue sweep")


def enqueue_start_attempt(attempt_id: int) -> None:
    """Hand a matched attempt to its node now that its lease is open on chain."""
    from workers import tasks

    _after_commit(lambda: tasks.start_attempt.delay(attempt_id), f"start of attempt {attempt_id}")


def enqueue_chain_outbox() -> None:
    """Send the calls just queued in the chain outbox instead of waiting for the periodic pass."""
    from workers import tasks

    _after_commit(lambda: tasks.chain_outbox.delay(), "the chain outbox")
