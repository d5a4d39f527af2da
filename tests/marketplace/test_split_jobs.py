"""``evm_block`` jobs split across nodes: a parent that never runs and children that do, each with a
contiguous slice of the blocks; the parent follows its children to the end and combines their results."""
from __future__ import annotations

from typing import Any

import pytest

from marketplace.models import AttemptOutcome, Job, JobAttempt, Offer
from marketplace.services import jobs, scheduling
from tests.conftest import submit_job
from tests.marketplace.test_api_evm_jobs import assert_refused, evm_job, uploaded
from tests.marketplace.test_scheduling import node_with_offer
from workers.runtime.spec import RunReport, RunState


def blocks_of(developer: Any, count: int) -> list[int]:
    return [uploaded(developer, f"block {n}".encode()) for n in range(count)]


def split(developer: Any, blocks: list[int], nodes: int, **body: Any) -> dict[str, Any]:
    return submit_job(developer, kind="evm_block", spec={"blocks": blocks, "nodes": nodes}, **body)


def children_of(parent_id: int) -> list[Job]:
    return list(Job.objects.filter(parent_id=parent_id).order_by("id"))


def output(blocks: list[tuple[int, int]], workers: int = 1) -> dict[str, Any]:
    """What a node's run reports (the shape of `workers.runtime.evm_job._output`), for (artifact, number)."""
    rows = [{"artifact": artifact, "number": number, "transactions": 2, "gas_used": 21000 * number, "reexecuted": 1,
             "elapsed_s": 0.5, "verified": True, "workers": workers} for artifact, number in blocks]
    return {"engine": "reference", "workers": workers, "workers_requested": workers, "blocks": rows,
            "totals": {"blocks": len(rows), "transactions": 2 * len(rows), "gas_used": sum(r["gas_used"] for r in rows),
                       "reexecuted": len(rows), "elapsed_s": 0.5 * len(rows), "verified": True}}


def run(child: Job, state: str = RunState.RUNNING, **report: Any) -> str:
    attempt = JobAttempt.objects.get(job=child, outcome=AttemptOutcome.ACTIVE)
    return scheduling.apply_report(attempt.pk, RunReport(state=state, **report))


def last_reason(job_id: int) -> str:
    return Job.objects.get(pk=job_id).events.order_by("-id").first().reason


# --- splitting at submission -------------------------------------------------------------------------

def test_three_blocks_on_two_nodes_make_a_dispatched_parent_and_two_queued_children(developer):
    blocks = blocks_of(developer, 3)

    parent = split(developer, blocks, nodes=2, budget_wei=str(10**16 + 1), max_price_wei=str(10**15),
                   queue_timeout_s=600, requirements={"gpus": 1})

    children = children_of(parent["id"])
    assert parent["state"] == "dispatched" and parent["parent"] is None
    assert parent["children"] == [child.pk for child in children]
    assert parent["spec"] == {"blocks": blocks, "nodes": 2, "workers": 1, "engine": "native"}
    assert [child.spec["blocks"] for child in children] == [blocks[:2], blocks[2:]]
    assert all(child.spec["nodes"] == 1 and child.state == "queued" for child in children)
    assert [child.budget_wei for child in children] == [5 * 10**15 + 1, 5 * 10**15]
    assert sum(child.budget_wei for child in children) == 10**16 + 1
    assert {(c.max_price_wei, c.queue_timeout_s, c.gpus) for c in children} == {(10**15, 600, 1)}
    assert f"split into 2 jobs: job {children[0].pk} (2 blocks), job {children[1].pk} (1 blocks)" \
        == last_reason(parent["id"])
    assert developer.client.get(f"/api/v1/jobs/{children[1].pk}/").json()["parent"] == parent["id"]


def test_more_nodes_than_blocks_make_one_child_per_block(developer):
    blocks = blocks_of(developer, 3)
    parent = split(developer, blocks, nodes=16)
    assert [child.spec["blocks"] for child in children_of(parent["id"])] == [[block] for block in blocks]


@pytest.mark.parametrize(("blocks", "nodes"), [(3, 1), (1, 4)])
def test_one_node_or_one_block_is_not_split(developer, blocks, nodes):
    job = split(developer, blocks_of(developer, blocks), nodes=nodes)
    assert (job["state"], job["children"], Job.objects.count()) == ("queued", [], 1)


def test_the_parent_is_neither_swept_nor_timed_out(provider, developer):
    node_with_offer(provider, "rig", price=10**15)
    parent = split(developer, blocks_of(developer, 2), nodes=2, queue_timeout_s=1)
    children = [child.pk for child in children_of(parent["id"])]
    assert set(scheduling.queued_job_ids()) == set(children)
    assert scheduling.match_job(parent["id"]) is None


@pytest.mark.parametrize("nodes", [0, 17, 1.5, "2"])
def test_nodes_out_of_bounds_are_refused(developer, nodes):
    assert_refused(evm_job(developer, {"blocks": blocks_of(developer, 2), "nodes": nodes}), "invalid_spec",
                   "spec['nodes']")


