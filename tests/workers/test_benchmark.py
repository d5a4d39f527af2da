"""The ``benchmark`` executor measuring this machine for real (no GPU here), through the same
`JobRunner` a provider node uses; its spec's bounds; and the score formula, case by case.

NVML and CuPy do not exist on this machine, so the GPU path is driven through small stand-ins
for those two modules (CuPy's is NumPy underneath): everything above them is the real code.
"""
from __future__ import annotations

import math
import random
import sys
import time
from itertools import count
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from workers.runtime import benchmark
from workers.runtime.benchmark import run_benchmark
from workers.runtime.kinds import InvalidSpec, validate_spec
from workers.runtime.runner import JobRunner, ProgressReporter
from workers.runtime.scoring import MAX_SCORE, benchmark_score, figure
from workers.runtime.spec import JobSpec, RunReport, RunState


def job(spec: dict[str, Any]) -> JobSpec:
    return JobSpec(job_id=1, attempt=1, kind="benchmark", spec=spec, gpus=0, node_id=1)


def run_to_the_end(spec: dict[str, Any], timeout_s: float = 60) -> tuple[RunReport, list[float]]:
    """Start a `JobRunner` and poll it as the marketplace does; the last report and every progress seen."""
    runner = JobRunner(job(spec).to_json())
    runner.start()
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = RunReport.from_json(runner.report())
        seen.append(report.progress)
        if report.finished:
            return report, seen
        time.sleep(0.05)
    raise AssertionError("the benchmark never finished")


def measure(spec: dict[str, Any]) -> tuple[dict[str, Any], ProgressReporter]:
    reporter = ProgressReporter()
    return run_benchmark(job(spec), reporter), reporter


# --- the executor, for real ---------------------------------------------------------------------

def test_a_full_run_measures_this_machine_and_reports_progress_and_logs() -> None:
    report, progress = run_to_the_end({"measurements": [], "duration_s": 1.0})

    assert report.state == RunState.SUCCEEDED, report.error
    output = report.output
    assert output is not None
    assert output["cpu_gflops"] > 0 and output["memory_bandwidth_gbps"] > 0
    assert output["gpu"]["visible"] is False and output["gpu"]["reason"]
    assert output["numpy"] == np.__version__ and output["cpu_count"] >= 1 and output["rounds"] >= 1
    assert output["score"] == benchmark_score(output) == round(output["cpu_gflops"])
    assert report.progress == 1.0 and progress[-1] == 1.0
    assert progress == sorted(progress)  # never goes backwards
    round_lines = [line for line in report.logs if line.startswith("round ")]
    assert len(round_lines) == output["rounds"]
    assert "cpu_gflops" in round_lines[0] and "memory_bandwidth_gbps" in round_lines[0]
    assert report.logs[-1] == f"score {output['score']}"


def test_progress_moves_while_the_run_lasts() -> None:
    _report, progress = run_to_the_end({"measurements": ["cpu_gflops"], "duration_s": 2})

    assert any(0 < fraction < 1 for fraction in progress)
    assert len(set(progress)) >= 3  # several rounds, each reported as it ended


@pytest.mark.parametrize(("measurements", "present", "absent"), [
    (["cpu_gflops"], {"cpu_gflops", "cpu_matrix_n"}, {"memory_bandwidth_gbps", "gpu"}),
    (["memory_bandwidth"], {"memory_bandwidth_gbps", "memory_buffer_mb"}, {"cpu_gflops", "gpu"}),
    (["gpu"], {"gpu"}, {"cpu_gflops", "memory_bandwidth_gbps"}),
    (["gpu", "cpu_gflops"], {"cpu_gflops", "gpu"}, {"memory_bandwidth_gbps"}),
    ([], {"cpu_gflops", "memory_bandwidth_gbps", "gpu"}, set()),
])
def test_only_the_requested_measurements_are_taken(measurements: list[str], present: set[str],
                                                   absent: set[str]) -> None:
    output, reporter = measure({"measurements": measurements, "duration_s": 0.3})

    assert present <= set(output) and not absent & set(output)
    logged = "\n".join(reporter.lines)
    for name in absent - {"gpu"}:
        assert name not in logged  # not measured and thrown away: not measured at all


