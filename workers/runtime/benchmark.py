"""The ``benchmark`` job kind's executor: measures the provider node it runs on, for real.

Measurements (the spec's ``measurements``; empty means all of them):

- ``cpu_gflops``: NumPy float64 matrix multiply (n = 1024, so 2n^3 flops each), all cores through BLAS.
- ``memory_bandwidth``: one NumPy copy of a 128 MiB array, read plus write bytes per second (GB/s,
  decimal). A single-threaded copy, like STREAM's "copy" on one core.
- ``gpu``: what NVML says about each GPU (name, memory in GiB, SM clock when the run starts and
  the board's maximum); with CuPy importable also a float32 matrix-multiply TFLOPS per GPU. A node
  without GPUs, NVML or CuPy still succeeds and says why in the output: ``{"visible": false,
  "reason": "..."}``, or ``"matmul_skipped"`` when GPUs are listed but could not be timed.

The spec's ``duration_s`` (default 1.5) is how long the timed loop runs, whatever is measured:
the loop repeats every measurement until that time is used, and each figure is the median of
its repeats, so a longer run gives steadier figures. The loop is cut into rounds (about 20, at most
5 s each); every round reports progress and logs one line, so a long run stays observable.
Setting up (allocating, one untimed warm-up per probe) comes first and is not counted. At
least one round runs however small ``duration_s`` is, and the matrix and buffer sizes never
depend on it, so figures from runs of different lengths compare.

>>> from workers.runtime.runner import ProgressReporter
>>> spec = JobSpec(job_id=1, attempt=1, kind="benchmark", gpus=0, node_id=1,
...                spec={"measurements": ["cpu_gflops"], "duration_s": 0.2})
>>> output = run_benchmark(spec, ProgressReporter())
>>> output["cpu_gflops"] > 0 and output["score"] == round(output["cpu_gflops"])
True
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from workers.runtime.kinds import BENCHMARK_MEASUREMENTS, validate_spec
from workers.runtime.runner import ProgressReporter
from workers.runtime.scoring import benchmark_score
from workers.runtime.spec import JobSpec

DEFAULT_DURATION_S = 1.5
CPU_MATRIX_N = 1024
MEMORY_BUFFER_BYTES = 128 * 2**20  # larger than any CPU cache, so the copy streams from RAM
GPU_MATRIX_N = 8192  # float32: 768 MiB for three matrices, ~1.1 TFLOP a multiply
ROUNDS = 20
MAX_ROUND_S = 5.0


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchmarkPlan:
    """What to measure and for how long, from a benchmark spec (validated again here: the node
    trusts nothing it is sent).

    >>> BenchmarkPlan.of({"measurements": ["gpu", "cpu_gflops"]})
    BenchmarkPlan(measurements=('cpu_gflops', 'gpu'), duration_s=1.5)
    """

    measurements: tuple[str, ...]
    duration_s: float

    @classmethod
    def of(cls, spec: dict[str, Any]) -> BenchmarkPlan:
        checked = validate_spec("benchmark", spec)
        wanted = checked.get("measurements") or BENCHMARK_MEASUREMENTS
        return cls(measurements=tuple(name for name in BENCHMARK_MEASUREMENTS if name in wanted),
                   duration_s=float(checked.get("duration_s", DEFAULT_DURATION_S)))

    @property
    def round_s(self) -> float:
        """How long one round lasts: about `ROUNDS` of them, at most `MAX_ROUND_S` each."""
        return min(self.duration_s / ROUNDS, MAX_ROUND_S)


# --- probes: one repeatable timed measurement each ----------------------------------------------

class Probe(Protocol):
    label: str  # where its figure goes, and how the log names it
    unit: str

    def sample(self) -> float:
        """Measure once; the figure in ``unit``."""
        ...


def _timed(action: Any) -> float:
    """Seconds ``action()`` took (never 0: a figure divides by it)."""
    start = time.perf_counter()
    action()
    return max(time.perf_counter() - start, 1e-9)


class CpuMatmulProbe:
    """GFLOPS of one float64 ``n x n`` matrix multiply: 2n^3 flops over the time it took."""

    label, unit = "cpu_gflops", "GFLOPS"

    def __init__(self, n: int = CPU_MATRIX_N) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.a, self.b = rng.random((n, n)), rng.random((n, n))
        self.out = np.empty((n, n))
        self.sample()  # untimed warm-up: BLAS starts its threads on the first call

    def sample(self) -> float:
        seconds = _timed(lambda: np.matmul(self.a, self.b, out=self.out))
        return 2 * self.n**3 / seconds / 1e9


class MemoryCopyProbe:
    """GB/s of one copy of a ``size``-byte array, counting the bytes read and the bytes written."""

    label, unit = "memory_bandwidth_gbps", "GB/s"

    def __init__(self, size: int = MEMORY_BUFFER_BYTES) -> None:
        self.source = np.ones(size // 8)
        self.target = np.empty_like(self.source)
        self.sample()  # warm-up: the first copy also faults in the target's pages

    def sample(self) -> float:
        seconds = _timed(lambda: np.copyto(self.target, self.source))
        return 2 * self.source.nbytes / seconds / 1e9


class GpuMatmulProbe:
    """TFLOPS of one float32 ``n x n`` matrix multiply on one GPU, through CuPy."""

    unit = "TFLOPS"

    def __init__(self, cupy: Any, cuda_index: int, nvml_index: int, n: int = GPU_MATRIX_N) -> None:
        self.cupy, self.cuda_index, self.n = cupy, cuda_index, n
        self.label = f"gpu{nvml_index}_tflops"
        with cupy.cuda.Device(cuda_index):
            self.a = cupy.random.random((n, n), dtype=cupy.float32)
            self.b = cupy.random.random((n, n), dtype=cupy.float32)
            self.out = cupy.empty((n, n), dtype=cupy.float32)
        self.sample()  # warm-up: cuBLAS creates its handle and picks kernels on the first call

    def sample(self) -> float:
        with self.cupy.cuda.Device(self.cuda_index) as device:
            device.synchronize()  # time this multiply only, not work still queued before it
            seconds = _timed(lambda: (self.cupy.matmul(self.a, self.b, out=self.out), device.synchronize()))
        return 2 * self.n**3 / seconds / 1e12


# --- GPUs: NVML inventory, CuPy probes -----------------------------------------------------------

class GpuUnavailable(RuntimeError):
    """No GPU figures on this node; the message says why (it goes into the output, not a failure)."""


@contextmanager
def _nvml() -> Iterator[Any]:
    """The ``pynvml`` module, initialised for the block; `GpuUnavailable` when it cannot be."""
    try:
        import pynvml
    except ImportError:
        raise GpuUnavailable("nvidia-ml-py (pynvml) is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise GpuUnavailable(f"NVML unavailable: {exc}") from None
    try:
        yield pynvml
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass  # nothing left to release that we could act on


def gpu_inventory() -> dict[str, Any]:
    """What NVML shows: ``{"visible": True, "devices": [...]}`` or ``{"visible": False, "reason": ...}``.

    >>> gpu_inventory()  # on a machine without an NVIDIA driver
    {'visible': False, 'reason': 'NVML unavailable: NVML Shared Library Not Found'}
    """
    try:
        with _nvml() as pynvml:
            devices = [_nvml_device(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())]
    except GpuUnavailable as exc:
        return {"visible": False, "reason": str(exc)}
    except Exception as exc:  # an NVML error mid-query: report it, never fail a CPU benchmark over it
        return {"visible": False, "reason": f"NVML failed: {type(exc).__name__}: {exc}"}
    if not devices:
        return {"visible": False, "reason": "NVML shows no GPUs"}
    return {"visible": True, "devices": devices}


def _nvml_device(pynvml: Any, index: int) -> dict[str, Any]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = pynvml.nvmlDeviceGetName(handle)
    memory = _optional(pynvml, lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    bus_id = _optional(pynvml, lambda: pynvml.nvmlDeviceGetPciInfo(handle).busId)
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else str(name),  # bytes in older bindings
        "memory_total_gb": None if memory is None else round(memory / 2**30, 1),  # GiB, as GPUs are sold
        "sm_clock_mhz": _optional(pynvml, lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
        "sm_clock_max_mhz": _optional(pynvml,
                                      lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)),
        "pci_bus_id": bus_id.decode() if isinstance(bus_id, bytes) else bus_id,
    }


def _optional(pynvml: Any, read: Any) -> Any:
    """``read()``, or None where this GPU or driver does not support it."""
    try:
        return read()
    except pynvml.NVMLError:
        return None


def bus_key(bus_id: str) -> tuple[int, str]:
    """A PCI bus id NVML and CUDA both spell alike: their domain widths differ (8 vs 4 hex digits).

    >>> bus_key("00000000:01:00.0") == bus_key("0000:01:00.0")
    True
    """
    domain, _, rest = bus_id.strip().lower().partition(":")
    return int(domain or "0", 16), rest


def gpu_probes(devices: Sequence[dict[str, Any]]) -> tuple[list[Probe], str]:
    """Matmul probes for the NVML devices CUDA can see, and why any GPU has none ("" if all do).

    Devices are matched by PCI bus: CUDA numbers them in its own order (fastest first, and only
    those in CUDA_VISIBLE_DEVICES), which need not be NVML's.
    """
    try:
        import cupy
    except Exception as exc:  # not installed, or built for another CUDA: either way no figure
        return [], f"no CUDA array library: cupy is not importable ({type(exc).__name__})"
    try:
        cuda_by_bus = {bus_key(cupy.cuda.Device(i).pci_bus_id): i for i in range(cupy.cuda.runtime.getDeviceCount())}
        probes: list[Probe] = []
        for device in devices:
            bus_id = device.get("pci_bus_id")
            cuda_index = cuda_by_bus.get(bus_key(bus_id)) if bus_id else None
            if cuda_index is not None:
                probes.append(GpuMatmulProbe(cupy, cuda_index, device["index"], GPU_MATRIX_N))
    except Exception as exc:  # CUDA errors come in many types; any of them means "no GPU figure", not failure
        return [], f"GPU matmul failed: {type(exc).__name__}: {exc}"[:500]
    missing = len(devices) - len(probes)
    return probes, f"{missing} GPU(s) not visible to CUDA in this process" if missing else ""


# --- the timed loop ---------------------------------------------------------------------------

@dataclass
class Samples:
    """Every figure each probe measured, and what happened to the GPU probes that broke."""

    figures: dict[str, list[float]]
    rounds: int = 0
    gpu_error: str = ""

    def median(self, label: str) -> float | None:
        """The median figure to four significant digits (more would be noise), None if none."""
        values = self.figures.get(label)
        return float(f"{statistics.median(values):.4g}") if values else None


def measure(probes: list[Probe], plan: BenchmarkPlan, reporter: ProgressReporter) -> Samples:
    """Run rounds of samples until ``plan.duration_s`` has passed (at least one round)."""
    samples = Samples(figures={probe.label: [] for probe in probes})
    started = time.monotonic()
    deadline = started + plan.duration_s
    while True:
        round_end = min(time.monotonic() + plan.round_s, deadline)
        figures = _one_round(probes, samples, round_end)
        samples.rounds += 1
        elapsed = time.monotonic() - started
        line = f"round {samples.rounds} ({elapsed:.1f} of {plan.duration_s:g} s): {_describe(probes, figures)}"
        reporter.progress(min(elapsed / plan.duration_s, 0.99), line)  # 1.0 is the runner's: "done"
        reporter.log(line)
        if time.monotonic() >= deadline:
            return samples


def _one_round(probes: list[Probe], samples: Samples, round_end: float) -> dict[str, list[float]]:
    """Sample every probe in turn until ``round_end`` (at least once each); this round's figures."""
    figures: dict[str, list[float]] = {probe.label: [] for probe in probes}
    while True:
        if not probes:  # nothing timed to measure (e.g. only "gpu" on a GPU-less node): the run still lasts
            time.sleep(max(0.0, round_end - time.monotonic()))
            return figures
        for probe in list(probes):
            try:
                figure = probe.sample()
            except Exception as exc:
                if not isinstance(probe, GpuMatmulProbe):
                    raise  # a CPU or memory probe failing is the job failing
                probes.remove(probe)  # a GPU lost mid-run (Xid, OOM): keep its earlier figures
                samples.gpu_error = f"GPU matmul failed: {type(exc).__name__}: {exc}"[:500]
                continue
            figures[probe.label].append(figure)
            samples.figures[probe.label].append(figure)
        if time.monotonic() >= round_end:
            return figures


