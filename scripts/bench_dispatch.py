#!/usr/bin/env python
"""Dispatch speed: the time from submitting a job to its `running`, and the jobs per second the
dispatcher sustains with a burst of 200 queued jobs.

It starts the whole marketplace from real parts with the dispatch test harness
(`tests/dispatch/harness.py`): Redis, gunicorn, a Celery worker with beat, a Ray head and two
provider nodes joined through the real agent, on the database in DATABASE_URL (migrated here).
Each node offers 16 GPUs and gives Ray 16 CPUs, so at most 32 runs (each a Ray actor process of
~60-100 MB) exist at once. Every job is `benchmark` (cpu_gflops, 0.1 s) needing one GPU.

Times come from the database's own timestamps (JobEvent.created_at of the pending, dispatched and
running state events; Job.finished_at), never from client polling, so polling cannot blur them:

- latency: jobs submitted one at a time on an idle system, each waited to its end before the next;
  median and p90 of submitted -> dispatched and submitted -> running;
- throughput: a burst of jobs POSTed as fast as possible (8 client threads), waited to success;
  dispatched jobs/s = n / (last dispatched - first submitted), completed jobs/s likewise with
  finished_at, and the time to drain the queue.

Both run side by side in the same stack against two web apps on the same database, broker and
workers: one queues a dispatch task on commit (the default), the other has DISPATCH_QUEUE_ENABLED=0,
so only the beat sweep (every DISPATCH_SWEEP_S) dispatches its jobs. With several --rounds the
bursts alternate (on-commit first, then sweep first, ...) and the table shows medians over rounds.
Intervals are production defaults (settings.py), not the dispatch tests' shortened ones. Note that
`running` is recorded when the monitor (every MONITOR_INTERVAL_S) first sees the run started.

A third table shows the CPU each part of the marketplace used per job during the bursts (here the
control plane and the simulated provider nodes share the machine's cores), and how busy it was.

    scripts/loopback-only scripts/with-postgres .venv/bin/python scripts/bench_dispatch.py

Every process it starts is stopped at the end, on error and on Ctrl-C or SIGTERM too.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402
import psutil  # noqa: E402

django.setup()

import redis  # noqa: E402
import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from marketplace.models import Job, JobEvent, JobEventType, JobState  # noqa: E402
from tests.dispatch.harness import RTX, Stack, running_stack, wait_until  # noqa: E402

JOB: dict[str, Any] = {"kind": "benchmark", "spec": {"measurements": ["cpu_gflops"], "duration_s": 0.1},
                       "requirements": {"gpus": 1}}
LIVE_STATES = (JobState.PENDING, JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING)
SUBMIT_THREADS = 8  # the web apps serve 2 workers x 4 threads
MODES = ("on-commit", "sweep only")


# --- what the database says ---------------------------------------------------------------------

@dataclass(frozen=True)
class Timeline:
    """One job's life from the database: when it was submitted, dispatched, seen running, finished."""

    submitted: datetime
    dispatched: datetime
    running: datetime
    finished: datetime
    attempts: int


def state_times(job_ids: Sequence[int]) -> dict[tuple[int, str], datetime]:
    """(job, state) -> when the job first entered it, for the states a timeline needs."""
    first: dict[tuple[int, str], datetime] = {}
    events = JobEvent.objects.filter(job_id__in=job_ids, type=JobEventType.STATE,
                                     to_state__in=[JobState.PENDING, JobState.DISPATCHED, JobState.RUNNING])
    for job_id, state, at in events.order_by("id").values_list("job_id", "to_state", "created_at"):
        first.setdefault((job_id, state), at)
    return first


