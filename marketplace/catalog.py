"""The catalog of GPU models a provider may declare.

Names are exactly what NVML / ROCm report (`nvidia-smi --query-gpu=name`), so the agent can
match a detected GPU against a declared one by string equality.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    """One catalog entry: vendor, marketing name and its (fixed) memory size in GB."""

    name: str
    vendor: str
    vram_gb: int


GPU_CATALOG: dict[str, GpuModel] = {
    model.name: model
    for model in (
        GpuModel("NVIDIA H200", "NVIDIA", 141),
        GpuModel("NVIDIA H100 80GB HBM3", "NVIDIA", 80),
        GpuModel("NVIDIA H100 PCIe", "NVIDIA", 80),
        GpuModel("NVIDIA A100-SXM4-80GB", "NVIDIA", 80),
        GpuModel("NVIDIA A100 80GB PCIe", "NVIDIA", 80),
        GpuModel("NVIDIA A100 40GB", "NVIDIA", 40),
        GpuModel("NVIDIA L40S", "NVIDIA", 48),
        GpuModel("NVIDIA L4", "NVIDIA", 24),
        GpuModel("NVIDIA A10", "NVIDIA", 24),
        GpuModel("NVIDIA RTX A6000", "NVIDIA", 48),
        GpuModel("NVIDIA RTX 6000 Ada Generation", "NVIDIA", 48),
        GpuModel("NVIDIA RTX 4090", "NVIDIA", 24),
        GpuModel("NVIDIA RTX 4080", "NVIDIA", 16),
        GpuModel("NVIDIA RTX 3090", "NVIDIA", 24),
        GpuModel("NVIDIA T4", "NVIDIA", 16),
        GpuModel("NVIDIA V100 32GB", "NVIDIA", 32),
        GpuModel("AMD Instinct MI300X", "AMD", 192),
        GpuModel("AMD Instinct MI250X", "AMD", 128),
        GpuModel("AMD Instinct MI210", "AMD", 64),
        GpuModel("AMD Radeon RX 7900 XTX", "AMD", 24),
        GpuModel("AMD Radeon PRO W7900", "AMD", 48),
    )
}

GPU_MODEL_CHOICES: list[tuple[str, str]] = [(name, name) for name in GPU_CATALOG]