def test_a_budget_too_small_to_share_is_refused(developer):
    response = developer.client.post("/api/v1/jobs/", {"kind": "evm_block", "budget_wei": "2",
                                                       "spec": {"blocks": blocks_of(developer, 3), "nodes": 3}},
                                     format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_budget"
    assert not Job.objects.exists()  # nothing half-written


# --- the parent follows its children ----------------------------------------------------------------

@pytest.fixture
def family(provider: Any, developer: Any) -> tuple[int, list[Job]]:
    """A parent of two children, both matched (on two nodes)."""
    node_with_offer(provider, "one", price=10**15)
    node_with_offer(provider, "two", price=2 * 10**15)
    parent = split(developer, blocks_of(developer, 3), nodes=2)
    children = children_of(parent["id"])
    for child in children:
        assert scheduling.match_job(child.pk) is not None
    return parent["id"], children


def test_the_first_child_running_makes_the_parent_running_and_progress_is_the_mean(family):
    parent_id, (first, second) = family
    run(first, progress=0.5)
    parent = Job.objects.get(pk=parent_id)
    assert (parent.state, parent.progress) == ("running", 0.25)
    assert last_reason(parent_id) == f"child job {first.pk} running"
    run(second, progress=0.1)
    assert Job.objects.get(pk=parent_id).progress == pytest.approx(0.3)


def test_a_failed_child_fails_the_parent_and_cancels_its_sibling(family):
    parent_id, (first, second) = family
    run(first)
    run(second)

    assert run(second, RunState.FAILED, error="BlockMismatch: block 7 does not match") == "failed"

    parent, first = Job.objects.get(pk=parent_id), Job.objects.get(pk=first.pk)
    assert parent.state == "failed"
    assert last_reason(parent_id) == f"child job {second.pk} failed: BlockMismatch: block 7 does not match"
    assert first.state == "cancelled" and first.attempt_rows.get().outcome == AttemptOutcome.CANCELLED
    assert last_reason(first.pk).startswith(f"job {parent_id} failed: child job {second.pk} failed")
    assert set(Offer.objects.values_list("reserved_gpus", flat=True)) == {0}


def test_all_children_succeeding_make_the_parent_succeed_with_the_results_in_block_order(developer, family):
    parent_id, (first, second) = family
    blocks = Job.objects.get(pk=parent_id).spec["blocks"]
    run(second, RunState.SUCCEEDED, progress=1.0, output=output([(blocks[2], 30)], workers=2))
    assert Job.objects.get(pk=parent_id).state == "running"

    run(first, RunState.SUCCEEDED, progress=1.0, output=output([(blocks[0], 10), (blocks[1], 20)]))

    parent = Job.objects.get(pk=parent_id)
    assert (parent.state, parent.progress) == ("succeeded", 1.0)
    result = developer.client.get(f"/api/v1/jobs/{parent_id}/result/").json()["result"]
    assert [(block["artifact"], block["number"]) for block in result["blocks"]] == list(zip(blocks, [10, 20, 30]))
    assert result["totals"] == {"blocks": 3, "transactions": 6, "gas_used": 21000 * 60, "reexecuted": 3,
                                "elapsed_s": 1.5, "verified": True}
    assert (result["children"], result["workers"], result["engine"]) == ([first.pk, second.pk], 2, "reference")
    assert parent.result_artifact is not None


def test_cancelling_the_parent_cancels_the_children_first(developer, family):
    parent_id, children = family
    run(children[0])

    response = developer.client.post(f"/api/v1/jobs/{parent_id}/cancel/")

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert [Job.objects.get(pk=child.pk).state for child in children] == ["cancelled", "cancelled"]
    assert last_reason(parent_id) == "cancelled by its owner"
    assert not JobAttempt.objects.filter(outcome=AttemptOutcome.ACTIVE).exists()
    assert set(Offer.objects.values_list("reserved_gpus", flat=True)) == {0}


def test_cancelling_a_child_cancels_the_parent_and_the_other_children(developer, family):
    parent_id, (first, second) = family
    jobs.cancel_job(owner=developer.user, job_id=second.pk)
    assert Job.objects.get(pk=parent_id).state == "cancelled"
    assert last_reason(parent_id) == f"child job {second.pk} cancelled: cancelled by its owner"
    assert Job.objects.get(pk=first.pk).state == "cancelled"


# --- children spread over nodes ------------------------------------------------------------------------

def test_the_second_child_goes_to_a_node_without_a_sibling_even_if_dearer(provider, developer):
    cheap, _ = node_with_offer(provider, "cheap", price=10**15, count=4)
    dear, _ = node_with_offer(provider, "dear", price=3 * 10**15, count=4)
    parent = split(developer, blocks_of(developer, 3), nodes=3)
    first, second, third = children_of(parent["id"])

    placed = [scheduling.match_job(child.pk) for child in (first, second, third)]

    assert [match.spec.node_id for match in placed if match] == [cheap.pk, dear.pk, cheap.pk]


def test_jobs_without_a_parent_still_take_the_cheapest_offer(provider, developer):
    cheap, _ = node_with_offer(provider, "cheap", price=10**15, count=4)
    node_with_offer(provider, "dear", price=3 * 10**15, count=4)
    blocks = blocks_of(developer, 1)
    for _ in range(2):
        job = split(developer, blocks, nodes=1)
        match = scheduling.match_job(job["id"])
        assert match is not None and match.spec.node_id == cheap.pk


@pytest.mark.django_db(transaction=True)
def test_a_cancel_aborted_to_break_a_deadlock_is_run_again(developer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A split job's cancel can meet a child's failure head-on; PostgreSQL then aborts one side
    with SQLSTATE 40P01. The cancel side retries instead of answering 500."""
    from django.db import OperationalError

    from marketplace.services import jobs

    class Deadlock(Exception):
        sqlstate = "40P01"

    calls: list[int] = []
    real = jobs._cancel_job

    def collide_once(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from Deadlock()
        return real(**kwargs)

    job = jobs.submit_job(owner=developer.user, kind="benchmark")
    monkeypatch.setattr(jobs, "_cancel_job", collide_once)
    assert jobs.cancel_job(owner=developer.user, job_id=job.pk).state == "cancelled"
    assert len(calls) == 2
