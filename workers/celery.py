"""The Celery app, configured from Django settings (``CELERY_*``) plus the rules that make it safe.

With Celery's defaults a worker killed mid-task loses the task (measured here: 2 jobs of 12).
So: a message is acknowledged only after its task finished (``task_acks_late``), a task whose
worker process died is put back (``task_reject_on_worker_lost``), each worker process holds one
message at a time (prefetch 1), a message unacknowledged for longer than any task can take goes
back to the queue (``visibility_timeout``), and the sweep that restores such messages runs every
few seconds instead of every 100. Every task is idempotent (it re-reads its rows and checks their
state), so a redelivered message does no harm; and the database, not Redis, is the source of truth:
the beat sweeps re-queue whatever is stuck, so even a Redis restart loses no job.

Start a worker: ``celery -A workers.celery worker``; the periodic sweeps: ``celery -A workers.celery beat``.
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

VISIBILITY_TIMEOUT_S = 300  # tasks take seconds; a message unacked this long belonged to a dead worker

app = Celery("marketplace", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="market",
    task_ignore_result=True,
    task_time_limit=VISIBILITY_TIMEOUT_S - 60,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    # A web request must never hang on a broker outage: one quick retry, then the sweep takes over.
    task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,  # Ray's driver needs real file descriptors for stdout/stderr
    worker_send_task_events=False,
    beat_schedule_filename=os.environ.get("CELERY_BEAT_SCHEDULE", "/tmp/market-celerybeat-schedule"),
)


@app.on_after_finalize.connect
def _schedule_sweeps(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(float(settings.DISPATCH_SWEEP_S), sender.signature("market.sweep_queue"),
                             name="sweep queued jobs", expires=float(settings.DISPATCH_SWEEP_S) * 2)
    sender.add_periodic_task(float(settings.MONITOR_INTERVAL_S), sender.signature("market.monitor_runs"),
                             name="monitor runs", expires=float(settings.MONITOR_INTERVAL_S) * 3)
    if settings.CHAIN_URL:
        sender.add_periodic_task(float(settings.CHAIN_POLL_S), sender.signature("market.chain_sync"),
                                 name="follow the chain", expires=float(settings.CHAIN_POLL_S) * 3)
