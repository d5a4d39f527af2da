"""A job's input artifacts: checked when the job is submitted, shipped to the node when it runs.

A job kind names the spec properties that hold artifact ids (`JobKind.input_fields`; for
``evm_block`` the list ``blocks``). At submission every id must be an artifact the submitter may
read (their own: artifacts are private to their owner, and a foreign id reads as unknown, as it
does everywhere else) and the inputs together must fit in ``JOB_INPUT_MAX_BYTES``. When an attempt
starts, the Celery worker reads their bytes from artifact storage into `JobSpec.inputs` (see
`workers.runtime.spec` for why they travel that way).

>>> check_inputs(owner=dave, kind="evm_block", spec={"blocks": [4, 5], "workers": 2})
{'blocks': [4, 5], 'workers': 2}
>>> sorted(attach_inputs(spec).inputs)      # spec: a JobSpec of a job of dave's naming them
['4', '5']
"""
from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from marketplace.errors import InvalidInput, NotFound
from marketplace.models import Artifact, Job
from marketplace.services import artifacts as artifact_service
from workers.runtime import kinds
from workers.runtime.spec import JobSpec


def _references(kind: kinds.JobKind, spec: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(property, path for messages, artifact id) for every artifact the spec names, in order."""
    for name in kind.input_fields:
        value = spec.get(name)
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield name, f"spec[{name!r}][{index}]", int(item)
        elif value is not None:
            yield name, f"spec[{name!r}]", int(value)


def check_inputs(*, owner: User, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (already valid for its kind) with its artifact ids as integers, or `InvalidInput`:
    ``unknown_artifact`` (no such artifact of the owner's), ``artifact_too_large`` or
    ``inputs_too_large``, each with ``field`` "spec" and the detail naming the path."""
    job_kind = kinds.get_kind(kind)
    references = list(_references(job_kind, spec))
    if not references:
        return spec
    found = dict(Artifact.objects.owned_by(owner).filter(pk__in={ref[2] for ref in references})
                 .values_list("pk", "size"))
    limit, total = settings.JOB_INPUT_MAX_BYTES, 0
    for _, path, artifact_id in references:
        if artifact_id not in found:
            raise InvalidInput(f"{path}: no artifact {artifact_id} of yours; upload the input first "
                               "(POST /api/v1/artifacts/)", code="unknown_artifact", field="spec")
        if found[artifact_id] > limit:
            raise InvalidInput(f"{path}: artifact {artifact_id} has {found[artifact_id]} bytes; a job's inputs "
                               f"are limited to {limit} bytes", code="artifact_too_large", field="spec")
        total += found[artifact_id]
    if total > limit:
        raise InvalidInput(f"the {len(references)} input artifacts have {total} bytes together; a job's inputs are "
                           f"limited to {limit} bytes: split the work into several jobs",
                           code="inputs_too_large", field="spec")
    return _normalised(job_kind, spec)


def _normalised(kind: kinds.JobKind, spec: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema's "integer" accepts 4.0: store ids as the integers they are."""
    result = dict(spec)
    for name in kind.input_fields:
        value = result.get(name)
        if isinstance(value, list):
            result[name] = [int(item) for item in value]
        elif value is not None:
            result[name] = int(value)
    return result


class InputUnavailable(Exception):
    """An input's row or bytes are gone from the marketplace: no node can run the job."""


def attach_inputs(spec: JobSpec) -> JobSpec:
    """``spec`` carrying the bytes (base64) of every input artifact its job names (those of the
    job's owner: the ids were checked against them at submission).

    Raises `InputUnavailable` when an artifact row or its blob has disappeared since submission.
    """
    job_kind = kinds.get_kind(spec.kind)
    ids = sorted({artifact_id for _, _, artifact_id in _references(job_kind, spec.spec)})
    if not ids:
        return spec
    owner_id = Job.objects.filter(pk=spec.job_id).values_list("owner_id", flat=True).first()
    rows = {artifact.pk: artifact for artifact in Artifact.objects.filter(owner_id=owner_id, pk__in=ids)}
    inputs = {}
    for artifact_id in ids:
        if artifact_id not in rows:
            raise InputUnavailable(f"input artifact {artifact_id} no longer exists")
        try:
            with artifact_service.open_blob(rows[artifact_id]) as blob:
                inputs[str(artifact_id)] = base64.b64encode(blob.read()).decode("ascii")
        except NotFound as exc:
            raise InputUnavailable(f"input artifact {artifact_id}: {exc.detail}") from None
    return replace(spec, inputs=inputs)
