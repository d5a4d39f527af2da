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

register(
    JobKind(
        name="evm_block",
        description="Execute Ethereum blocks in parallel shards and verify them against their headers.",
        spec_schema={
            "type": "object",
            "properties": {
                "block_artifact": {"type": "integer", "minimum": 1},
                "shards": {"type": "integer", "minimum": 1, "maximum": 1024},
            },
            "required": ["block_artifact"],
            "additionalProperties": False,
        },
        available=False,
    )
)
