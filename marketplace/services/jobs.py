"""Jobs: submission, the one place that moves a job between states, and cancellation.

A job split across nodes (``evm_block`` with ``nodes`` > 1 and several blocks) is a *parent* that is
never matched and *children* that are, each with a contiguous slice of the blocks. The parent is taken
straight to ``dispatched`` at submission and from then on follows its children, from one place
(`_follow_children`, called by `transition_job` whenever a child moves): the first child running makes
it running, a child failing fails it (and cancels the other live children), a child cancelled by
anyone but the parent cancels it (likewise), and the last child succeeding makes it succeed with the
children's results combined.

Lock order, so the family never deadlocks with itself: a child's row, then its parent's, then (only when a
child's end ends the family) the live siblings'. Cancelling a parent locks its children first, in id
order, then itself. A sibling's failure racing its owner's cancel can still meet head-on; PostgreSQL
then aborts one of them: a cancel is retried at once (`cancel_job`), a run's report is re-applied by
the monitor on its next pass.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError, transaction
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
    fields = dict(owner=owner, kind=kind, gpu_model=requirements.gpu_model, min_vram_gb=requirements.min_vram_gb,
                  gpus=requirements.gpus, max_price_wei=max_price_wei, queue_timeout_s=queue_timeout_s)
    parts = split_count(kind, checked_spec)
    if parts > 1:
        return _submit_split(fields, checked_spec, budget, parts)
    return _submit_one(fields, checked_spec, budget, reason="submitted")


def _submit_one(fields: dict[str, Any], spec: dict[str, Any], budget: int, *, reason: str,
                parent: Job | None = None) -> Job:
    job = Job.objects.create(**fields, spec=spec, budget_wei=budget, parent=parent, queued_at=timezone.now())
    JobEvent.objects.create(job=job, to_state=JobState.PENDING, reason=reason)
    job = transition_job(job_id=job.pk, to_state=JobState.QUEUED, reason="waiting for a matching offer")
    dispatch.enqueue_dispatch(job.pk)
    return job


def split_count(kind: str, spec: Mapping[str, Any]) -> int:
    """Into how many jobs a submitted job is split: ``min(nodes, blocks)`` for ``evm_block``, else 1.

    >>> split_count("evm_block", {"blocks": [4, 5, 6], "nodes": 2})
    2
    """
    if kind != "evm_block":
        return 1
    return max(1, min(int(spec.get("nodes", 1)), len(spec["blocks"])))


def split_evenly(items: list[int], parts: int) -> list[list[int]]:
    """``items`` in ``parts`` contiguous slices whose lengths differ by at most one, longer ones first.

    >>> split_evenly([1, 2, 3, 4, 5], 3)
    [[1, 2], [3, 4], [5]]
    """
    size, extra = divmod(len(items), parts)
    bounds = [index * size + min(index, extra) for index in range(parts + 1)]
    return [items[start:end] for start, end in zip(bounds, bounds[1:])]


def split_budget(budget_wei: int, parts: int) -> list[int]:
    """The budget in ``parts`` integer shares summing to it exactly; the remainder goes to the first.

    >>> split_budget(10, 3)
    [4, 3, 3]
    """
    share, remainder = divmod(budget_wei, parts)
    return [share + remainder] + [share] * (parts - 1)


def _submit_split(fields: dict[str, Any], spec: dict[str, Any], budget: int, parts: int) -> Job:
    """A parent holding the whole spec, and ``parts`` children queued like any job.

    Money: each child is matched, leased and paid on its own; with the escrow (next issue) each child
    opens its own lease out of its share of the budget, and the parent none.
    """
    if budget < parts:
        raise InvalidInput(f"budget_wei must be at least {parts} wei to split the job into {parts} jobs",
                           code="invalid_budget", field="budget_wei")
    parent = Job.objects.create(**fields, spec=spec, budget_wei=budget, queued_at=timezone.now())
    JobEvent.objects.create(job=parent, to_state=JobState.PENDING, reason="submitted")
    transition_job(job_id=parent.pk, to_state=JobState.QUEUED, reason=f"splitting into {parts} jobs")
    children = [
        _submit_one(fields, {**spec, "blocks": blocks, "nodes": 1}, share, parent=parent,
                    reason=f"part {number} of {parts} of job {parent.pk}")
        for number, (blocks, share) in enumerate(zip(split_evenly(spec["blocks"], parts),
                                                     split_budget(budget, parts)), start=1)]
    return transition_job(job_id=parent.pk, to_state=JobState.DISPATCHED, reason=(
        f"split into {parts} jobs: " + ", ".join(f"job {child.pk} ({len(child.spec['blocks'])} blocks)"
                                                  for child in children)))


@transaction.atomic
def transition_job(*, job_id: int, to_state: str, reason: str = "", follow: bool = True) -> Job:
    """Move a job along one edge of its state graph and record the move. The only way states change.

    Locks the row, so two workers racing to move the same job are serialised and the loser
    gets `InvalidTransition` instead of overwriting the winner. A child job's parent then follows
    it (see the module docstring) unless ``follow`` is False (the parent itself is ending it).
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
    if job.parent_id is not None and follow:
        _follow_children(job, job.parent_id, reason)
    return job


