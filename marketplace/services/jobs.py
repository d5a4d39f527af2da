"""Jobs: submission, the one place that moves a job between states, and cancellation."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from marketplace import dispatch
from marketplace.catalog import GPU_CATALOG
from marketplace.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from marketplace.models import TERMINAL_STATES, AttemptOutcome, Job, JobEvent, JobEventType, JobState
from marketplace.models.fields import UINT256_MAX
from marketplace.services import job_inputs
from workers.runtime import kinds

MAX_GPUS_PER_JOB = 64
MAX_VRAM_GB = 1024
MAX_QUEUE_TIMEOUT_S = 30 * 24 * 3600


@dataclass(frozen=True)
class Requirements:
    """What hardware a job needs. An empty ``gpu_model`` accepts any model."""

    gpu_model: str = ""
    min_vram_gb: int = 0
    gpus: int = 1


def _checked_spec(kind: str, spec: object) -> dict[str, Any]:
    if len(json.dumps(spec)) > settings.JOB_SPEC_MAX_BYTES:
        raise InvalidInput(f"spec is larger than {settings.JOB_SPEC_MAX_BYTES} bytes; upload big inputs "
                           "as artifacts and reference them", code="spec_too_large", field="spec")
    try:
        return kinds.validate_spec(kind, spec)
    except kinds.UnknownKind as exc:
        raise InvalidInput(str(exc), code="unknown_job_kind", field="kind") from None
    except kinds.KindUnavailable as exc:
        raise InvalidInput(str(exc), code="job_kind_unavailable", field="kind") from None
    except kinds.InvalidSpec as exc:
        raise InvalidInput(str(exc), code="invalid_spec", field="spec") from None


def _check_requirements(req: Requirements) -> None:
    if req.gpu_model and req.gpu_model not in GPU_CATALOG:
        raise InvalidInput(f"unknown GPU model {req.gpu_model!r}; see the catalog", code="unknown_gpu_model",
                           field="requirements")
    if not 1 <= req.gpus <= MAX_GPUS_PER_JOB:
        raise InvalidInput(f"gpus must be between 1 and {MAX_GPUS_PER_JOB}", code="invalid_requirements",
                           field="requirements")
    if not 0 <= req.min_vram_gb <= MAX_VRAM_GB:
        raise InvalidInput(f"min_vram_gb must be between 0 and {MAX_VRAM_GB}", code="invalid_requirements",
                           field="requirements")


def _check_money(max_price_wei: int | None, budget_wei: int) -> None:
    if max_price_wei is not None and not 0 < max_price_wei <= UINT256_MAX:
        raise InvalidInput("max_price_wei must be a positive integer", code="invalid_price", field="max_price_wei")
    if not 0 < budget_wei <= UINT256_MAX:
        raise InvalidInput("budget_wei must be a positive integer", code="invalid_budget", field="budget_wei")


@transaction.atomic
def submit_job(
    *, owner: User, kind: str, spec: Mapping[str, Any] | None = None, requirements: Requirements | None = None,
    max_price_wei: int | None = None, budget_wei: int | None = None, queue_timeout_s: int | None = None,
) -> Job:
    """Validate and record a job, then queue it for matching. Returns it in state ``queued``.

    The dispatcher is told once the transaction commits; ``queue_timeout_s`` fails the job if no
    offer matches it within that many seconds.

    >>> job = submit_job(owner=bob, kind="benchmark", requirements=Requirements(gpu_model="NVIDIA RTX 4090"))
    >>> job.state
    'queued'
    """
    requirements = requirements or Requirements()
    budget = settings.JOB_DEFAULT_BUDGET_WEI if budget_wei is None else budget_wei
    checked_spec = job_inputs.check_inputs(owner=owner, kind=kind, spec=_checked_spec(kind, spec))
    _check_requirements(requirements)
    _check_money(max_price_wei, budget)
    if queue_timeout_s is not None and not 1 <= queue_timeout_s <= MAX_QUEUE_TIMEOUT_S:
        raise InvalidInput(f"queue_timeout_s must be between 1 and {MAX_QUEUE_TIMEOUT_S}",
                           code="invalid_queue_timeout", field="queue_timeout_s")
    job = Job.objects.create(
        owner=owner, kind=kind, spec=checked_spec, gpu_model=requirements.gpu_model,
        min_vram_gb=requirements.min_vram_gb, gpus=requirements.gpus, max_price_wei=max_price_wei,
        budget_wei=budget, queue_timeout_s=queue_timeout_s, queued_at=timezone.now(),
    )
    JobEvent.objects.create(job=job, to_state=JobState.PENDING, reason="submitted")
    job = transition_job(job_id=job.pk, to_state=JobState.QUEUED, reason="waiting for a matching offer")
    dispatch.enqueue_dispatch(job.pk)
    return job


@transaction.atomic
def transition_job(*, job_id: int, to_state: str, reason: str = "") -> Job:
    """Move a job along one edge of its state graph and record the move. The only way states change.

    Locks the row, so two workers racing to move the same job are serialised and the loser
    gets `InvalidTransition` instead of overwriting the winner.
    """
    job = Job.objects.select_for_update().get(pk=job_id)
    if not job.can_transition_to(to_state):
        raise InvalidTransition(f"job {job.pk} cannot go from {job.state} to {to_state}")
    event = JobEvent(job=job, type=JobEventType.STATE, from_state=job.state, to_state=to_state, reason=reason)
    job.state = to_state
    if to_state in TERMINAL_STATES:
        job.finished_at = timezone.now()
    job.save(update_fields=["state", "finished_at", "updated_at"])
    event.save()
    return job


def job_of(owner: User, job_id: int, *, lock: bool = False) -> Job:
    """The caller's own job, or NotFound (also for other people's jobs)."""
    queryset = Job.objects.owned_by(owner)
    if lock:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such job") from None


@transaction.atomic
def cancel_job(*, owner: User, job_id: int, reason: str = "cancelled by its owner") -> Job:
    """Cancel a job that has not finished. Cancelling a cancelled job returns it unchanged.

    The row is locked before its state is read, so a second cancel racing the first waits and
    then sees ``cancelled`` (idempotent) rather than failing the state machine's check.
    """
    job = job_of(owner, job_id, lock=True)
    if job.state == JobState.CANCELLED:
        return job
    if job.is_terminal:
        raise Conflict(f"job {job.pk} already {job.state}", code="job_finished")
    from marketplace.services import scheduling  # it builds on this module

    scheduling.end_active_attempt(job, outcome=AttemptOutcome.CANCELLED, reason=reason)
    return transition_job(job_id=job.pk, to_state=JobState.CANCELLED, reason=reason)