def _describe(probes: list[Probe], figures: dict[str, list[float]]) -> str:
    parts = [f"{probe.label} {statistics.median(figures[probe.label]):.2f} {probe.unit}"
             for probe in probes if figures.get(probe.label)]
    return ", ".join(parts) or "nothing timed to measure"


# --- the executor -----------------------------------------------------------------------------

def run_benchmark(spec: JobSpec, reporter: ProgressReporter) -> dict[str, Any]:
    """Measure this node as ``spec.spec`` asks; the figures, the environment and the score.

    >>> run_benchmark(spec, reporter)  # spec.spec == {"measurements": [], "duration_s": 2}
    {'cpu_gflops': 35.2, 'cpu_matrix_n': 1024, 'memory_bandwidth_gbps': 9.8, 'memory_buffer_mb': 128,
     'gpu': {'visible': False, 'reason': '...'}, 'numpy': '2.4.6', 'cpu_count': 2, 'omp_num_threads': None,
     'rounds': 20, 'duration_s': 2.01, 'score': 35}
    """
    plan = BenchmarkPlan.of(spec.spec)
    reporter.progress(0.0, f"preparing {', '.join(plan.measurements)}")
    probes: list[Probe] = []
    if "cpu_gflops" in plan.measurements:
        probes.append(CpuMatmulProbe())
    if "memory_bandwidth" in plan.measurements:
        probes.append(MemoryCopyProbe())
    gpu = gpu_inventory() if "gpu" in plan.measurements else None
    if gpu is not None and gpu["visible"]:
        gpu_list, gpu["matmul_skipped"] = gpu_probes(gpu["devices"])
        probes += gpu_list
    started = time.monotonic()
    samples = measure(probes, plan, reporter)
    output = _output(plan, samples, gpu)
    output["duration_s"] = round(time.monotonic() - started, 3)
    output["score"] = benchmark_score(output)
    reporter.log(f"score {output['score']}")
    return output


