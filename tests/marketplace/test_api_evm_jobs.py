"""``evm_block`` jobs over the API: the spec names uploaded block bundles, and every one must be the
submitter's own artifact, within the size limit; then the scheduler ships their bytes to the node."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from marketplace.models import AttemptOutcome, Job, JobEvent
from marketplace.services import artifacts, scheduling
from tests.conftest import submit_job, upload
from tests.marketplace.test_scheduling import node_with_offer

JOBS = "/api/v1/jobs/"


def uploaded(person: Any, content: bytes, name: str = "block.json.gz") -> int:
    response = upload(person, content, name=name)
    assert response.status_code == 201, response.json()
    artifact_id: int = response.json()["id"]
    return artifact_id


def evm_job(person: Any, spec: Any) -> Any:
    return person.client.post(JOBS, {"kind": "evm_block", "spec": spec}, format="json")


def assert_refused(response: Any, code: str, *mentions: str) -> None:
    assert response.status_code == 400, response.json()
    body = response.json()
    assert (body["code"], body["field"]) == (code, "spec")
    for text in mentions:
        assert text in body["detail"]
    assert not Job.objects.exists() and not JobEvent.objects.exists()


def test_a_job_names_its_blocks_and_gets_the_defaults(developer):
    first, second = uploaded(developer, b"block one"), uploaded(developer, b"block two")

    body = submit_job(developer, kind="evm_block", spec={"blocks": [second, first]})

    assert body["spec"] == {"blocks": [second, first], "workers": 1, "nodes": 1, "engine": "native"}
    assert body["state"] == "queued"


def test_integral_numbers_are_stored_as_the_integer_ids_they_are(developer):
    block = uploaded(developer, b"block")
    body = submit_job(developer, kind="evm_block", spec={"blocks": [float(block)], "workers": 4})
    assert body["spec"]["blocks"] == [block] and isinstance(Job.objects.get().spec["blocks"][0], int)


def test_an_artifact_that_does_not_exist_is_refused(developer):
    mine = uploaded(developer, b"block")
    assert_refused(evm_job(developer, {"blocks": [mine, mine + 1000]}), "unknown_artifact",
                   "spec['blocks'][1]", f"no artifact {mine + 1000} of yours")


def test_someone_elses_artifact_is_refused_like_a_missing_one(developer, other_developer):
    theirs = uploaded(other_developer, b"their block")
    assert_refused(evm_job(developer, {"blocks": [theirs]}), "unknown_artifact", "spec['blocks'][0]")


def test_the_same_bytes_uploaded_by_both_are_usable_through_ones_own_artifact(developer, other_developer):
    theirs = uploaded(other_developer, b"the same block")
    mine = uploaded(developer, b"the same block")
    assert mine != theirs
    assert submit_job(developer, kind="evm_block", spec={"blocks": [mine]})["spec"]["blocks"] == [mine]


@pytest.mark.parametrize(("spec", "mention"), [
    ({"blocks": []}, "should be non-empty"),
    ({"blocks": list(range(1, 258))}, "is too long"),
    ({}, "'blocks' is a required property"),
    ({"blocks": [1, 1]}, "non-unique"),
    ({"blocks": [0]}, "less than the minimum"),
    ({"blocks": ["1"]}, "is not of type 'integer'"),
    ({"blocks": [True]}, "is not of type 'integer'"),
    ({"blocks": 1}, "is not of type 'array'"),
    ({"blocks": [1], "workers": 0}, "spec['workers']"),
    ({"blocks": [1], "workers": 65}, "spec['workers']"),
    ({"blocks": [1], "engine": "revm"}, "spec['engine']"),
    ({"blocks": [1], "block_artifact": 1}, "Additional properties"),
])
def test_a_malformed_spec_is_refused(developer, spec, mention):
    assert_refused(evm_job(developer, spec), "invalid_spec", mention)


def test_the_largest_allowed_number_of_blocks_is_accepted(developer):
    ids = [uploaded(developer, f"block {n}".encode()) for n in range(256)]
    assert len(submit_job(developer, kind="evm_block", spec={"blocks": ids})["spec"]["blocks"]) == 256


def test_an_artifact_over_the_input_limit_is_refused(developer, settings):
    settings.JOB_INPUT_MAX_BYTES = 10
    small, big = uploaded(developer, b"0123456789"), uploaded(developer, b"0123456789A")
    assert_refused(evm_job(developer, {"blocks": [small, big]}), "artifact_too_large", "spec['blocks'][1]",
                   "11 bytes")


def test_inputs_over_the_limit_together_are_refused(developer, settings):
    settings.JOB_INPUT_MAX_BYTES = 10
    first, second = uploaded(developer, b"012345"), uploaded(developer, b"6789AB")
    assert_refused(evm_job(developer, {"blocks": [first, second]}), "inputs_too_large", "12 bytes")


# --- the run gets the bytes ----------------------------------------------------------------------

def matched_evm_job(provider: Any, developer: Any, blocks: list[int]) -> scheduling.Match:
    node_with_offer(provider, "rig", price=10**15)
    job = submit_job(developer, kind="evm_block", spec={"blocks": blocks, "workers": 2},
                     requirements={"gpus": 1})
    match = scheduling.match_job(job["id"])
    assert match is not None
    return match


def test_the_run_carries_the_bytes_of_each_block(provider, developer):
    first, second = uploaded(developer, b"\x1f\x8b first"), uploaded(developer, b"second")
    match = matched_evm_job(provider, developer, [second, first])
    assert match.spec.inputs == {}  # read after the matching transaction, not in it

    spec = scheduling.spec_to_run(match)

    assert spec is not None
    assert spec.input_bytes(first) == b"\x1f\x8b first" and spec.input_bytes(second) == b"second"
    assert set(spec.inputs) == {str(first), str(second)}
    assert type(spec).from_json(spec.to_json()) == spec
    assert base64.b64decode(spec.inputs[str(second)]) == b"second"


def test_a_job_whose_input_vanished_from_storage_fails_with_the_reason(provider, developer):
    block = uploaded(developer, b"soon gone")
    match = matched_evm_job(provider, developer, [block])
    artifacts.blob_path(artifacts.artifact_of(developer.user, block).sha256).unlink()

    assert scheduling.spec_to_run(match) is None

    job = Job.objects.get()
    assert job.state == "failed"
    assert job.attempt_rows.get().outcome == AttemptOutcome.FAILED
    assert f"input artifact {block}" in job.events.order_by("-id").first().reason


def test_a_benchmark_run_carries_no_inputs(provider, developer):
    node_with_offer(provider, "rig", price=10**15)
    match = scheduling.match_job(submit_job(developer)["id"])
    assert match is not None
    spec = scheduling.spec_to_run(match)
    assert spec is not None and spec.inputs == {} and "inputs" not in spec.to_json()
