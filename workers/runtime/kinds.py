"""The registry of job kinds.

A job kind names a workload and the JSON Schema its ``spec`` must satisfy. The marketplace
validates every submitted spec here; the runtime (dispatch issue) looks up the executor of a
kind here. New kinds call `register` at import time of this module's siblings.

>>> validate_spec("benchmark", {"measurements": ["cpu_gflops"]})
{'measurements': ['cpu_gflops']}
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match


class UnknownKind(ValueError):
    """No kind of that name is registered."""


class KindUnavailable(ValueError):
    """The kind is reserved but cannot run yet."""


class InvalidSpec(ValueError):
    """The spec does not satisfy the kind's schema. ``path`` points at the bad value."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class JobKind:
    """A workload: its name, what its spec looks like, and whether jobs of it can be submitted."""

    name: str
    description: str
    spec_schema: Mapping[str, Any]
    available: bool = True
    default_spec: Mapping[str, Any] = field(default_factory=dict)
    # Spec properties that hold artifact ids (an integer, or a list of them). The marketplace checks
    # at submission that the submitter may read each one, and ships their bytes to the node in
    # `JobSpec.inputs` (see `marketplace.services.job_inputs`).
    input_fields: tuple[str, ...] = ()

    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.spec_schema)


_REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add a kind (its schema is checked first). Registering a name twice is a programming error."""
    Draft202012Validator.check_schema(kind.spec_schema)
    if kind.name in _REGISTRY:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownKind(f"unknown job kind {name!r}; known kinds: {', '.join(sorted(_REGISTRY))}") from None


def all_kinds() -> list[JobKind]:
    return sorted(_REGISTRY.values(), key=lambda kind: kind.name)


def validate_spec(kind_name: str, spec: object) -> dict[str, Any]:
    """The spec with the kind's defaults filled in, or `UnknownKind` / `KindUnavailable` / `InvalidSpec`."""
    kind = get_kind(kind_name)
    if not kind.available:
        raise KindUnavailable(f"job kind {kind_name!r} is reserved and cannot be submitted yet")
    if spec is None:
        spec = {}
    error = best_match(kind.validator().iter_errors(spec))
    if error is not None:
        path = "spec" + "".join(f"[{part!r}]" for part in error.absolute_path)
        raise InvalidSpec(f"{path}: {error.message}", path)
    assert isinstance(spec, dict)  # the schemas all demand an object
    _refuse_non_finite(spec)
    return {**kind.default_spec, **spec}


def _refuse_non_finite(spec: dict[str, Any]) -> None:
    """Raise `InvalidSpec` for a NaN or infinity anywhere in ``spec``.

    Python's JSON reader (the web form's) accepts ``NaN``, and NaN passes every ``minimum`` and
    ``maximum`` of a schema since it compares false with everything; PostgreSQL's jsonb then
    refuses to store it. Walked with a stack: specs nest as deep as their schema lets them.
    """
    stack: list[tuple[str, Any]] = [("spec", spec)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidSpec(f"{path}: {value} is not a finite number", path)
        if isinstance(value, dict):
            stack.extend((f"{path}[{key!r}]", item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


BENCHMARK_MEASUREMENTS = ("cpu_gflops", "memory_bandwidth", "gpu")

register(
    JobKind(
        name="benchmark",
        description="Measure the node: CPU matrix-multiply GFLOPS, memory bandwidth, GPU figures when visible.",
        spec_schema={
            "type": "object",
            "properties": {
                "measurements": {
                    "type": "array",
                    "items": {"enum": list(BENCHMARK_MEASUREMENTS)},
                    "uniqueItems": True,
                    "description": "Which measurements to take; empty means all.",
                },
                "duration_s": {
                    "type": "number",
                    "minimum": 0.1,
                    "maximum": 600,
                    "default": 1.5,
                    "description": "Seconds the measurements run in total; longer gives steadier figures.",
                },
            },
            "additionalProperties": False,
        },
        default_spec={"measurements": []},
    )
)

# The engines `workers.evm` has (`workers.evm.ENGINES`; a test keeps the two equal). Not imported:
# importing the EVM library costs the web app 0.3 s at start for one tuple.
EVM_ENGINES = ("native", "reference")
EVM_MAX_BLOCKS = 256
EVM_MAX_WORKERS = 64
EVM_MAX_NODES = 16

register(
    JobKind(
        name="evm_block",
        description="Execute Ethereum blocks (uploaded block bundles) on parallel shards and verify each one "
                    "against its header.",
        spec_schema={
            "type": "object",
            "properties": {
                "blocks": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 1,
                    "maxItems": EVM_MAX_BLOCKS,
                    "uniqueItems": True,
                    "description": "Ids of your artifacts holding block bundles (gzipped JSON "
                                   '{"block", "pre_state", "block_hashes"}), run in this order.',
                },
                "workers": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": EVM_MAX_WORKERS,
                    "default": 1,
                    "description": "Parallel shards on the node (one CPU each), or with the native engine "
                                   "native threads in the job's process; 1 runs sequentially. "
                                   "Capped at the node's CPUs.",
                },
                "nodes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": EVM_MAX_NODES,
                    "default": 1,
                    "description": "Provider nodes to spread the blocks over: the job is split into this many "
                                   "jobs (at most one per block), each running a contiguous slice of the blocks "
                                   "on its own node, preferably a different one; the job itself succeeds when "
                                   "they all do, with their results combined. 1 runs every block on one node.",
                },
                "engine": {
                    "enum": list(EVM_ENGINES),
                    "default": "native",
                    "description": "native: revm in Rust, bit-exact with the reference and about a hundred times "
                                   "faster; reference: py-evm, the oracle.",
                },
            },
            "required": ["blocks"],
            "additionalProperties": False,
        },
        default_spec={"workers": 1, "nodes": 1, "engine": "native"},
        input_fields=("blocks",),
    )
)
