"""GPU detection on a provider's machine, through NVML (``pynvml``, from nvidia-ml-py).

Names are what NVML reports (``nvmlDeviceGetName``), the same strings the marketplace catalog
uses, so the marketplace can match detected GPUs against declared ones by string equality.
Machines without an NVIDIA driver (or without pynvml) simply have no GPUs: `detect_gpus`
returns ``[]`` and logs why at debug level, it never raises.

>>> detect_gpus()
[DetectedGpu(model='NVIDIA RTX 4090', vram_gb=24, count=2)]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class DetectedGpu:
    """A group of identical GPUs: ``count`` of ``model``, each with ``vram_gb`` GB (GiB, rounded)."""

    model: str
    vram_gb: int
    count: int

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "vram_gb": self.vram_gb, "count": self.count}


def detect_gpus(nvml: Any = None) -> list[DetectedGpu]:
    """The GPUs NVML sees, one group per model, sorted by model; ``[]`` if NVML is missing or fails.

    ``nvml`` is the pynvml module (imported lazily when not given; tests give a fake).

    >>> detect_gpus()          # on a machine without an NVIDIA driver
    []
    """
    if nvml is None:
        nvml = _import_nvml()
        if nvml is None:
            return []
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError (no driver, no library) or OSError from ctypes
        log.debug("no GPU detection: NVML did not initialise (%s)", exc)
        return []
    try:
        return group_gpus(_devices(nvml))
    except Exception as exc:  # a device that answers badly: report none rather than a wrong count
        log.debug("no GPU detection: NVML failed while listing devices (%s)", exc)
        return []
    finally:
        _shutdown(nvml)


def group_gpus(devices: list[tuple[str, int]]) -> list[DetectedGpu]:
    """Group ``(name, vram bytes)`` pairs by model; a model's VRAM is its smallest device's.

    >>> group_gpus([("NVIDIA L4", 24_152_899_584), ("NVIDIA L4", 24_152_899_584)])
    [DetectedGpu(model='NVIDIA L4', vram_gb=22, count=2)]
    """
    groups: dict[str, list[int]] = {}
    for name, vram_bytes in devices:
        groups.setdefault(name, []).append(vram_bytes)
    return [DetectedGpu(model=name, vram_gb=round(min(sizes) / GIB), count=len(sizes))
            for name, sizes in sorted(groups.items())]


def _import_nvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        log.debug("no GPU detection: pynvml is not installed (%s)", exc)
        return None
    return pynvml


def _devices(nvml: Any) -> list[tuple[str, int]]:
    devices = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        devices.append((_text(nvml.nvmlDeviceGetName(handle)), int(nvml.nvmlDeviceGetMemoryInfo(handle).total)))
    return devices


def _text(name: str | bytes) -> str:
    """Old pynvml versions return bytes."""
    return (name.decode("utf-8", "replace") if isinstance(name, bytes) else name).strip()


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:
        log.debug("NVML shutdown failed (%s)", exc)
