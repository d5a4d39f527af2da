"""The ``evm_block`` executor: run a job's blocks on its node and verify each against its header.

The blocks come as bundles in `JobSpec.inputs` (the marketplace ships the artifacts' bytes with
the run: see `workers.runtime.spec`). Every bundle is parsed before any block runs, so a
malformed one fails the job at once, naming the block and the field. Then the blocks run in the
order given: sequentially with ``workers: 1``, else on a `workers.evm.RayPool` of ``workers``
shard actors pinned to this node (``node:<id>``) and reused for every block. The job succeeds
only if every block verifies; the first mismatch fails it with the mismatch as its reason (the
first transaction whose receipt differs, or that the header itself disagrees).

With the native engine (``engine: "native"``) no shards are made: each block runs in this process
on ``workers`` native threads (capped at the CPUs this process may use), the GIL released.

Each shard takes one whole CPU and this run holds one, so ``workers`` is capped at the node's
CPUs minus one; shards the node cannot place within `PLACEMENT_TIMEOUT_S` (its CPUs are busy
with other runs) do not hold the job hostage: it runs sequentially instead, and says so in its log.

One job runs on one node: the marketplace places each job (each attempt) on one offer, so a range
of blocks spreads over that node's workers. To spread a range over several nodes, a spec asks for
``nodes`` > 1 and the marketplace splits the job into child jobs of contiguous slices of the blocks,
one per node, and combines their results (`marketplace.services.jobs`); each child runs here like
any job.

>>> output = run_evm_blocks(spec, ProgressReporter())     # doctest: +SKIP
>>> output["totals"]["verified"], [block["number"] for block in output["blocks"]]   # doctest: +SKIP
(True, [19933122, 19923400])
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from workers.evm import Block, BlockReport, EvmError, load_bundle, run_block
from workers.evm.parallel import ShardPool
from workers.evm.pool import DEFAULT_ENGINE
from workers.runtime.resources import node_resource
from workers.runtime.runner import ProgressReporter
from workers.runtime.spec import JobSpec

PLACEMENT_TIMEOUT_S = 30.0
SHARD_NODE_SHARE = 0.01  # of the node's ``node:<id>`` slots: pins shards there without using up its run slots



class BlockPool(ShardPool, Protocol):
    """A shard pool that takes one block after another (`workers.evm.RayPool`, `LocalPool`)."""

    def load(self, block: Block) -> None: ...

    def close(self) -> None: ...


# (workers, engine, reporter) -> an empty pool of at most that many shards, or None: run sequentially
PoolFactory = Callable[[int, str, ProgressReporter], "BlockPool | None"]


class BlockRejected(Exception):
    """A block bundle cannot be parsed or executed (the input is wrong, not the node)."""


class BlockMismatch(Exception):
    """A block's execution does not match its header."""


def run_evm_blocks(spec: JobSpec, reporter: ProgressReporter) -> dict[str, Any]:
    """The ``evm_block`` executor (see the module docstring); shards are Ray actors on this node."""
    def on_this_node(workers: int, engine: str, reporter: ProgressReporter) -> BlockPool | None:
        return ray_pool(spec.node_id, workers, engine, reporter)

    return execute_blocks(spec, reporter, on_this_node)


def execute_blocks(spec: JobSpec, reporter: ProgressReporter, make_pool: PoolFactory) -> dict[str, Any]:
    """Parse every bundle, run the blocks over ``make_pool``'s pool (or sequentially), verify them."""
    artifact_ids = [int(item) for item in spec.spec["blocks"]]
    engine = str(spec.spec.get("engine", DEFAULT_ENGINE))
    requested = int(spec.spec.get("workers", 1))
    blocks = [_load(spec, position, artifact_id) for position, artifact_id in enumerate(artifact_ids)]
    total = sum(len(block.transactions) for block in blocks)
    reporter.log(f"{len(blocks)} block(s), {total} transactions, engine {engine}, {requested} worker(s) asked for")
    threads = native_threads(requested, reporter) if engine == "native" else 1
    pool = make_pool(requested, engine, reporter) if requested > 1 and engine != "native" else None
    try:
        reports = _run_all(blocks, artifact_ids, engine, pool, reporter, total, threads)
    finally:
        if pool is not None:
            pool.close()
    return _output(artifact_ids, reports, engine, requested, pool.workers if pool is not None else threads)


