"""THE seam from Celery to Ray: submit a run, poll runs, stop a run. The only Ray import on that side.

Each run is a detached, named Ray actor (`workers.runtime.runner.JobRunner`) pinned to its node by
the ``node:<id>`` resource. Detached, so it outlives the Celery worker that created it (a task
killed mid-dispatch orphans nothing: the next poll finds the run by name); named
(``job-<id>-attempt-<n>``), so submitting twice creates one run. Its result stays on the node
until the marketplace has stored it and stops the run.

What crosses: `JobSpec` in, `RunReport` out, both JSON. Ray's errors become `RunFailed` (submit)
or a ``lost`` `RunStatus` (poll): a run is lost when its actor died, i.e. its node went away.

>>> configure("127.0.0.1:6390", "marketplace")
>>> submit(spec)           # 'job-7-attempt-1'
>>> poll({"job-7-attempt-1": 0})["job-7-attempt-1"].report.state
'running'
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.runtime.resources import run_resources
from workers.runtime.spec import JobSpec, RunReport, RunState

log = logging.getLogger(__name__)

# A run that has not answered within this is asked again next round: waiting longer (on runs whose
# actor is still starting) only delays every other run's news; the monitor runs every second.
POLL_TIMEOUT_S = 1.0
ACTOR_CONCURRENCY = 4  # the run's thread plus report/start calls answered while it works


class RunFailed(Exception):
    """Ray could not take the run. ``retriable``: worth trying again (elsewhere or later)."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


@dataclass(frozen=True)
class RunStatus:
    """What a poll learned: a report, or that the run is lost, or nothing this time (``unknown``)."""

    name: str
    report: RunReport | None = None
    lost: bool = False
    reason: str = ""

    @property
    def unknown(self) -> bool:
        return self.report is None and not self.lost


_lock = threading.Lock()
_config: dict[str, str] = {}
_remote_runner: Any = None


def configure(address: str, namespace: str, node_ip: str = "127.0.0.1") -> None:
    """Where the cluster is, and this process's address as the cluster sees it. Connection happens
    lazily, in the process that uses it (after Celery forks its pool)."""
    _config.update(address=address, namespace=namespace, node_ip=node_ip)


def _runner_class() -> Any:
    """The Ray actor class for runs, connecting this process to the cluster on first use."""
    global _remote_runner
    with _lock:
        if _remote_runner is None:
            import ray

            from workers.cluster import connect_driver
            from workers.runtime.runner import JobRunner

            if not _config:
                raise RunFailed("ray_client.configure() was not called", retriable=False)
            connect_driver(_config["address"], _config["namespace"], host=_config["node_ip"])
            _remote_runner = ray.remote(JobRunner)
        return _remote_runner


def submit(spec: JobSpec) -> str:
    """Create the run for this attempt on its node (or find the one already there) and start it."""
    import ray

    runner = _runner_class()
    try:
        actor = runner.options(
            name=spec.run_name, namespace=_config["namespace"], lifetime="detached", get_if_exists=True,
            num_cpus=1, resources=run_resources(spec.node_id, spec.gpu_model, spec.gpus), max_restarts=0,
            max_concurrency=ACTOR_CONCURRENCY,
        ).remote(spec.to_json())
        actor.start.remote()
    except (ray.exceptions.RaySystemError, ConnectionError) as exc:
        raise RunFailed(f"the cluster did not take the run: {exc}", retriable=True) from exc
    return spec.run_name


def _actor(name: str) -> Any | None:
    import ray

    try:
        return ray.get_actor(name, namespace=_config["namespace"])
    except ValueError:  # no such actor: never created, or gone with its node
        return None


def poll(runs: Mapping[str, int], timeout_s: float = POLL_TIMEOUT_S) -> dict[str, RunStatus]:
    """Ask every run how it is going (in parallel); ``runs`` maps run name to the log offset wanted."""
    import ray

    _runner_class()
    statuses: dict[str, RunStatus] = {}
    pending: dict[Any, str] = {}
    for name, offset in runs.items():
        actor = _actor(name)
        if actor is None:
            statuses[name] = RunStatus(name, lost=True, reason="the run is gone from the cluster (node lost?)")
        else:
            pending[actor.report.remote(offset)] = name
    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s) if pending else ([], [])
    for ref in ready:
        statuses[pending[ref]] = _status_of(pending[ref], ref)
    for name in runs:
        statuses.setdefault(name, RunStatus(name))  # no answer in time: ask again next round
    return statuses


def _status_of(name: str, ref: Any) -> RunStatus:
    import ray

    try:
        return RunStatus(name, report=RunReport.from_json(ray.get(ref)))
    except ray.exceptions.ActorUnavailableError:
        return RunStatus(name)  # restarting or briefly unreachable: not lost yet
    except ray.exceptions.RayActorError as exc:
        return RunStatus(name, lost=True, reason=f"the run died: {_short(exc)}")


def start(name: str) -> None:
    """Nudge a run that reports ``starting`` (its start call was lost with a killed worker)."""
    actor = _actor(name)
    if actor is not None:
        actor.start.remote()


def stop(name: str) -> bool:
    """Stop the run and free its node slot; True if there was one to stop."""
    import ray

    _runner_class()
    actor = _actor(name)
    if actor is None:
        return False
    ray.kill(actor, no_restart=True)
    return True


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


__all__ = ["RunFailed", "RunState", "RunStatus", "configure", "poll", "start", "stop", "submit"]
