"""Where parallel rounds run: shards that keep a block's pre-state resident between rounds.

A `Shard` holds one block, an engine for it and its own multi-version state. A round ships it
only the write sets that changed since the last round, plus the indices to run; it returns
results. `LocalPool` keeps shards in this process (deterministic, for tests and ``--workers 1``);
`RayPool` keeps each shard in a long-lived Ray actor with one whole CPU, so the pre-state crosses
the wire once per block and each round costs one remote call per shard.

>>> pool = LocalPool(workers=2)          # doctest: +SKIP
>>> pool.load(block_bundle_bytes)        # doctest: +SKIP
>>> results, stats = execute_parallel(engine, pool)  # doctest: +SKIP
"""
from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .block import Block, load_bundle
from .engine import Engine, TxResult
from .errors import EngineUnavailable
from .state import Key, VersionedState

ENGINES = ("native", "reference")
DEFAULT_ENGINE = "native"  # the engine the CLI and jobs use unless told otherwise (the reference is the oracle)


def make_engine(name: str, block: Block) -> Engine:
    """The engine called ``name`` for ``block``: "reference" (py-evm) or "native" (revm, in Rust:
    `EngineUnavailable` when the extension is not built)."""
    if name == "reference":
        from .reference import ReferenceEngine

        return ReferenceEngine(block)
    if name == "native":
        from .native import NativeEngine

        return NativeEngine(block)
    raise EngineUnavailable(f"unknown engine {name!r}; available: {', '.join(ENGINES)}")


class Shard:
    """One block's engine and multi-version state; runs batches of transactions."""

    def __init__(self, engine_name: str = "reference") -> None:
        self.engine_name = engine_name
        self.engine: Engine | None = None
        self.state: VersionedState | None = None

    def load(self, block: Block | bytes) -> int:
        """Make ``block`` (a `Block` or a bundle) resident; returns its transaction count."""
        if isinstance(block, (bytes, bytearray)):
            block = load_bundle(bytes(block))
        self.engine = make_engine(self.engine_name, block)
        self.state = VersionedState(block.pre_state)
        return len(block.transactions)

    def run(self, batch: Sequence[int], updates: Mapping[int, Mapping[Key, Any]]) -> list[TxResult]:
        """Apply the changed write sets, then run ``batch`` in order: each transaction of the batch
        already sees the writes of the ones before it (fewer conflicts within a shard)."""
        assert self.engine is not None and self.state is not None, "load a block first"
        gc.disable()  # see execute_parallel: py-evm allocates heavily, almost nothing cyclic
        try:
            self.state.update(updates)
            results = []
            for index in batch:
                result = self.engine.execute(index, self.state.view(index))
                self.state.set_writes(index, result.writes)
                results.append(result)
            return results
        finally:
            gc.enable()


class LocalPool:
    """Shards in this process, run one after another: same algorithm, no parallel speed-up."""

    def __init__(self, workers: int = 2, engine: str = "reference") -> None:
        self.workers = workers
        self.shards = [Shard(engine) for _ in range(workers)]

    def load(self, block: Block | bytes) -> None:
        for shard in self.shards:
            shard.load(block)

    def run(self, chunks: Sequence[Sequence[int]], updates: Mapping[int, Mapping[Key, Any]]) -> Iterator[list[TxResult]]:
        """Chunk ``i`` runs on shard ``i % workers``; results come back in chunk order."""
        calls = _assign(chunks, self.workers)
        for position, (shard_index, chunk, first) in enumerate(calls):
            results = self.shards[shard_index].run(chunk, updates if first else {})
            if position < len(chunks):
                yield results

    def close(self) -> None:
        self.shards = []


class RayPool:
    """One long-lived Ray actor per shard (Ray must be initialised: see `workers.cluster`).

    ``resources`` pins the actors, e.g. ``{"node:7": 0.01}`` keeps them on the job's node.
    """

    def __init__(self, workers: int = 2, engine: str = "reference", resources: Mapping[str, float] | None = None) -> None:
        import ray

        actor_class: Any = ray.remote(num_cpus=1, max_restarts=0)(Shard)
        options = {"resources": dict(resources)} if resources else {}
        self.workers = workers
        self.actors: list[Any] = [actor_class.options(**options).remote(engine) for _ in range(workers)]

    def load(self, block: Block | bytes) -> None:
        """Ship the block (as a bundle, once, through Ray's object store) to every shard."""
        import ray

        ref = ray.put(block)
        ray.get([actor.load.remote(ref) for actor in self.actors])

    def run(self, chunks: Sequence[Sequence[int]], updates: Mapping[int, Mapping[Key, Any]]) -> Iterator[list[TxResult]]:
        """Chunk ``i`` runs on shard ``i % workers``; results come back in chunk order, each as soon
        as it is done, so the coordinator validates early chunks while the shards run later ones.
        (An actor runs its calls in the order they were made.)"""
        import ray

        updates_ref: Any = ray.put(dict(updates)) if updates else {}
        refs = [self.actors[shard].run.remote(list(chunk), updates_ref if first else {})
                for shard, chunk, first in _assign(chunks, self.workers)]
        for ref in refs[: len(chunks)]:
            yield ray.get(ref)
        ray.get(refs[len(chunks):])  # the shards that only took the updates

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _assign(chunks: Sequence[Sequence[int]], workers: int) -> list[tuple[int, Sequence[int], bool]]:
    """(shard, chunk, is the shard's first call) for every chunk, round robin; then an empty call for
    each shard that got no chunk, because every shard must receive the round's updates."""
    calls = [(position % workers, chunk, position < workers) for position, chunk in enumerate(chunks)]
    calls += [(shard, [], True) for shard in range(len(chunks), workers)]
    return calls
