"""``python -m workers.evm``: run, verify and benchmark blocks; generate synthetic ones.

    python -m workers.evm run BLOCK_DIR [--engine native|reference] [--workers N] [--threads T] [--json]
    python -m workers.evm verify BLOCK_DIR... [--engine E] [--workers N] [--threads T]
    python -m workers.evm bench BLOCK_DIR... [--engine E] [--workers N] [--threads T] [--repeat K] [--generate transfers:5000,...]
    python -m workers.evm generate PATTERN N OUT_DIR [--seed S] [--number B]

With ``--workers N`` above 1 the transactions run on N Ray actors (one CPU each) of a private
one-node cluster started for the command, or of the cluster at ``--ray-address``, with either
engine. Without a Ray pool the native engine runs each block in this process on ``--threads T``
native threads (1: sequentially). ``bench --engine native`` compares, per block, the reference
engine's sequential time, the native engine's sequential time and its parallel time on
``--threads`` threads. Exit codes: 0 success, 1 a block does not match its header, 2 bad input
(message on stderr).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .block import Block, load_block
from .errors import EvmError
from .native import NativeEngine, diff_results
from .execute import BlockReport, execute_sequential, run_block
from .parallel import dependency_bound, execute_parallel
from .pool import DEFAULT_ENGINE, ENGINES, LocalPool, RayPool, make_engine

DEFAULT_GENERATED = "transfers:5000,erc20:1000,hot_account:1000,dex:300,deploy:300"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "workers", 0) is None:
        args.workers = args.default_workers if args.engine == "reference" else 1
    try:
        return int(args.command(args))
    except EvmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# run ------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    block = load_block(args.block)
    with _pool(args.workers, args.engine, args.ray_address) as pool:
        if pool is not None:
            pool.load(block)
        report = run_block(block, engine=args.engine, pool=pool, threads=args.threads)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        _print_report(report, sys.stdout)
    return 0 if report.verified else 1


def _print_report(report: BlockReport, out: TextIO) -> None:
    verdict = "verified" if report.verified else "MISMATCH"
    checks = ", ".join(f"{name} {'ok' if ok else 'WRONG'}" for name, ok in report.checks.items())
    where = f"{report.threads} thread(s)" if report.threads > 1 else f"{report.workers} worker(s)"
    print(
        f"block {report.number} ({report.fork}): {report.transactions} transactions, {report.gas_used:,} gas, "
        f"{report.elapsed_s:.3f} s on {where} [{report.engine}], {report.reexecuted} re-executed "
        f"in {report.rounds} round(s), critical-path bound {report.critical_path_bound:.2f}x: {verdict} ({checks})",
        file=out,
    )
    if report.mismatch:
        print(f"  {report.mismatch}", file=out)


# verify ---------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.blocks]
    failures = 0
    bar = ProgressBar(len(paths), "blocks", sys.stderr)
    with _pool(args.workers, args.engine, args.ray_address) as pool:
        for number, path in enumerate(paths):
            report = _verify_one(path, args.engine, pool, args.threads, bar, number)
            if report is None or not report.verified:
                failures += 1
            if report is not None:
                bar.clear()
                _print_report(report, sys.stdout)
    bar.finish()
    print(f"{len(paths) - failures} of {len(paths)} blocks verified", file=sys.stdout)
    return 0 if failures == 0 else 1


def _verify_one(path: Path, engine: str, pool: LocalPool | RayPool | None, threads: int, bar: ProgressBar,
                done: int) -> BlockReport | None:
    try:
        block = load_block(path)
        if pool is not None:
            pool.load(block)
        return run_block(block, engine=engine, pool=pool, threads=threads,
                         progress=lambda i, n: bar.update(done + (i / n if n else 1)))
    except EvmError as exc:
        bar.clear()
        print(f"{path}: error: {exc}", file=sys.stdout)
        return None


class ProgressBar:
    """A one-line progress bar on a terminal (silent when the stream is not one)."""

    def __init__(self, total: int, unit: str, stream: TextIO) -> None:
        self.total, self.unit, self.stream = total, unit, stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()

    def update(self, done: float) -> None:
        if not self.enabled or not self.total:
            return
        width = 30
        filled = int(width * done / self.total)
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:.1f}/{self.total} {self.unit} {elapsed:.0f}s")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")

    def finish(self) -> None:
        self.clear()


# bench ----------------------------------------------------------------------------------------


BENCH_COLUMNS = ("block", "txs", "Mgas", "seq s", "par s", "seq Mgas/s", "speedup", "bound", "of bound", "re-exec")


def cmd_bench(args: argparse.Namespace) -> int:
    if args.engine == "native":
        return cmd_bench_native(args)
    capacity = machine_capacity(args.workers)
    blocks = [(str(path), load_block(path)) for path in args.blocks]
    with contextlib.ExitStack() as stack:
        if args.generate:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evm-bench-")))
            blocks += _generated_blocks(args.generate, out)
        pool = stack.enter_context(_pool(args.workers, args.engine, args.ray_address, always=True))
        rows = [_bench_block(name, block, args.engine, pool, args.repeat) for name, block in blocks]
    capacity_after = machine_capacity(args.workers)
    _print_table(rows, args.workers, args.repeat)
    print(
        f"machine capacity: {args.workers} processes of pure-Python work ran {capacity:.2f}x (before) and "
        f"{capacity_after:.2f}x (after) faster together than one after another: the ceiling for any speedup "
        f"here (virtual CPUs shared with other machines need not give {args.workers}x)"
    )
    capacity = min(capacity, capacity_after)
    if args.json:
        Path(args.json).write_text(json.dumps({"capacity": capacity, "rows": rows}, indent=1))
    return 0


def machine_capacity(workers: int, repeat: int = 3) -> float:
    """How much faster ``workers`` processes of CPU-bound Python finish together than in turn
    (median of ``repeat``): what parallel execution can hope for on this machine."""
    import multiprocessing

    if workers <= 1:
        return 1.0
    ratios = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_spin, [1] * workers)  # warm up the processes
        for _ in range(repeat):
            alone = _spin(1)
            started = time.perf_counter()
            pool.map(_spin, [1] * workers)
            together = time.perf_counter() - started
            ratios.append(workers * alone / together)
    return statistics.median(ratios)


def _spin(_: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i * i
    return time.perf_counter() - started


def _generated_blocks(spec: str, out: Path) -> list[tuple[str, Block]]:
    from .generate import generate_block

    blocks = []
    for item in spec.split(","):
        pattern, _, count = item.partition(":")
        path = generate_block(pattern, int(count or 1000), out / f"{pattern}-{count}")
        blocks.append((f"{pattern}:{count}", load_block(path)))
    return blocks


def _bench_block(name: str, block: Block, engine_name: str, pool: Any, repeat: int) -> dict[str, Any]:
    """Sequential and parallel, side by side in one process, medians over ``repeat`` runs."""
    engine = make_engine(engine_name, block)
    pool.load(block)
    sequential, parallel, reexecuted = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        results = execute_sequential(engine)
        sequential.append(time.perf_counter() - started)
        parallel_results, stats = execute_parallel(engine, pool)
        parallel.append(stats.elapsed_s)
        reexecuted.append(stats.reexecuted)
        if [r.receipt_fields() for r in parallel_results] != [r.receipt_fields() for r in results]:
            raise EvmError(f"{name}: parallel execution differs from sequential")
    bound, _ = dependency_bound(results)
    gas = sum(r.gas_used for r in results)
    seq, par = statistics.median(sequential), statistics.median(parallel)
    speedup = seq / par if par else 0.0
    reachable = min(bound, pool.workers)
    return {
        "block": name, "txs": len(results), "Mgas": round(gas / 1e6, 3), "seq s": round(seq, 4),
        "par s": round(par, 4), "seq Mgas/s": round(gas / seq / 1e6, 2) if seq else 0.0,
        "speedup": round(speedup, 2), "bound": round(bound, 2),
        "of bound": round(speedup / reachable, 2) if reachable else 0.0,
        "re-exec": int(statistics.median(reexecuted)),
    }


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """The rows as a right-aligned text table under a header."""
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    print(" | ".join(c.rjust(widths[c]) for c in columns))
    print("-+-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(str(row[c]).rjust(widths[c]) for c in columns))


def _print_table(rows: list[dict[str, Any]], workers: int, repeat: int) -> None:
    _print_rows(rows, BENCH_COLUMNS)
    mainnet = [r for r in rows if ":" not in r["block"]]
    if mainnet:
        gas = sum(r["Mgas"] for r in mainnet)
        seq = sum(r["seq s"] for r in mainnet)
        print(
            f"\nmainnet blocks: {len(mainnet)}, sequential {gas / seq:.1f} Mgas/s overall; median speedup "
            f"{statistics.median(r['speedup'] for r in mainnet):.2f}x on {workers} workers, median bound "
            f"{statistics.median(r['bound'] for r in mainnet):.2f}x, median of bound "
            f"{statistics.median(r['of bound'] for r in mainnet):.2f}"
        )
    print(f"(medians of {repeat} runs; 'of bound' = speedup / min(bound, workers))")


NATIVE_COLUMNS = ("block", "txs", "Mgas", "ref s", "native s", "ratio", "native Mgas/s", "conv s", "par s",
                  "threads", "par speedup", "exec speedup", "bound", "same")


def cmd_bench_native(args: argparse.Namespace) -> int:
    """Per block, in one run: the reference engine's sequential time, the native engine's sequential
    time (the ratio is the native speedup over the reference), and the native engine on
    ``--threads`` threads (its speedup over native sequential next to the critical-path bound)."""
    if args.threads < 1:
        raise EvmError("--threads must be at least 1")
    if args.repeat < 1:
        raise EvmError("--repeat must be at least 1")
    blocks = [(str(Path(path)), load_block(path)) for path in args.blocks]
    rows = []
    with contextlib.ExitStack() as stack:
        if args.generate:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evm-bench-")))
            blocks += _generated_blocks(args.generate, out)
        for name, block in blocks:
            row = _bench_native_block(name, block, args.threads, args.repeat, reference=not args.skip_reference)
            rows.append(row)
            if args.progress:
                print(" | ".join(f"{c}={row[c]}" for c in NATIVE_COLUMNS), file=sys.stderr, flush=True)
    _print_native_table(rows, args.threads, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "repeat": args.repeat, "rows": rows}, indent=1))
    return 0 if all(row["same"] == "yes" for row in rows) else 1


def _bench_native_block(name: str, block: Block, threads: int, repeat: int, *, reference: bool) -> dict[str, Any]:
    """Medians over ``repeat`` runs of each; "same" says the three executions gave identical results."""
    native = NativeEngine(block)
    reference_engine = make_engine("reference", block) if reference else None
    ref_times, seq_times, conv_times, par_times, seq_exec, par_exec = [], [], [], [], [], []
    same = True
    ref_results: list[Any] | None = None
    for _ in range(repeat):
        if reference_engine is not None:
            started = time.perf_counter()
            ref_results = execute_sequential(reference_engine)
            ref_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        results, stats = native.run(1)
        seq_times.append(time.perf_counter() - started)
        conv_times.append(stats.convert_s)
        seq_exec.append(stats.executor_s)
        started = time.perf_counter()
        par_results, par_stats = native.run(threads)
        par_times.append(time.perf_counter() - started)
        par_exec.append(par_stats.executor_s)
        same = same and par_results == results
    if ref_results is not None:
        differences = diff_results(ref_results, results, limit=3)
        same = same and not differences
        for line in differences:
            print(f"{name}: {line}", file=sys.stderr)
    bound, _ = dependency_bound(results)
    gas = sum(r.gas_used for r in results)
    ref = statistics.median(ref_times) if ref_times else None
    seq, par = statistics.median(seq_times), statistics.median(par_times)
    par_executor = statistics.median(par_exec)
    return {
        "block": name, "txs": len(results), "Mgas": round(gas / 1e6, 3),
        "ref s": round(ref, 4) if ref is not None else "-",
        "native s": round(seq, 4),
        "ratio": round(ref / seq, 1) if ref is not None and seq else "-",
        "native Mgas/s": round(gas / seq / 1e6, 1) if seq else 0.0,
        "conv s": round(statistics.median(conv_times), 4),
        "par s": round(par, 4), "threads": threads,
        "par speedup": round(seq / par, 2) if par else 0.0,
        "exec speedup": round(statistics.median(seq_exec) / par_executor, 2) if par_executor else 0.0,
        "bound": round(bound, 2),
        "same": "yes" if same else "NO",
    }


def _print_native_table(rows: list[dict[str, Any]], threads: int, repeat: int) -> None:
    _print_rows(rows, NATIVE_COLUMNS)
    mainnet = [r for r in rows if ":" not in r["block"] and r["txs"]]  # (an empty block has no ratio)
    if mainnet:
        gas = sum(r["Mgas"] for r in mainnet)
        seq = sum(r["native s"] for r in mainnet)
        ratios = [r["ratio"] for r in mainnet if r["ratio"] != "-"]
        ratio = f"median native/reference speedup {statistics.median(ratios):.1f}x" if ratios else "reference skipped"
        print(
            f"\nmainnet blocks: {len(mainnet)}, {ratio}, native sequential {gas / seq if seq else 0:.1f} Mgas/s "
            f"overall; on {threads} threads median parallel speedup "
            f"{statistics.median(r['par speedup'] for r in mainnet):.2f}x (executor alone "
            f"{statistics.median(r['exec speedup'] for r in mainnet):.2f}x), median bound "
            f"{statistics.median(r['bound'] for r in mainnet):.2f}x"
        )
    others = [r for r in rows if ":" in r["block"]]
    if others:
        print("generated blocks, parallel speedup (bound): "
              + ", ".join(f"{r['block']} {r['par speedup']:.2f}x ({r['bound']:.2f}x)" for r in others))
    print(f"(medians of {repeat} runs; ratio = ref s / native s; par speedup = native s / par s on {threads} "
          "threads; exec speedup: the same without converting the results to Python (conv s); bound = "
          "critical-path bound of the dependencies)")


# generate -------------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import PATTERNS, generate_block

    if args.pattern not in PATTERNS:
        raise EvmError(f"unknown pattern {args.pattern!r}; patterns: {', '.join(PATTERNS)}")
    if args.transactions < 1:
        raise EvmError("the number of transactions must be at least 1")
    path = generate_block(args.pattern, args.transactions, args.out_dir, seed=args.seed, number=args.number)
    print(path)
    return 0


# shared ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _pool(workers: int, engine: str, ray_address: str | None, always: bool = False) -> Iterator[Any]:
    """None for sequential runs; else a Ray pool of ``workers`` actors (``always``: even for 1)."""
    if workers < 1:
        raise EvmError("--workers must be at least 1")
    if workers == 1 and not always:
        yield None
        return
    from workers.cluster import local_cluster

    with local_cluster(workers, address=ray_address):
        pool = RayPool(workers, engine)
        try:
            yield pool
        finally:
            pool.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers.evm", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, workers: int, threads: int = 1) -> None:
        sub.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=f"(default {DEFAULT_ENGINE})")
        sub.add_argument("--workers", type=int, default=None,
                         help=f"Ray workers (default {workers} for the reference engine, 1 for the native one: "
                              "it runs on --threads)")
        sub.set_defaults(default_workers=workers)
        sub.add_argument("--threads", type=int, default=threads,
                         help=f"native engine without Ray workers: threads in this process (default {threads})")
        sub.add_argument("--ray-address", help="use this Ray cluster instead of a private one")

    run = commands.add_parser("run", help="execute one block")
    run.add_argument("block", help="block directory or bundle file")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    common(run, 1)
    run.set_defaults(command=cmd_run)

    verify = commands.add_parser("verify", help="execute blocks in parallel and check them against their headers")
    verify.add_argument("blocks", nargs="+")
    common(verify, 2, threads=2)
    verify.set_defaults(command=cmd_verify)

    bench = commands.add_parser("bench", help="sequential vs parallel, side by side")
    bench.add_argument("blocks", nargs="*")
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--generate", default=DEFAULT_GENERATED, help=f"PATTERN:N,... ('' for none; default {DEFAULT_GENERATED})")
    bench.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    bench.add_argument("--skip-reference", action="store_true", help="--engine native: do not time the reference engine")
    bench.add_argument("--progress", action="store_true", help="--engine native: print each row as it is done (stderr)")
    common(bench, 2, threads=2)
    bench.set_defaults(command=cmd_bench)

    generate = commands.add_parser("generate", help="write a synthetic block with a known conflict pattern")
    generate.add_argument("pattern")
    generate.add_argument("transactions", type=int)
    generate.add_argument("out_dir")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--number", type=int, default=19_500_000)
    generate.set_defaults(command=cmd_generate)
    return parser
