"""The benchmark score: one integer that ranks offers, computed from a benchmark job's output.

Pure arithmetic with no NumPy and no Django, so the node (`workers.runtime.benchmark`) and the
marketplace (`marketplace.services.benchmarks`) compute it with the same code.

score = round(cpu_gflops) + round(1000 * sum of the GPUs' matmul TFLOPS)

A TFLOPS of GPU is worth a thousand GFLOPS of CPU, i.e. both are counted in GFLOPS. The output
comes from a provider's machine, so nothing in it is trusted: a figure that is missing, not a
number, negative or not finite counts as 0, and the total is capped at what the column holds.

>>> benchmark_score({"cpu_gflops": 35.2, "gpu": {"visible": False, "reason": "no NVML"}})
35
>>> benchmark_score({"cpu_gflops": 35.2, "gpu": {"visible": True, "devices": [
...     {"name": "NVIDIA RTX 4090", "matmul_tflops": 82.6}, {"name": "NVIDIA RTX 4090", "matmul_tflops": 81.9}]}})
164535
>>> benchmark_score({"cpu_gflops": "fast"})
0
"""
from __future__ import annotations

import math

#: The largest score `Offer.score` (a PostgreSQL bigint) can hold.
MAX_SCORE = 2**63 - 1
GFLOPS_PER_TFLOPS = 1000


def figure(value: object) -> float:
    """``value`` as a finite non-negative float, or 0.0 when it is anything else.

    >>> figure(12.5), figure(-1), figure(float("nan")), figure(True), figure("12")
    (12.5, 0.0, 0.0, 0.0, 0.0)
    """
    # bool is an int subclass; a True in a benchmark figure is a bug, not 1 GFLOPS.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: not a measurement either
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def gpu_tflops(output: object) -> list[float]:
    """The matmul TFLOPS of each GPU in a benchmark output (0.0 for a GPU without a figure).

    >>> gpu_tflops({"gpu": {"visible": True, "devices": [{"matmul_tflops": 1.5}, {"name": "x"}]}})
    [1.5, 0.0]
    >>> gpu_tflops({"gpu": {"visible": False, "reason": "no GPU"}})
    []
    """
    gpu = output.get("gpu") if isinstance(output, dict) else None
    devices = gpu.get("devices") if isinstance(gpu, dict) else None
    if not isinstance(devices, list):
        return []
    return [figure(device.get("matmul_tflops")) if isinstance(device, dict) else 0.0 for device in devices]


def benchmark_score(output: object) -> int:
    """The score of a benchmark output: whole CPU GFLOPS plus 1000 per GPU TFLOPS, in 0..MAX_SCORE.

    Each part is rounded on its own (Python's `round`: halves go to the even neighbour), so a
    node's CPU part does not move when a GPU figure changes in its third decimal.

    >>> benchmark_score({"cpu_gflops": 35.5, "gpu": {"devices": [{"matmul_tflops": 0.0125}]}})
    48
    >>> benchmark_score(None)
    0
    """
    cpu = figure(output.get("cpu_gflops")) if isinstance(output, dict) else 0.0
    return min(MAX_SCORE, _whole(cpu) + _whole(GFLOPS_PER_TFLOPS * sum(gpu_tflops(output))))


def _whole(value: float) -> int:
    # Absurd but finite figures can add up (or multiply) to infinity, which round() refuses;
    # they are capped like any other score past the column's range.
    return round(value) if math.isfinite(value) else MAX_SCORE
