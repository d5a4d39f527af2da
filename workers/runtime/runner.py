"""Runs one job attempt on a provider node and answers questions about it while it runs.

`JobRunner` is a plain class: `workers.ray_client` turns it into a detached Ray actor, so a
run outlives the Celery worker that started it and its result waits on the node until the
marketplace has stored it. The executor runs in a thread; `report` answers from another.
"""
from __future__ import annotations

import os
import socket
import threading
import traceback
from collections.abc import Callable
from typing import Any

from workers.runtime.spec import JobSpec, RunReport, RunState

MAX_LOG_LINES = 10_000


class ProgressReporter:
    """Handed to executors: ``progress(0.5, "half way")`` and ``log("line")``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fraction = 0.0
        self.message = ""
        self.lines: list[str] = []

    def progress(self, fraction: float, message: str = "") -> None:
        with self._lock:
            self.fraction = min(1.0, max(0.0, float(fraction)))
            self.message = message[:255]

    def log(self, line: str) -> None:
        with self._lock:
            if len(self.lines) < MAX_LOG_LINES:
                self.lines.append(line[:1000])

    def snapshot(self, log_offset: int) -> tuple[float, str, tuple[str, ...]]:
        with self._lock:
            return self.fraction, self.message, tuple(self.lines[log_offset:])


Executor = Callable[[JobSpec, ProgressReporter], dict[str, Any]]


class JobRunner:
    """One attempt: `start` launches the executor in a thread, `report` says how it is going."""

    def __init__(self, spec_json: str) -> None:
        self.spec = JobSpec.from_json(spec_json)
        self.reporter = ProgressReporter()
        self.state = RunState.STARTING
        self.output: dict[str, Any] | None = None
        self.error = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Where the run is: shown in the job's events, and how tests check the run is on its node.
        self.where = {"host": socket.gethostname(), "pid": os.getpid()}

    def start(self) -> str:
        """Begin running (idempotent); returns the state."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.spec.run_name, daemon=True)
                self.state = RunState.RUNNING
                self._thread.start()
            return self.state

    def report(self, log_offset: int = 0) -> str:
        """The run's `RunReport` as JSON, with the log lines from ``log_offset`` on."""
        fraction, message, lines = self.reporter.snapshot(log_offset)
        with self._lock:
            state, output, error = self.state, self.output, self.error
        return RunReport(state=state, progress=fraction, message=message, logs=lines, log_offset=log_offset,
                         output=output, error=error, extra=self.where).to_json()

    def _run(self) -> None:
        from workers.runtime.executors import executor_for

        try:
            output = executor_for(self.spec.kind)(self.spec, self.reporter)
        except Exception as exc:  # the executor's failure is the job's result, not the node's crash
            self.reporter.log(traceback.format_exc(limit=5))
            with self._lock:
                self.state, self.error = RunState.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
            return
        self.reporter.progress(1.0, "done")
        with self._lock:
            self.state, self.output = RunState.SUCCEEDED, output
