"""Checking a provider's result before paying for it.

For ``evm_block`` the marketplace holds each block's header (in the input bundles), so a result
that says "verified" can be checked without running anything: the block numbers in order, and
for each block the gas used, the logs bloom and (from Byzantium on, where receipts carry a status)
the receipts root that the node computed must equal the header's. A result that does not is
*proven wrong*: the provider is slashed and the job runs elsewhere (`services.scheduling`).

This proves the result is consistent with the chain, not that the node did the work: the
headers are public, so a node could copy them. Re-executing a sample of blocks on the
marketplace's side is what would close that gap (see the issue's note).

>>> wrong_result(job, {"blocks": [...], "totals": {"verified": True}})   # None: nothing wrong
"""
from __future__ import annotations

from typing import Any

from marketplace.models import Artifact, Job
from marketplace.services import artifacts as artifact_service
from marketplace.errors import NotFound
from workers.evm.block import Header, load_bundle_header
from workers.evm.errors import MalformedBlock
from workers.evm.forks import has_receipt_status


def wrong_result(job: Job, output: dict[str, Any]) -> str | None:
    """What is provably wrong with a successful run's ``output``, or None if nothing is (and for
    kinds with nothing to check it against)."""
    if job.kind != "evm_block":
        return None
    try:
        headers = _headers(job)
    except (MalformedBlock, NotFound):
        headers = None
    if headers is None:
        return None  # an input vanished or is not a bundle: nothing to prove against (no node could run it)
    blocks = output.get("blocks")
    if not isinstance(blocks, list) or len(blocks) != len(headers):
        return f"the result has {len(blocks) if isinstance(blocks, list) else 'no'} blocks, the job {len(headers)}"
    for position, (claimed, header) in enumerate(zip(blocks, headers)):
        problem = _block_problem(claimed, header) if isinstance(claimed, dict) else "not an object"
        if problem:
            return f"blocks[{position}] (block {header.number}): {problem}"
    if not (output.get("totals") or {}).get("verified"):
        return "the result does not say its blocks verified"
    return None


def _headers(job: Job) -> list[Header] | None:
    ids = [int(item) for item in job.spec.get("blocks", [])]
    rows = {row.pk: row for row in Artifact.objects.filter(owner_id=job.owner_id, pk__in=ids)}
    headers = []
    for artifact_id in ids:
        if artifact_id not in rows:
            return None
        with artifact_service.open_blob(rows[artifact_id]) as blob:
            headers.append(load_bundle_header(blob.read(), source=f"artifact {artifact_id}"))
    return headers


def _block_problem(claimed: dict[str, Any], header: Header) -> str | None:
    expected: dict[str, Any] = {
        "number": header.number,
        "gas_used": header.gas_used,
        "logs_bloom": "0x" + header.logs_bloom.to_bytes(256, "big").hex(),
    }
    if has_receipt_status(header.number):
        expected["receipts_root"] = "0x" + header.receipts_root.hex()
    for name, value in expected.items():
        got = claimed.get(name)
        if (got.lower() if isinstance(got, str) else got) != value:
            return f"{name} is {got!r}, the header says {value!r}"
    if claimed.get("verified") is not True:
        return "the node did not verify it"
    return None
