"""The flagship workload: Ethereum blocks executed in parallel, exactly as sequentially, verified
against their headers. A pure library: no Django, no Celery.

The narrow API:

>>> block = load_block("../shared/data/mainnet/19933597")   # doctest: +SKIP
>>> report = run_block(block)                                # sequential, the reference engine
>>> report.verified                                          # doctest: +SKIP
True
>>> pool = RayPool(workers=2); pool.load(block)              # doctest: +SKIP
>>> run_block(block, pool=pool).reexecuted                   # doctest: +SKIP
10
>>> run_block(block, engine="native", threads=2).verified    # doctest: +SKIP
True

Two engines (`ENGINES`): "reference" (py-evm) and "native" (revm in Rust, `workers.evm.native`; the
extension is built by ``make``). See `workers.evm.parallel` for the algorithm and `workers.evm.state`
for read and write sets.
"""
from .block import Block, bundle_directory, load_block, load_bundle
from .errors import EngineUnavailable, EvmError, InvalidTransaction, MalformedBlock, MissingState
from .execute import BlockReport, execute_sequential, run_block
from .native import NativeEngine, diff_results
from .pool import DEFAULT_ENGINE, ENGINES, LocalPool, RayPool, make_engine

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "Block",
    "BlockReport",
    "EngineUnavailable",
    "EvmError",
    "InvalidTransaction",
    "LocalPool",
    "MalformedBlock",
    "MissingState",
    "NativeEngine",
    "RayPool",
    "bundle_directory",
    "diff_results",
    "execute_sequential",
    "load_block",
    "load_bundle",
    "make_engine",
    "run_block",
]