def _follow_children(child: Job, parent_id: int, reason: str) -> None:
    """Bring the child's parent up to date with the child's new state (the child's row is locked)."""
    parent = Job.objects.select_for_update().get(pk=parent_id)
    if parent.is_terminal:
        return
    if child.state == JobState.RUNNING and parent.state == JobState.DISPATCHED:
        transition_job(job_id=parent.pk, to_state=JobState.RUNNING, reason=f"child job {child.pk} running")
    elif child.state == JobState.FAILED:
        _end_family(parent, JobState.FAILED, f"child job {child.pk} failed: {reason}")
    elif child.state == JobState.CANCELLED:
        _end_family(parent, JobState.CANCELLED, f"child job {child.pk} cancelled: {reason}")
    elif child.state == JobState.SUCCEEDED:
        children = list(parent.children.order_by("id"))
        if all(sibling.state == JobState.SUCCEEDED for sibling in children):
            _succeed_parent(parent, children)


def _end_family(parent: Job, to_state: str, reason: str) -> None:
    """Cancel the parent's live children, each through the normal path, then end the parent."""
    _cancel_children(parent, f"job {parent.pk} {to_state}: {reason}")
    transition_job(job_id=parent.pk, to_state=to_state, reason=reason[:2000])


def _cancel_children(parent: Job, reason: str) -> None:
    from marketplace.services import scheduling  # it builds on this module

    live = Job.objects.select_for_update().filter(parent=parent).exclude(state__in=TERMINAL_STATES).order_by("id")
    for child in live:
        scheduling.end_active_attempt(child, outcome=AttemptOutcome.CANCELLED, reason=reason)
        transition_job(job_id=child.pk, to_state=JobState.CANCELLED, reason=reason, follow=False)


def _succeed_parent(parent: Job, children: list[Job]) -> None:
    from marketplace.services import artifacts

    result = combined_result([child.result or {} for child in children], [child.pk for child in children])
    body = json.dumps(result, sort_keys=True, indent=2).encode()
    artifact, _ = artifacts.store_artifact(owner=parent.owner, chunks=[body], name=f"job-{parent.pk}-result.json",
                                           content_type="application/json")
    Job.objects.filter(pk=parent.pk).update(result=result, result_artifact=artifact, progress=1.0)
    if parent.state == JobState.DISPATCHED:  # cannot happen (a child ran first), but the graph demands it
        transition_job(job_id=parent.pk, to_state=JobState.RUNNING, reason="children running")
    transition_job(job_id=parent.pk, to_state=JobState.SUCCEEDED,
                   reason=f"all {len(children)} child jobs succeeded; result stored as artifact {artifact.pk}")


