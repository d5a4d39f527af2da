"""Executors: the code that does a job kind's work on the node. One function per kind."""
from __future__ import annotations

from workers.runtime.runner import Executor


class NoExecutor(LookupError):
    """The node has no executor for this kind (an old node, or a reserved kind)."""


def executor_for(kind: str) -> Executor:
    """The executor registered for ``kind``."""
    if kind == "benchmark":
        from workers.runtime.benchmark import run_benchmark

        return run_benchmark
    if kind == "evm_block":
        from workers.runtime.evm_job import run_evm_blocks

        return run_evm_blocks
    raise NoExecutor(f"this node cannot run {kind!r} jobs")
