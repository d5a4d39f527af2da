"""Jobs, their state machine and their event log.

The state graph lives here and only here (`TRANSITIONS`); `services.jobs.transition_job` is
the one function that moves a job, and it records every move as a `JobEvent`.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from marketplace.models.artifacts import Artifact
from marketplace.models.fields import WeiField
from marketplace.models.offers import Offer
from marketplace.models.providers import Node


class JobState(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    DISPATCHED = "dispatched", "Dispatched"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


S = JobState
#: pending -> queued -> dispatched -> running -> succeeded | failed | cancelled.
#: Any live state may fail or be cancelled. A dispatched or running job whose node is lost
#: goes back to ``queued`` to run elsewhere (the dispatch issue bounds the attempts).
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.QUEUED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.DISPATCHED, S.FAILED, S.CANCELLED}),
    S.DISPATCHED: frozenset({S.RUNNING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
TERMINAL_STATES = frozenset(state for state, targets in TRANSITIONS.items() if not targets)


class JobQuerySet(models.QuerySet["Job"]):
    def owned_by(self, user: object) -> JobQuerySet:
        return self.filter(owner=user)


class Job(models.Model):
    """A developer's unit of work: what to run (``kind`` + ``spec``), where, and for how much."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    # A job split across nodes (``evm_block`` with ``nodes`` > 1) is a parent that never runs itself and
    # children that do; the parent's state follows theirs (`services.jobs.follow_children`).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    kind = models.CharField(max_length=32)
    spec = models.JSONField(default=dict)
    gpu_model = models.CharField(max_length=64, blank=True, default="")  # "" means any model
    min_vram_gb = models.PositiveIntegerField(default=0)
    gpus = models.PositiveIntegerField(default=1)
    max_price_wei = WeiField(null=True, blank=True)  # per GPU-hour; null means any price
    budget_wei = WeiField()
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.PENDING)
    offer = models.ForeignKey(Offer, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    # Fail the job if no offer matched it within this many seconds; null waits forever.
    queue_timeout_s = models.PositiveIntegerField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=255, blank=True, default="")
    # Why a queued job is not running yet when an offer fits (e.g. too little escrow balance).
    wait_reason = models.CharField(max_length=500, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    result_artifact = models.ForeignKey(
        Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(gpus__gte=1), name="job_gpus_positive"),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_fraction"),
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at", "-id"], name="job_owner_created_idx"),
            models.Index(fields=["state", "created_at"], name="job_state_idx"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.kind}, {self.state})"

    def can_transition_to(self, state: str) -> bool:
        return state in TRANSITIONS[self.state]

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class JobEventType(models.TextChoices):
    STATE = "state", "State change"
    PROGRESS = "progress", "Progress"
    LOG = "log", "Log"


class JobEvent(models.Model):
    """One thing that happened to a job, in order: a state change (with its reason), progress or a log line."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=16, choices=JobEventType.choices, default=JobEventType.STATE)
    from_state = models.CharField(max_length=16, blank=True, default="")
    to_state = models.CharField(max_length=16, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"], name="jobevent_job_idx")]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.from_state} -> {self.to_state}"


class AttemptOutcome(models.TextChoices):
    ACTIVE = "active", "Active"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost (node gone)"
    CANCELLED = "cancelled", "Cancelled"
    WRONG = "wrong", "Wrong result (provider slashed)"


class JobAttempt(models.Model):
    """One try at running a job on one node: the GPUs it reserved and how it ended.

    A job has at most one ACTIVE attempt; only that attempt's result is ever accepted, which is
    what makes "never runs twice to completion" hold when a lost node comes back.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    offer = models.ForeignKey(Offer, null=True, on_delete=models.SET_NULL, related_name="attempts")
    node = models.ForeignKey(Node, null=True, on_delete=models.SET_NULL, related_name="attempts")
    gpus = models.PositiveIntegerField()
    price_per_gpu_hour_wei = WeiField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.ACTIVE)
    reason = models.TextField(blank=True, default="")
    log_offset = models.PositiveIntegerField(default=0)  # log lines already copied into events
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="attempt_number_unique"),
            models.UniqueConstraint(fields=["job"], condition=Q(outcome="active"), name="one_active_attempt_per_job"),
        ]
        indexes = [models.Index(fields=["outcome", "node"], name="attempt_active_idx")]

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.number} ({self.outcome})"

    @property
    def run_name(self) -> str:
        return f"job-{self.job_id}-attempt-{self.number}"