@pytest.mark.parametrize(("spec", "low", "high"), [
    ({"measurements": ["cpu_gflops", "memory_bandwidth"], "duration_s": 2}, 1.5, 6),
    ({"measurements": ["memory_bandwidth"], "duration_s": 3.5}, 3.0, 8),
    ({"measurements": ["cpu_gflops"]}, 1.2, 5),  # the default: 1.5 s
    ({"measurements": ["gpu"], "duration_s": 1}, 0.9, 4),  # nothing timed to measure here, yet it lasts
])
def test_the_run_lasts_about_duration_s(spec: dict[str, Any], low: float, high: float) -> None:
    started = time.monotonic()
    output, reporter = measure(spec)
    took = time.monotonic() - started

    assert low <= took <= high
    assert low <= output["duration_s"] <= took
    assert len([line for line in reporter.lines if line.startswith("round ")]) == output["rounds"]


def test_a_run_is_cut_into_at_most_about_twenty_rounds() -> None:
    output, reporter = measure({"measurements": ["cpu_gflops"], "duration_s": 2})

    assert 3 <= output["rounds"] <= benchmark.ROUNDS + 1  # fewer when a busy machine makes one pass outlast a round
    assert reporter.fraction == pytest.approx(0.99, abs=0.05)  # the runner, not the executor, says 1.0


def test_the_shortest_run_still_measures_once() -> None:
    output, _ = measure({"measurements": ["cpu_gflops", "memory_bandwidth"], "duration_s": 0.1})

    assert output["rounds"] >= 1 and output["cpu_gflops"] > 0 and output["memory_bandwidth_gbps"] > 0


def test_a_gpu_less_node_says_so_and_still_succeeds() -> None:
    output, _ = measure({"measurements": ["gpu", "cpu_gflops"], "duration_s": 0.3})

    assert output["gpu"] == {"visible": False, "reason": output["gpu"]["reason"]}
    assert "NVML" in output["gpu"]["reason"] or "nvidia-ml-py" in output["gpu"]["reason"]
    assert output["score"] == round(output["cpu_gflops"])


def test_the_node_checks_the_spec_again_and_a_bad_one_fails_the_run() -> None:
    report, _ = run_to_the_end({"measurements": ["warp_speed"]})

    assert report.state == RunState.FAILED
    assert report.error.startswith("InvalidSpec: spec['measurements'][0]")


# --- the spec -----------------------------------------------------------------------------------

@pytest.mark.parametrize("duration", [0.1, 0.5, 1, 1.5, 20, 599.99, 600])
def test_duration_s_between_a_tenth_of_a_second_and_ten_minutes_is_accepted(duration: float) -> None:
    assert validate_spec("benchmark", {"duration_s": duration}) == {"measurements": [], "duration_s": duration}


@pytest.mark.parametrize("duration", [0, 0.099, -1, 600.001, 10**6, "2", True, None, [2], float("inf"),
                                      float("-inf"), float("nan")])
def test_duration_s_outside_its_bounds_or_not_a_number_is_refused(duration: Any) -> None:
    with pytest.raises(InvalidSpec) as refused:
        validate_spec("benchmark", {"measurements": ["cpu_gflops"], "duration_s": duration})
    assert refused.value.path == "spec['duration_s']"


def test_the_benchmark_spec_still_refuses_unknown_fields_and_keeps_its_defaults() -> None:
    assert validate_spec("benchmark", {}) == {"measurements": []}  # duration_s defaults on the node
    with pytest.raises(InvalidSpec):
        validate_spec("benchmark", {"duration_s": 1, "iterations": 3})


# --- the GPU path, through stand-ins for NVML and CuPy ------------------------------------------

class FakeNvmlError(Exception):
    pass


NVML_BUSES = ["00000000:01:00.0", "00000000:41:00.0", "00000000:81:00.0"]


def fake_pynvml(gpus: int = 3, broken: bool = False) -> ModuleType:
    """NVML with ``gpus`` RTX 4090s; the last one does not report its clock (as some boards don't)."""
    nvml = ModuleType("pynvml")

    def clock(handle: int, _kind: int) -> int:
        if handle == gpus - 1:
            raise FakeNvmlError("Not Supported")
        return 2520

    def device_count() -> int:
        if broken:
            raise FakeNvmlError("GPU is lost")
        return gpus

    nvml.__dict__.update(
        NVMLError=FakeNvmlError, NVML_CLOCK_SM=1, nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=device_count, nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: b"NVIDIA GeForce RTX 4090" if handle == 0 else "NVIDIA GeForce RTX 4090",
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=24564 * 2**20),
        nvmlDeviceGetPciInfo=lambda handle: SimpleNamespace(busId=NVML_BUSES[handle].encode()),
        nvmlDeviceGetClockInfo=clock, nvmlDeviceGetMaxClockInfo=lambda handle, kind: 3105,
    )
    return nvml