def native_threads(requested: int, reporter: ProgressReporter) -> int:
    """The native engine's threads: as asked, capped at the CPUs this process may run on."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, min(requested, cpus))
    if threads < requested:
        reporter.log(f"this process may use {cpus} CPU(s): {threads} native thread(s), not {requested}")
    elif threads > 1:
        reporter.log(f"native engine: {threads} threads in this process")
    return threads


def _load(spec: JobSpec, position: int, artifact_id: int) -> Block:
    where = f"blocks[{position}] (artifact {artifact_id})"
    try:
        data = spec.input_bytes(artifact_id)
    except (KeyError, ValueError):
        raise BlockRejected(f"{where}: its bytes did not come with the run") from None
    try:
        return load_bundle(data, source=f"artifact {artifact_id}")
    except EvmError as exc:
        raise BlockRejected(f"{where} is not a valid block bundle: {exc}") from None


def _run_all(blocks: Sequence[Block], artifact_ids: Sequence[int], engine: str, pool: BlockPool | None,
             reporter: ProgressReporter, total: int, threads: int = 1) -> list[BlockReport]:
    reports: list[BlockReport] = []
    done_before = 0
    for block, artifact_id in zip(blocks, artifact_ids):
        report = _run_one(block, artifact_id, engine, pool, _progress(reporter, block, done_before, total), threads)
        reporter.log(_summary(report, artifact_id))
        if not report.verified:
            raise BlockMismatch(f"block {report.number} (artifact {artifact_id}) does not match its header: "
                                f"{report.mismatch or _failed_checks(report)}")
        reports.append(report)
        done_before += len(block.transactions)
        reporter.progress(done_before / total if total else len(reports) / len(blocks),
                          f"{len(reports)} of {len(blocks)} blocks verified")
    return reports


def _run_one(block: Block, artifact_id: int, engine: str, pool: BlockPool | None,
             progress: Callable[[int, int], None], threads: int = 1) -> BlockReport:
    try:
        if pool is not None:
            pool.load(block)
        return run_block(block, engine=engine, pool=pool, threads=threads, progress=progress)
    except EvmError as exc:  # an invalid transaction, missing pre-state, an unknown engine: the input's fault
        raise BlockRejected(f"block {block.number} (artifact {artifact_id}): {exc.code}: {exc}") from None


def _progress(reporter: ProgressReporter, block: Block, done_before: int, total: int) -> Callable[[int, int], None]:
    def progress(done: int, count: int) -> None:
        if total:
            reporter.progress((done_before + done) / total, f"block {block.number}: {done}/{count} transactions")
    return progress


def _summary(report: BlockReport, artifact_id: int) -> str:
    verdict = "verified" if report.verified else "MISMATCH"
    return (f"block {report.number} ({report.fork}, artifact {artifact_id}): {report.transactions} transactions, "
            f"{report.gas_used} gas, {report.elapsed_s:.3f} s on "
            f"{f'{report.threads} thread(s)' if report.threads > 1 else f'{report.workers} worker(s)'}, "
            f"{report.reexecuted} re-executed in {report.rounds} round(s): {verdict}")


def _failed_checks(report: BlockReport) -> str:
    failed = [name for name, ok in report.checks.items() if not ok]
    return f"{', '.join(failed) or 'no check ran'} differ from the header"


def _output(artifact_ids: Sequence[int], reports: Sequence[BlockReport], engine: str, requested: int,
            workers: int) -> dict[str, Any]:
    blocks = [{"artifact": artifact_id, **report.as_json()} for artifact_id, report in zip(artifact_ids, reports)]
    return {
        "engine": engine,
        "workers": workers,
        "workers_requested": requested,
        "blocks": blocks,
        "totals": {
            "blocks": len(reports),
            "transactions": sum(report.transactions for report in reports),
            "gas_used": sum(report.gas_used for report in reports),
            "reexecuted": sum(report.reexecuted for report in reports),
            "elapsed_s": round(sum(report.elapsed_s for report in reports), 6),
            "verified": all(report.verified for report in reports),
        },
    }


# --- shards on this node --------------------------------------------------------------------------

def ray_pool(node_id: int, workers: int, engine: str, reporter: ProgressReporter) -> BlockPool | None:
    """Up to ``workers`` shard actors on node ``node_id`` (this run's), placed and ready; None (run
    sequentially) when Ray is not running here or the node cannot hold two shards now."""
    import ray

    from workers.evm import RayPool

    if not ray.is_initialized():  # never start a private cluster from inside a run
        reporter.log("not running on a Ray node: running sequentially")
        return None
    cpus = _node_cpus()
    usable = min(workers, cpus - 1)
    if usable < workers:
        reporter.log(f"the node has {cpus} CPU(s), one of them this run's: {max(usable, 1)} worker(s), not {workers}")
    if usable < 2:
        reporter.log("running sequentially")
        return None
    pool = RayPool(workers=usable, engine=engine, resources={node_resource(node_id): SHARD_NODE_SHARE})
    actors: list[Any] = list(pool.actors)
    # ``__ray_ready__`` answers once an actor is placed and constructed (RayPool.load would wait forever).
    ready, _ = ray.wait([actor.__ray_ready__.remote() for actor in actors], num_returns=usable,
                        timeout=PLACEMENT_TIMEOUT_S)
    if len(ready) < usable:
        pool.close()
        reporter.log(f"only {len(ready)} of {usable} workers could be placed in {PLACEMENT_TIMEOUT_S:.0f} s "
                     "(the node's CPUs are busy): running sequentially")
        return None
    reporter.log(f"{usable} workers ready on this node")
    return pool


def _node_cpus() -> int:
    """The CPUs of the Ray node this process runs on (0 if Ray does not know it)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == here:
            return int(node.get("Resources", {}).get("CPU", 0))
    return 0
