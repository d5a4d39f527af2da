"""Dispatch with real parts: Redis, a Celery worker with beat, a Ray head and two provider nodes
joined through the agent. Node A has 2 RTX 4090 and 1 A100 (cheaper); node B has 2 RTX 4090."""
from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import psutil
import pytest

from tests.dispatch.harness import HEARTBEAT_TIMEOUT_S, Stack, wait_until

# django_db (not transactional): each test only reads; what the stack's processes and the module
# fixture wrote is committed and stays for the whole module.
pytestmark = [pytest.mark.dispatch, pytest.mark.django_db]

A100 = "NVIDIA A100 40GB"
RTX = "NVIDIA RTX 4090"


def benchmark(seconds: float, **requirements: Any) -> dict[str, Any]:
    return {"kind": "benchmark", "spec": {"measurements": ["cpu_gflops"], "duration_s": seconds},
            "requirements": requirements}


def running_pid(stack: Stack, job_id: int) -> int:
    """The process the run lives in, from the job's "running on node ... (pid N)" event."""
    for event in stack.events(job_id):
        found = re.search(r"pid (\d+)", event["reason"]) if event["to_state"] == "running" else None
        if found:
            return int(found.group(1))
    raise AssertionError(f"no running event with a pid: {stack.events(job_id)}")


def ray_session_of(agent_pid: int) -> int:
    """The session of the Ray node an agent started (its `ray start` runs in a session of its own)."""
    for child in psutil.Process(agent_pid).children(recursive=True):
        if "ray" in " ".join(child.cmdline()) and os.getsid(child.pid) != os.getsid(agent_pid):
            return os.getsid(child.pid)
    raise AssertionError("the agent has no Ray node process")


def attempts(job_id: int) -> list[tuple[int, str, int | None]]:
    from marketplace.models import JobAttempt

    return [(a.number, a.outcome, a.node_id) for a in JobAttempt.objects.filter(job_id=job_id).order_by("number")]


def test_a_job_pinned_to_a_node_runs_there(stack: Stack, db_access: None) -> None:
    job = stack.submit(benchmark(4, gpu_model=A100))  # only node A has an A100
    stack.wait_state(job["id"], {"running"}, timeout_s=60)
    pid = running_pid(stack, job["id"])
    assert os.getsid(pid) == ray_session_of(stack.procs["agent-a"].popen.pid)
    done = stack.wait_state(job["id"], {"succeeded"}, timeout_s=60)
    assert done["node"] == stack.node_ids["a"]
    result = stack.get(f"jobs/{job['id']}/result/")
    assert result["result"]["cpu_gflops"] > 0
    assert attempts(job["id"]) == [(1, "succeeded", stack.node_ids["a"])]


def test_a_job_no_node_can_satisfy_stays_queued_until_its_queue_timeout(stack: Stack, db_access: None) -> None:
    waiting = stack.submit(benchmark(1, gpu_model="NVIDIA H100 80GB HBM3"))
    timed = stack.submit({**benchmark(1, gpus=3, gpu_model=RTX), "queue_timeout_s": 3})
    time.sleep(5)  # several sweeps
    assert stack.job(waiting["id"])["state"] == "queued"
    failed = stack.wait_state(timed["id"], {"failed"}, timeout_s=20)
    assert failed["attempts"] == 0
    assert "queue timeout of 3 s" in stack.events(timed["id"])[-1]["reason"]
    assert stack.post(f"jobs/{waiting['id']}/cancel/").json()["state"] == "cancelled"


def test_two_jobs_never_share_reserved_gpus(stack: Stack, db_access: None) -> None:
    from marketplace.models import JobAttempt

    first = stack.submit(benchmark(4, gpu_model=A100))
    second = stack.submit(benchmark(1, gpu_model=A100))  # node A has one A100: it must wait
    stack.wait_state(first["id"], {"running"})
    assert stack.job(second["id"])["state"] == "queued"
    stack.wait_state(second["id"], {"succeeded"}, timeout_s=90)
    one = JobAttempt.objects.get(job_id=first["id"])
    two = JobAttempt.objects.get(job_id=second["id"])
    assert one.finished_at is not None and two.created_at >= one.finished_at


def test_cancel_works_while_queued_and_while_running(stack: Stack, db_access: None) -> None:
    from marketplace.models import Offer

    queued = stack.submit(benchmark(1, gpu_model="NVIDIA H100 80GB HBM3"))
    assert stack.post(f"jobs/{queued['id']}/cancel/").json()["state"] == "cancelled"
    running = stack.submit(benchmark(30, gpu_model=A100))
    stack.wait_state(running["id"], {"running"})
    pid = running_pid(stack, running["id"])
    assert stack.post(f"jobs/{running['id']}/cancel/").json()["state"] == "cancelled"
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
               "the cancelled run's process to end")
    assert Offer.objects.get(node_id=stack.node_ids["a"], gpu_model=A100).reserved_gpus == 0
    assert attempts(running["id"])[0][1] == "cancelled"
    time.sleep(2)
    assert stack.job(running["id"])["state"] == "cancelled"