def fake_cupy(fail_after: int | None = None) -> ModuleType:
    """CuPy on NumPy, seeing the second and first NVML GPUs (in that order) but not the third."""
    cuda_buses = ["0000:41:00.0", "0000:01:00.0"]
    calls = count()

    class Device:
        def __init__(self, index: int) -> None:
            self.pci_bus_id = cuda_buses[index]

        def __enter__(self) -> Device:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def synchronize(self) -> None:
            return None

    def matmul(a: Any, b: Any, out: Any) -> Any:
        if fail_after is not None and next(calls) >= fail_after:
            raise RuntimeError("cudaErrorLaunchFailure (Xid 79)")
        return np.matmul(a, b, out=out)

    cupy = ModuleType("cupy")
    cupy.__dict__.update(
        cuda=SimpleNamespace(Device=Device, runtime=SimpleNamespace(getDeviceCount=lambda: len(cuda_buses))),
        random=SimpleNamespace(random=lambda shape, dtype: np.random.default_rng(0).random(shape, dtype=dtype)),
        empty=np.empty, matmul=matmul, float32=np.float32,
    )
    return cupy


@pytest.fixture
def small_gpu_matrices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmark, "GPU_MATRIX_N", 128)  # the stand-in multiplies on this CPU


def test_nvml_gpus_are_listed_and_each_cuda_visible_one_is_timed(monkeypatch: pytest.MonkeyPatch,
                                                                  small_gpu_matrices: None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())

    output, reporter = measure({"measurements": ["gpu", "cpu_gflops"], "duration_s": 0.3})

    gpu = output["gpu"]
    assert gpu["visible"] is True and gpu["matmul_skipped"] == "1 GPU(s) not visible to CUDA in this process"
    first, second, third = gpu["devices"]
    assert first["name"] == second["name"] == "NVIDIA GeForce RTX 4090"
    assert first["memory_total_gb"] == 24.0 and first["sm_clock_max_mhz"] == 3105
    assert (first["sm_clock_mhz"], third["sm_clock_mhz"]) == (2520, None)
    assert first["pci_bus_id"] == NVML_BUSES[0]
    assert first["matmul_tflops"] > 0 and second["matmul_tflops"] > 0 and "matmul_tflops" not in third
    assert first["matmul_dtype"] == "float32"
    assert output["score"] == round(output["cpu_gflops"]) + round(
        1000 * (first["matmul_tflops"] + second["matmul_tflops"]))
    assert "gpu0_tflops" in reporter.lines[0] and "gpu1_tflops" in reporter.lines[0]


def test_without_cupy_the_gpus_are_listed_without_a_matmul_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=1))
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError

    output, _ = measure({"measurements": ["gpu"], "duration_s": 0.2})

    assert output["gpu"]["matmul_skipped"].startswith("no CUDA array library")
    assert "matmul_tflops" not in output["gpu"]["devices"][0] and output["score"] == 0


def test_a_gpu_failing_mid_run_keeps_its_figures_and_the_run_succeeds(monkeypatch: pytest.MonkeyPatch,
                                                                      small_gpu_matrices: None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=2))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(fail_after=5))  # 2 warm-ups, 3 samples, then Xid

    output, _ = measure({"measurements": ["gpu", "cpu_gflops"], "duration_s": 0.5})

    devices = output["gpu"]["devices"]
    assert "Xid 79" in output["gpu"]["matmul_skipped"]
    assert devices[0]["matmul_tflops"] > 0 and devices[1]["matmul_tflops"] > 0
    assert output["cpu_gflops"] > 0


def test_an_nvml_error_mid_query_means_no_gpu_figures_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(broken=True))

    output, _ = measure({"measurements": ["gpu"], "duration_s": 0.1})

    assert output["gpu"] == {"visible": False, "reason": "NVML failed: FakeNvmlError: GPU is lost"}


def test_nvml_without_gpus_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=0))

    assert benchmark.gpu_inventory() == {"visible": False, "reason": "NVML shows no GPUs"}


# --- the score ----------------------------------------------------------------------------------

def gpus(*tflops: Any) -> dict[str, Any]:
    return {"visible": True, "devices": [{"name": "x", "matmul_tflops": value} for value in tflops]}


