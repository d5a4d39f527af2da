"""GPU detection: the grouping logic against a fake NVML, and the real NVML on this GPU-less machine."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from workers.gpu import DetectedGpu, detect_gpus, group_gpus

MIB = 1024**2


class FakeNvmlError(Exception):
    pass


@dataclass
class FakeNvml:
    """The slice of pynvml that detection uses, over a list of (name, total bytes) devices."""

    devices: list[tuple[str | bytes, int]]
    init_error: Exception | None = None
    fail_on_index: int | None = None
    shut_down: bool = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index == self.fail_on_index:
            raise FakeNvmlError("GPU is lost")
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return self.devices[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=self.devices[handle][1], free=0, used=0)


def test_identical_models_are_grouped_and_sorted():
    nvml = FakeNvml([("NVIDIA RTX 4090", 24564 * MIB), ("NVIDIA A100 40GB", 40960 * MIB),
                     ("NVIDIA RTX 4090", 24564 * MIB)])

    assert detect_gpus(nvml) == [DetectedGpu("NVIDIA A100 40GB", 40, 1), DetectedGpu("NVIDIA RTX 4090", 24, 2)]
    assert nvml.shut_down


def test_vram_is_rounded_to_whole_gigabytes_and_a_group_takes_its_smallest_device():
    assert group_gpus([("NVIDIA H100 80GB HBM3", 81559 * MIB), ("NVIDIA H100 80GB HBM3", 81000 * MIB)]) == [
        DetectedGpu("NVIDIA H100 80GB HBM3", 79, 2)]
    assert group_gpus([("NVIDIA L4", 23034 * MIB)])[0].vram_gb == 22


def test_names_come_as_nvml_reports_them_even_as_bytes():
    assert detect_gpus(FakeNvml([(b"NVIDIA L4", 23034 * MIB)])) == [DetectedGpu("NVIDIA L4", 22, 1)]


def test_no_devices_means_no_gpus():
    assert detect_gpus(FakeNvml([])) == []


def test_an_nvml_that_will_not_start_means_no_gpus(caplog):
    caplog.set_level(logging.DEBUG, logger="workers.gpu")

    assert detect_gpus(FakeNvml([("NVIDIA L4", 1)], init_error=FakeNvmlError("Driver Not Loaded"))) == []
    assert "Driver Not Loaded" in caplog.text


def test_a_device_that_fails_mid_listing_means_no_gpus_rather_than_a_wrong_count(caplog):
    caplog.set_level(logging.DEBUG, logger="workers.gpu")
    nvml = FakeNvml([("NVIDIA L4", 1), ("NVIDIA L4", 1)], fail_on_index=1)

    assert detect_gpus(nvml) == []
    assert "GPU is lost" in caplog.text
    assert nvml.shut_down


def test_detected_gpus_serialise_as_the_join_endpoint_takes_them():
    assert DetectedGpu("NVIDIA L4", 22, 1).as_json() == {"model": "NVIDIA L4", "vram_gb": 22, "count": 1}


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="this machine has an NVIDIA driver")
def test_without_a_driver_the_real_nvml_finds_nothing_and_says_why_at_debug_level(caplog):
    pytest.importorskip("pynvml")
    caplog.set_level(logging.DEBUG, logger="workers.gpu")

    assert detect_gpus() == []
    assert "NVML did not initialise" in caplog.text