def test_heartbeats_turn_a_node_offline_and_back_online(stack: Stack, db_access: None, settings: Any) -> None:
    from django.utils import timezone

    settings.NODE_HEARTBEAT_TIMEOUT_S = HEARTBEAT_TIMEOUT_S  # as the stack's processes have it

    from marketplace.models import Node

    agent = stack.procs["agent-b"]
    node = lambda: Node.objects.get(pk=stack.node_ids["b"])  # noqa: E731
    assert node().status(timezone.now()) == "online"
    agent.signal(signal.SIGSTOP)  # the agent stops heartbeating; its Ray node keeps running
    try:
        wait_until(lambda: node().status(timezone.now()) == "offline", HEARTBEAT_TIMEOUT_S + 10, "node B offline")
        offers = stack.get(f"offers/?available=true&gpu_model={RTX}")["results"]
        assert {o["node"] for o in offers} == {stack.node_ids["a"]}
    finally:
        agent.signal(signal.SIGCONT)
    wait_until(lambda: node().status(timezone.now()) == "online", 15, "node B online again")


def test_killing_a_provider_node_mid_job_reruns_it_on_the_other_node_once(stack: Stack, db_access: None) -> None:
    job = stack.submit(benchmark(12, gpu_model=RTX, gpus=2))  # A is cheaper: it runs there first
    stack.wait_state(job["id"], {"running"})
    assert stack.job(job["id"])["node"] == stack.node_ids["a"]
    agent_a = stack.procs["agent-a"]
    for child in psutil.Process(agent_a.popen.pid).children(recursive=True):
        try:
            os.killpg(os.getsid(child.pid), signal.SIGKILL)  # the whole Ray node, without warning
        except (ProcessLookupError, psutil.Error):
            pass
    agent_a.kill()
    done = stack.wait_state(job["id"], {"succeeded", "failed"}, timeout_s=120)
    assert done["state"] == "succeeded", stack.events(job["id"])
    history = attempts(job["id"])
    assert [(n, outcome) for n, outcome, _ in history] == [(1, "lost"), (2, "succeeded")]
    assert history[1][2] == stack.node_ids["b"]
    states = [e["to_state"] for e in stack.events(job["id"]) if e["type"] == "state"]
    assert states.count("succeeded") == 1 and "queued" in states[2:]
    stack.start_agent("a")  # later tests get node A back


def test_killing_the_celery_worker_mid_dispatch_loses_nothing(stack: Stack, db_access: None) -> None:
    jobs = [stack.submit(benchmark(0.5, gpu_model=RTX)) for _ in range(12)]
    time.sleep(0.5)
    stack.procs["celery"].kill()  # SIGKILL: worker, pool and beat, mid-task
    time.sleep(1)
    stack.start_celery()
    for job in jobs:
        stack.wait_state(job["id"], {"succeeded"}, timeout_s=180)
    for job in jobs:
        outcomes = [outcome for _, outcome, _ in attempts(job["id"])]
        assert outcomes.count("succeeded") == 1, (job["id"], outcomes)


def test_redis_restarting_loses_no_job(stack: Stack, db_access: None) -> None:
    redis = stack.procs["redis"]
    redis.kill()
    job = stack.submit(benchmark(0.5, gpu_model=RTX))  # the broker is down: it waits in the database
    assert job["state"] == "queued"
    redis.start()
    wait_until(lambda: stack.job(job["id"])["state"] == "succeeded", 90, "the job to run after Redis came back")


def test_end_to_end_from_submission_to_result(stack: Stack, db_access: None) -> None:
    import requests

    job = stack.submit({"kind": "benchmark", "spec": {"measurements": [], "duration_s": 1},
                        "requirements": {"gpu_model": RTX, "gpus": 1}, "max_price_wei": str(5 * 10**15)})
    done = stack.wait_state(job["id"], {"succeeded"}, timeout_s=90)
    states = [(e["from_state"], e["to_state"]) for e in stack.events(job["id"]) if e["type"] == "state"]
    assert states == [("", "pending"), ("pending", "queued"), ("queued", "dispatched"), ("dispatched", "running"),
                      ("running", "succeeded")]
    assert any(e["type"] == "progress" for e in stack.events(job["id"]))
    assert done["progress"] == 1.0
    result = stack.get(f"jobs/{job['id']}/result/")
    assert {"cpu_gflops", "memory_bandwidth_gbps"} <= set(result["result"])
    download = requests.get(f"{stack.api}/api/v1/artifacts/{result['result_artifact']}/download/", timeout=10,
                            headers={"Authorization": f"Token {stack.developer_token}"})
    assert download.json() == result["result"]
    ranked = requests.get(f"{stack.api}/api/v1/offers/?ordering=-score", timeout=10).json()["results"]
    ran_on = [offer for offer in ranked if offer["node"] == done["node"]]
    assert ran_on and all(offer["score"] > 0 and offer["benchmarked_at"] for offer in ran_on)
    assert [offer["score"] for offer in ranked] == sorted((offer["score"] for offer in ranked), reverse=True)