@pytest.mark.parametrize(("output", "score"), [
    ({"cpu_gflops": 35.2, "gpu": {"visible": False, "reason": "no NVML"}}, 35),
    ({"cpu_gflops": 35.2}, 35),
    ({"cpu_gflops": 35.5}, 36),  # Python's round: halves to the even neighbour
    ({"cpu_gflops": 36.5}, 36),
    ({"cpu_gflops": 0.4}, 0),
    ({"cpu_gflops": 0}, 0),
    ({"cpu_gflops": 7}, 7),
    ({"cpu_gflops": 35.2, "gpu": gpus(82.6, 81.9)}, 35 + 164_500),
    ({"cpu_gflops": 35.2, "gpu": gpus(0.0004, 0.0004)}, 35 + 1),  # GPUs summed before rounding
    ({"cpu_gflops": 35.5, "gpu": gpus(0.0125)}, 36 + 12),  # each part rounded on its own
    ({"gpu": gpus(1)}, 1000),
    ({"cpu_gflops": 1, "gpu": gpus(1, None, "2", -3, float("nan"), True)}, 1001),  # bad GPU figures count 0
    ({"cpu_gflops": 1, "gpu": {"visible": True, "devices": [{"name": "x"}, "junk", 5, {"matmul_tflops": 2}]}},
     2001),
    ({"cpu_gflops": 1, "gpu": {"visible": True, "devices": {"0": {"matmul_tflops": 2}}}}, 1),
    ({"cpu_gflops": 1, "gpu": "lots"}, 1),
    ({"cpu_gflops": 1, "gpu": None}, 1),
])
def test_the_score_is_whole_cpu_gflops_plus_a_thousand_per_gpu_tflops(output: Any, score: int) -> None:
    assert benchmark_score(output) == score


@pytest.mark.parametrize("output", [
    None, [], "35", 35, {}, {"cpu_gflops": None}, {"cpu_gflops": "35"}, {"cpu_gflops": True},
    {"cpu_gflops": -35.2}, {"cpu_gflops": float("nan")}, {"cpu_gflops": float("-inf")}, {"cpu_gflops": [35]},
    {"cpu_gflops": 10**400}, {"cpu_gflops": {"value": 35}}, {"gpu": gpus(-1.0)}, {"gpu": gpus(float("nan"))},
])
def test_missing_or_malformed_figures_score_zero_without_raising(output: Any) -> None:
    assert benchmark_score(output) == 0


@pytest.mark.parametrize("output", [
    {"cpu_gflops": 1e300}, {"cpu_gflops": float(2**63)}, {"gpu": gpus(1e306)}, {"gpu": gpus(1e308, 1e308)},
    {"cpu_gflops": 2.0**62, "gpu": gpus(2.0**53)},
])
def test_absurd_figures_are_capped_at_what_the_column_holds(output: Any) -> None:
    assert benchmark_score(output) == MAX_SCORE


def test_an_infinite_figure_is_not_a_figure() -> None:
    assert benchmark_score({"cpu_gflops": float("inf"), "gpu": gpus(float("inf"), 2)}) == 2000


def random_output(rng: random.Random) -> dict[str, Any]:
    magnitude = rng.choice([1e-3, 1, 100, 1e4])
    return {"cpu_gflops": rng.uniform(0, 1000),
            "gpu": gpus(*(rng.uniform(0, magnitude) for _ in range(rng.randrange(0, 9))))}


def test_the_score_matches_the_formula_and_only_grows_with_the_figures() -> None:
    rng = random.Random(20240601)
    for _ in range(2000):
        output = random_output(rng)
        tflops = [device["matmul_tflops"] for device in output["gpu"]["devices"]]
        score = benchmark_score(output)
        assert type(score) is int and 0 <= score <= MAX_SCORE
        assert score == round(output["cpu_gflops"]) + round(1000 * sum(tflops))
        faster_cpu = {**output, "cpu_gflops": output["cpu_gflops"] + rng.uniform(0, 50)}
        another_gpu = {**output, "gpu": gpus(*tflops, rng.uniform(0, 10))}
        assert benchmark_score(faster_cpu) >= score and benchmark_score(another_gpu) >= score


@pytest.mark.parametrize(("value", "expected"), [
    (12.5, 12.5), (3, 3.0), (0, 0.0), (-0.0, 0.0), (-1, 0.0), (True, 0.0), (False, 0.0), ("12", 0.0),
    (None, 0.0), (float("nan"), 0.0), (float("inf"), 0.0), (10**400, 0.0), (1e308, 1e308),
])
def test_a_figure_is_a_finite_non_negative_number_or_zero(value: Any, expected: float) -> None:
    assert figure(value) == expected and not math.isnan(figure(value))