def _output(plan: BenchmarkPlan, samples: Samples, gpu: dict[str, Any] | None) -> dict[str, Any]:
    output: dict[str, Any] = {}
    if "cpu_gflops" in plan.measurements:
        output.update(cpu_gflops=samples.median("cpu_gflops"), cpu_matrix_n=CPU_MATRIX_N)
    if "memory_bandwidth" in plan.measurements:
        output.update(memory_bandwidth_gbps=samples.median("memory_bandwidth_gbps"),
                      memory_buffer_mb=MEMORY_BUFFER_BYTES // 2**20)
    if gpu is not None:
        output["gpu"] = _gpu_output(gpu, samples)
    # Ray sets OMP_NUM_THREADS to a run's num_cpus (1 unless asked), and BLAS obeys it: without
    # this, a one-thread cpu_gflops would be indistinguishable from a slow machine.
    output.update(numpy=np.__version__, cpu_count=_cpu_count(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                  rounds=samples.rounds)
    return output


def _gpu_output(gpu: dict[str, Any], samples: Samples) -> dict[str, Any]:
    if not gpu["visible"]:
        return gpu
    for device in gpu["devices"]:
        tflops = samples.median(f"gpu{device['index']}_tflops")
        if tflops is not None:
            device.update(matmul_tflops=tflops, matmul_dtype="float32")
    if samples.gpu_error:
        gpu["matmul_skipped"] = "; ".join(filter(None, [gpu.get("matmul_skipped"), samples.gpu_error]))
    if not gpu.get("matmul_skipped"):
        gpu.pop("matmul_skipped", None)
    return gpu


def _cpu_count() -> int:
    """The cores this process may use (a container or Ray may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
