"""What crosses from the marketplace to a provider node and back: frozen, versioned, JSON-ready.

A `JobSpec` is everything a node needs to run one attempt of a job; a `RunReport` is what
the node says about it (state, progress, logs, and finally the result). Both survive a JSON
round trip unchanged, so they can cross Celery, Ray and HTTP alike.

>>> spec = JobSpec(job_id=7, attempt=1, kind="benchmark", spec={"measurements": []}, gpus=1, node_id=3)
>>> JobSpec.from_json(spec.to_json()) == spec
True

A job's input artifacts travel inside its `JobSpec` (``inputs``: artifact id -> base64 of the bytes),
read from the marketplace's artifact storage by the Celery worker that starts the run. Why there:
nothing else ships inputs to nodes; the Ray run actor is created with the spec as its argument, so
the bytes reach the node in the same call that pins the run there (Ray moves arguments over 100 KB
through its object store) and the run holds its own copy from its constructor on, for its whole
life. Two alternatives were weaker: a ``ray.put`` reference held by the run would die with the
Celery worker process that owns it, while the run is detached precisely to outlive that process;
and a node fetching from the marketplace would need credentials for, and a route to, its storage.
A re-queued attempt on another node simply gets the bytes again. The cost is a bounded copy per
attempt (``JOB_INPUT_MAX_BYTES``, checked at submission).
"""
from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any

SPEC_VERSION = 1


class SpecVersionError(ValueError):
    """The other side speaks a version of the wire format this code does not."""


def _check_version(data: dict[str, Any], what: str) -> None:
    if data.get("version") != SPEC_VERSION:
        raise SpecVersionError(f"{what} version {data.get('version')!r} is not {SPEC_VERSION}; upgrade the node")


@dataclass(frozen=True)
class JobSpec:
    """One attempt of one job, pinned to one node."""

    job_id: int
    attempt: int
    kind: str
    spec: dict[str, Any]
    gpus: int
    node_id: int
    gpu_model: str = ""
    version: int = SPEC_VERSION
    inputs: dict[str, str] = field(default_factory=dict)  # artifact id -> base64 of its bytes

    def input_bytes(self, artifact_id: int) -> bytes:
        """The bytes of input artifact ``artifact_id`` (KeyError if the spec does not carry it)."""
        return base64.b64decode(self.inputs[str(artifact_id)], validate=True)

    @property
    def run_name(self) -> str:
        """The name of this attempt's run on the cluster: unique per job and attempt."""
        return f"job-{self.job_id}-attempt-{self.attempt}"

    def to_json(self) -> str:
        data = asdict(self)
        if not self.inputs:
            del data["inputs"]  # specs without inputs read exactly as before inputs existed
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        _check_version(data, "job spec")
        return cls(**data)


class RunState:
    """Where a run is. Terminal: SUCCEEDED, FAILED."""

    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TERMINAL = frozenset({SUCCEEDED, FAILED})


@dataclass(frozen=True)
class RunReport:
    """A run's state as the node sees it. ``logs`` are the lines from index ``log_offset`` on."""

    state: str
    progress: float = 0.0
    message: str = ""
    logs: tuple[str, ...] = ()
    log_offset: int = 0
    output: dict[str, Any] | None = None
    error: str = ""
    version: int = SPEC_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in RunState.TERMINAL

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "logs": list(self.logs)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunReport:
        data = json.loads(text)
        _check_version(data, "run report")
        return cls(**{**data, "logs": tuple(data.get("logs", ()))})