def combined_result(outputs: list[dict[str, Any]], child_ids: list[int]) -> dict[str, Any]:
    """The children's ``evm_block`` results as one (children in block order): their blocks in order,
    totals recomputed over them (see `workers.runtime.evm_job`), and the children's ids."""
    blocks = [block for output in outputs for block in output.get("blocks", [])]
    totals = [output.get("totals", {}) for output in outputs]
    return {
        "engine": outputs[0].get("engine") if outputs else None,
        "workers": max((int(output.get("workers", 1)) for output in outputs), default=1),
        "workers_requested": outputs[0].get("workers_requested") if outputs else None,
        "blocks": blocks,
        "totals": {
            "blocks": len(blocks),
            **{name: sum(int(total.get(name, 0)) for total in totals)
               for name in ("transactions", "gas_used", "reexecuted")},
            "elapsed_s": round(sum(float(total.get("elapsed_s", 0)) for total in totals), 6),
            "verified": all(bool(total.get("verified")) for total in totals),
        },
        "children": child_ids,
    }


def record_family_progress(child: Job) -> None:
    """The parent's progress: the mean of its children's (after a child's progress was recorded)."""
    if child.parent_id is None:
        return
    progress = list(Job.objects.filter(parent_id=child.parent_id).values_list("progress", flat=True))
    mean = min(1.0, max(0.0, sum(progress) / len(progress))) if progress else 0.0
    Job.objects.filter(pk=child.parent_id).exclude(state__in=TERMINAL_STATES).update(
        progress=mean, progress_message=f"{sum(1 for value in progress if value >= 1.0)} of {len(progress)} "
                                        "child jobs done")


def job_of(owner: User, job_id: int, *, lock: bool = False) -> Job:
    """The caller's own job, or NotFound (also for other people's jobs)."""
    queryset = Job.objects.owned_by(owner)
    if lock:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such job") from None


DEADLOCK_RETRIES = 3


def cancel_job(*, owner: User, job_id: int, reason: str = "cancelled by its owner") -> Job:
    """Cancel a job that has not finished. Cancelling a cancelled job returns it unchanged.

    The row is locked before its state is read, so a second cancel racing the first waits and
    then sees ``cancelled`` (idempotent) rather than failing the state machine's check. A split
    job's cancel can meet a child's failure head-on (see the module docstring); when PostgreSQL
    breaks that lock cycle by aborting the cancel, it is simply run again, so the owner never
    sees the collision (the other side has by then ended the family, or will wait for us).
    """
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            return _cancel_job(owner=owner, job_id=job_id, reason=reason)
        except OperationalError as exc:
            if not is_deadlock(exc) or attempt == DEADLOCK_RETRIES or transaction.get_connection().in_atomic_block:
                raise
    raise AssertionError("unreachable")


def is_deadlock(exc: BaseException) -> bool:
    """Whether the database aborted this transaction to break a lock cycle (SQLSTATE 40P01)."""
    return getattr(exc.__cause__, "sqlstate", None) == "40P01"


@transaction.atomic
def _cancel_job(*, owner: User, job_id: int, reason: str) -> Job:
    unlocked = job_of(owner, job_id)
    if unlocked.children.exists():
        # Children first, each by the normal path (and not followed: the parent is ending them), then
        # the parent: the family's lock order.
        _cancel_children(unlocked, f"job {unlocked.pk} cancelled: {reason}")
    job = job_of(owner, job_id, lock=True)
    if job.state == JobState.CANCELLED:
        return job
    if job.is_terminal:
        raise Conflict(f"job {job.pk} already {job.state}", code="job_finished")
    from marketplace.services import scheduling  # it builds on this module

    scheduling.end_active_attempt(job, outcome=AttemptOutcome.CANCELLED, reason=reason)
    return transition_job(job_id=job.pk, to_state=JobState.CANCELLED, reason=reason)