def timelines(job_ids: Sequence[int]) -> list[Timeline]:
    """The timeline of each (finished) job; a job dispatched twice keeps its first dispatch."""
    first = state_times(job_ids)
    lines = []
    for pk, finished, attempts in Job.objects.filter(pk__in=job_ids).values_list("id", "finished_at", "attempts"):
        if finished is None:
            raise RuntimeError(f"job {pk} has not finished")
        lines.append(Timeline(first[(pk, JobState.PENDING)], first[(pk, JobState.DISPATCHED)],
                              first[(pk, JobState.RUNNING)], finished, attempts))
    return lines


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def peak_overlap(spans: Sequence[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (here: runs holding a GPU, dispatched to finished)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def unfinished(job_ids: Sequence[int]) -> int:
    return Job.objects.filter(pk__in=job_ids, state__in=LIVE_STATES).count()


def not_succeeded(job_ids: Sequence[int]) -> dict[int, str]:
    return dict(Job.objects.filter(pk__in=job_ids).exclude(state=JobState.SUCCEEDED).values_list("id", "state"))


# --- driving the stack --------------------------------------------------------------------------

class Client:
    """Submits jobs over the REST API as the stack's developer; one HTTP session per thread."""

    def __init__(self, api: str, token: str) -> None:
        self.url = f"{api}/api/v1/jobs/"
        self.headers = {"Authorization": f"Token {token}"}
        self.local = threading.local()

    def submit(self) -> int:
        session = getattr(self.local, "session", None) or requests.Session()
        self.local.session = session
        response = session.post(self.url, json=JOB, headers=self.headers, timeout=30)
        if response.status_code != 201:
            raise RuntimeError(f"submitting a job answered {response.status_code}: {response.text[:300]}")
        return int(response.json()["id"])


def live_runs(stack: Stack) -> int:
    """Run actor processes still alive on the provider nodes (a stopped run's process exits a bit later)."""
    count = 0
    for name, proc in list(stack.procs.items()):
        if name.startswith("agent-") and proc.popen is not None and proc.alive():
            with contextlib.suppress(psutil.Error):
                count += sum(1 for child in psutil.Process(proc.popen.pid).children(recursive=True)
                             if child.name().startswith("ray::JobRunner"))
    return count


def wait_idle(stack: Stack, broker: redis.Redis, timeout_s: float = 120) -> None:
    """No live job, nothing queued or in flight in the broker (stop_run tasks included), no run process."""
    def idle() -> bool:
        return (not Job.objects.filter(state__in=LIVE_STATES).exists() and broker.llen("market") == 0
                and broker.hlen("unacked") == 0 and live_runs(stack) == 0)
    try:
        wait_until(idle, timeout_s, "the marketplace to be idle", interval_s=0.2)
    except AssertionError:
        raise RuntimeError(f"not idle after {timeout_s} s; celery log:\n{stack.procs['celery'].tail(20)}") from None


def wait_done(stack: Stack, job_ids: Sequence[int], timeout_s: float) -> None:
    try:
        wait_until(lambda: unfinished(job_ids) == 0, timeout_s, f"{len(job_ids)} jobs to finish", interval_s=0.2)
    except AssertionError:
        raise RuntimeError(f"{unfinished(job_ids)} of {len(job_ids)} jobs unfinished after {timeout_s} s; "
                           f"celery log:\n{stack.procs['celery'].tail(20)}") from None
    failed = not_succeeded(job_ids)
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed: {dict(list(failed.items())[:10])}")


def submit_burst(client: Client, count: int) -> tuple[list[int], float]:
    """POST ``count`` jobs as fast as the threads go; return their ids and the wall-clock seconds."""
    pool = ThreadPoolExecutor(max_workers=SUBMIT_THREADS)
    started = time.perf_counter()
    try:
        ids = list(pool.map(lambda _: client.submit(), range(count)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: submit nothing more
    return ids, time.perf_counter() - started


# --- where the CPU goes -------------------------------------------------------------------------

def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores) since boot."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


def postmaster() -> psutil.Process:
    """The PostgreSQL server this script talks to (with-postgres starts it outside our tree)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])
    return backend.parent() or backend


CpuSample = dict[str, float]
REST = "Ray head + this script"


class CpuMeter:
    """CPU seconds used by each part of the marketplace, by the rest of the machine, and wall time.

    A thread samples every process of each part twice a second and keeps the last reading of each
    process, so runs that came and went still count: Ray's raylet ignores SIGCHLD, so the CPU time
    of its exited run actors is credited to no parent. (A process loses at most its last half second.)
    """

    def __init__(self, stack: Stack, interval_s: float = 0.5) -> None:
        self.stack, self.interval_s = stack, interval_s
        self.database, self.me = postmaster(), psutil.Process()
        self.seen: dict[tuple[int, float], tuple[str, float]] = {}  # (pid, start time) -> (part, CPU s)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)

    def __enter__(self) -> CpuMeter:
        self._poll()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def sample(self) -> CpuSample:
        self._poll()
        with self.lock:
            parts: CpuSample = {}
            for part, cpu in self.seen.values():
                parts[part] = parts.get(part, 0.0) + cpu
        ours = sum(parts.values())
        return {**parts, "all marketplace processes": ours, "other processes on the machine": machine_busy() - ours,
                "wall": time.monotonic()}

    def _run(self) -> None:
        while not self.done.wait(self.interval_s):
            self._poll()

    def _roots(self) -> list[tuple[str, psutil.Process]]:
        named = [("Ray nodes (raylets, run actors)", "agent-"), ("Celery worker + beat", "celery"),
                 ("web apps (gunicorn)", "web"), ("Redis", "redis")]
        roots = []
        for part, prefix in named:
            for name, proc in list(self.stack.procs.items()):
                if name.startswith(prefix) and proc.popen is not None and proc.alive():
                    with contextlib.suppress(psutil.Error):
                        roots.append((part, psutil.Process(proc.popen.pid)))
        return [*roots, ("PostgreSQL", self.database), (REST, self.me)]

    def _poll(self) -> None:
        readings: dict[tuple[int, float], tuple[str, float]] = {}
        for part, root in self._roots():
            with contextlib.suppress(psutil.Error):
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        # setdefault: the first part listed claims a process (the script, listed last, the rest)
                        readings.setdefault((proc.pid, proc.create_time()), (part, times.user + times.system))
        with self.lock:
            self.seen.update(readings)


def cpu_used(before: CpuSample, after: CpuSample) -> CpuSample:
    return {key: after[key] - before.get(key, 0.0) for key in after}


# --- the two measurements -----------------------------------------------------------------------

@dataclass(frozen=True)
class Latency:
    to_dispatched: list[float]
    to_running: list[float]


@dataclass(frozen=True)
class Burst:
    jobs: int
    submit_s: float  # client wall clock for all POSTs
    drained_s: float  # first submitted -> last dispatched
    finished_s: float  # first submitted -> last finished
    wait_to_running: float  # median per job: submitted -> running
    start_s: float  # median per job: dispatched -> running (actor start + monitor)
    run_s: float  # median per job: running -> finished
    peak_gpus: int
    retries: int
    cpu: CpuSample  # CPU seconds by part during the burst, and its wall time

    @property
    def submit_rate(self) -> float:
        return self.jobs / self.submit_s

    @property
    def dispatch_rate(self) -> float:
        return self.jobs / self.drained_s

    @property
    def completion_rate(self) -> float:
        return self.jobs / self.finished_s


def measure_latency(stack: Stack, broker: redis.Redis, client: Client, count: int, timeout_s: float) -> Latency:
    ids = []
    for _ in range(count):
        wait_idle(stack, broker)
        ids.append(client.submit())
        wait_done(stack, ids[-1:], timeout_s)
    lines = timelines(ids)
    return Latency([seconds(t.dispatched, t.submitted) for t in lines],
                   [seconds(t.running, t.submitted) for t in lines])


def measure_burst(stack: Stack, broker: redis.Redis, client: Client, count: int, timeout_s: float,
                  meter: CpuMeter) -> Burst:
    wait_idle(stack, broker)
    before = meter.sample()
    ids, submit_s = submit_burst(client, count)
    wait_done(stack, ids, timeout_s)
    cpu = cpu_used(before, meter.sample())
    lines = timelines(ids)
    first = min(t.submitted for t in lines)
    return Burst(
        jobs=count, submit_s=submit_s, drained_s=seconds(max(t.dispatched for t in lines), first),
        finished_s=seconds(max(t.finished for t in lines), first),
        wait_to_running=statistics.median(seconds(t.running, t.submitted) for t in lines),
        start_s=statistics.median(seconds(t.running, t.dispatched) for t in lines),
        run_s=statistics.median(seconds(t.finished, t.running) for t in lines),
        peak_gpus=peak_overlap([(t.dispatched, t.finished) for t in lines]),
        retries=sum(t.attempts - 1 for t in lines), cpu=cpu)


# --- the table ------------------------------------------------------------------------------------

def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def row(label: str, *cells: str) -> str:
    return f"  {label:<46}" + "".join(f"{cell:>14}" for cell in cells)


def print_environment(args: argparse.Namespace, stack: Stack, load: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    print("\nenvironment")
    for label, value in [
        ("cores", os.cpu_count()), ("Ray", metadata.version("ray")), ("Celery", metadata.version("celery")),
        ("PostgreSQL", postgres), ("provider nodes", len(stack.node_ids)),
        ("GPUs offered", f"{args.gpus_per_node} x {RTX} per node, {args.gpus_per_node * len(stack.node_ids)} in all"),
        ("Ray CPUs per node (1 per run)", args.cpus_per_node),
        ("MONITOR_INTERVAL_S / DISPATCH_SWEEP_S", f"{stack.env['MONITOR_INTERVAL_S']} / "
                                                  f"{stack.env['DISPATCH_SWEEP_S']}"),
        ("Celery worker", "prefork x 2 + embedded beat"), ("web apps", "gunicorn 2 workers x 4 threads, each"),
        ("load average before (1 min)", f"{load:.2f}"),
    ]:
        print(f"  {label:<46}{value}")


def print_latency(results: dict[str, Latency], count: int) -> None:
    print(f"\nlatency: {count} jobs one at a time on an idle system (seconds)")
    print(row("", "median", "p90"))
    for mode in MODES:
        for label, values in [("submitted -> dispatched", results[mode].to_dispatched),
                              ("submitted -> running", results[mode].to_running)]:
            print(row(f"{mode:<12}{label}", f"{statistics.median(values):.3f}", f"{p90(values):.3f}"))


BURST_ROWS: list[tuple[str, Callable[[Burst], float], str]] = [
    ("submission rate, client (jobs/s)", lambda b: b.submit_rate, "{:.1f}"),
    ("dispatched jobs/s (n / last dispatched)", lambda b: b.dispatch_rate, "{:.2f}"),
    ("completed jobs/s (n / last finished)", lambda b: b.completion_rate, "{:.2f}"),
    ("queue drained after (s)", lambda b: b.drained_s, "{:.1f}"),
    ("all finished after (s)", lambda b: b.finished_s, "{:.1f}"),
    ("median submitted -> running (s)", lambda b: b.wait_to_running, "{:.1f}"),
    ("median dispatched -> running (s)", lambda b: b.start_s, "{:.2f}"),
    ("median running -> finished (s)", lambda b: b.run_s, "{:.2f}"),
    ("peak GPUs held (dispatched..finished)", lambda b: b.peak_gpus, "{:.0f}"),
    ("retried attempts", lambda b: b.retries, "{:.0f}"),
]


def print_bursts(results: dict[str, list[Burst]], count: int) -> None:
    rounds = len(results[MODES[0]])
    print(f"\nthroughput: a burst of {count} jobs" + (f", median of {rounds} rounds" if rounds > 1 else ""))
    print(row("(ratio = on-commit / sweep only)", *MODES, "ratio"))
    for label, value, fmt in BURST_ROWS:
        on, off = (statistics.median(value(b) for b in results[mode]) for mode in MODES)
        print(row(label, fmt.format(on), fmt.format(off), f"{on / off:.2f}" if off else "-"))


def print_cpu(results: dict[str, list[Burst]]) -> None:
    """CPU per job by part during the bursts: what a dispatched job costs, and how busy the machine was."""
    print("\nCPU during the bursts, per job (core-seconds)")
    print(row("", *MODES))
    for part in results[MODES[0]][0].cpu:
        if part != "wall":
            print(row(part, *(f"{statistics.median(b.cpu[part] / b.jobs for b in results[m]):.3f}" for m in MODES)))
    busy = [statistics.median(100 * (b.cpu["all marketplace processes"] + b.cpu["other processes on the machine"])
                              / (b.cpu["wall"] * (os.cpu_count() or 1)) for b in results[m]) for m in MODES]
    print(row("machine busy (% of all cores)", *(f"{value:.0f} %" for value in busy)))


# --- main -----------------------------------------------------------------------------------------

def interrupt_once() -> None:
    """SIGINT/SIGTERM: the first one stops the benchmark (the stack is then stopped); later ones
    are ignored, so a second Ctrl-C cannot cut the clean-up short."""
    state = {"seen": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if state["seen"]:
            print("still stopping the processes started ...", file=sys.stderr)
            return
        state["seen"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-jobs", type=int, default=10)
    parser.add_argument("--burst-jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="bursts per mode, alternating which goes first")
    parser.add_argument("--gpus-per-node", type=int, default=16)
    parser.add_argument("--cpus-per-node", type=int, default=16)
    parser.add_argument("--monitor-s", type=int, default=1, help="MONITOR_INTERVAL_S (settings default: 1)")
    parser.add_argument("--sweep-s", type=int, default=2, help="DISPATCH_SWEEP_S (settings default: 2)")
    parser.add_argument("--timeout-s", type=float, default=600, help="per burst")
    return parser.parse_args()


def stack_env(args: argparse.Namespace) -> dict[str, str]:
    """Production intervals, not the dispatch tests' shortened ones (nothing here kills nodes)."""
    return {"MONITOR_INTERVAL_S": str(args.monitor_s), "DISPATCH_SWEEP_S": str(args.sweep_s),
            "NODE_HEARTBEAT_INTERVAL_S": "5", "NODE_HEARTBEAT_TIMEOUT_S": "30"}


def burst_order(rounds: int) -> Iterator[str]:
    for index in range(rounds):
        yield from (MODES if index % 2 == 0 else reversed(MODES))


def run(args: argparse.Namespace, stack: Stack) -> None:
    load = os.getloadavg()[0]
    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    sweep_only = stack.start_web("web-sweep-only", env={"DISPATCH_QUEUE_ENABLED": "0"})
    clients = {MODES[0]: Client(stack.api, stack.developer_token), MODES[1]: Client(sweep_only, stack.developer_token)}
    print_environment(args, stack, load)
    latency = {mode: measure_latency(stack, broker, clients[mode], args.latency_jobs, 60) for mode in MODES}
    print_latency(latency, args.latency_jobs)
    bursts: dict[str, list[Burst]] = {mode: [] for mode in MODES}
    with CpuMeter(stack) as meter:
        for mode in burst_order(args.rounds):
            bursts[mode].append(measure_burst(stack, broker, clients[mode], args.burst_jobs, args.timeout_s, meter))
            print(f"  ({mode} burst done: {bursts[mode][-1].finished_s:.1f} s)", flush=True)
    print_bursts(bursts, args.burst_jobs)
    print_cpu(bursts)


def main() -> int:
    args = parse_args()
    interrupt_once()
    started = time.perf_counter()
    try:
        call_command("migrate", verbosity=0)
        nodes = {name: [(RTX, args.gpus_per_node)] for name in ("a", "b")}
        with running_stack(os.environ["DATABASE_URL"], nodes=nodes, agent_cpus=args.cpus_per_node,
                           env=stack_env(args), prefix=f"bench-{secrets.token_hex(3)}") as stack:
            print(f"stack up in {time.perf_counter() - started:.0f} s", flush=True)
            run(args, stack)
    except KeyboardInterrupt:
        print("\ninterrupted: every process started was stopped", file=sys.stderr)
        return 130
    print(f"\ntotal {time.perf_counter() - started:.0f} s, every process started was stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
