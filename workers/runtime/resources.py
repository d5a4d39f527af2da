"""Names of the Ray custom resources that identify provider nodes and their GPUs.

Each provider node joins the cluster with ``node:<id>`` (so a run can be pinned to it) and one
resource per GPU model it has (``gpu_model:nvidia-rtx-4090``: count), so Ray itself refuses to
place more GPU work on a node than it has GPUs, a second guard behind the database reservation.

>>> node_resources(7, {"NVIDIA RTX 4090": 2})
{'node:7': 100.0, 'gpu_model:nvidia-rtx-4090': 2.0}
"""
from __future__ import annotations

import re
from collections.abc import Mapping

# How many runs one node may hold at once, as far as pinning goes (GPUs and CPUs limit it first).
NODE_SLOTS = 100.0


def node_resource(node_id: int) -> str:
    return f"node:{int(node_id)}"


def gpu_resource(model: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"gpu_model:{slug}"


def node_resources(node_id: int, gpus: Mapping[str, int]) -> dict[str, float]:
    """The custom resources a provider node starts with."""
    resources = {node_resource(node_id): NODE_SLOTS}
    resources.update({gpu_resource(model): float(count) for model, count in gpus.items() if count > 0})
    return resources


def run_resources(node_id: int, gpu_model: str, gpus: int) -> dict[str, float]:
    """What one run asks of its node: a slot on that node, and its GPUs of that model."""
    resources = {node_resource(node_id): 1.0}
    if gpu_model:
        resources[gpu_resource(gpu_model)] = float(gpus)
    return resources
