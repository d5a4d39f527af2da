"""Artifacts: content-addressed storage of job inputs and results.

A blob lives once at ``ARTIFACT_ROOT/<sha[:2]>/<sha>`` however many owners uploaded it;
each owner has their own row pointing at it. Uploads stream to a temporary file while the
hash is computed, and are moved into place atomically, so a half-written blob is never seen.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from marketplace.errors import InvalidInput, NotFound, PayloadTooLarge
from marketplace.models import Artifact

CHUNK = 1024 * 1024


def blob_path(sha256: str) -> Path:
    return Path(settings.ARTIFACT_ROOT) / sha256[:2] / sha256


def _stream_to_temp(chunks: Iterable[bytes], limit: int) -> tuple[Path, str, int]:
    root = Path(settings.ARTIFACT_ROOT)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(dir=root / "tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"artifacts are limited to {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), digest.hexdigest(), size


def _place_blob(temp: Path, sha256: str) -> None:
    final = blob_path(sha256)
    if final.exists():
        temp.unlink()
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)


def store_artifact(
    *, owner: User, chunks: Iterable[bytes], name: str, content_type: str = "application/octet-stream"
) -> tuple[Artifact, bool]:
    """Store uploaded bytes; return the owner's artifact and whether it is new.

    Uploading the same bytes twice returns the first artifact (``created`` False).
    """
    name = os.path.basename(name or "").strip() or "artifact"
    if len(name) > 255:
        raise InvalidInput("file name is longer than 255 characters", code="invalid_name", field="file")
    temp, sha256, size = _stream_to_temp(chunks, settings.ARTIFACT_MAX_BYTES)
    _place_blob(temp, sha256)
    existing = Artifact.objects.owned_by(owner).filter(sha256=sha256).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return Artifact.objects.create(owner=owner, sha256=sha256, size=size, name=name,
                                           content_type=content_type[:127] or "application/octet-stream"), True
    except IntegrityError:  # the same owner uploaded the same bytes concurrently
        return Artifact.objects.owned_by(owner).get(sha256=sha256), False


def artifact_of(owner: User, artifact_id: int) -> Artifact:
    """The caller's own artifact, or NotFound (also for other people's)."""
    try:
        return Artifact.objects.owned_by(owner).get(pk=artifact_id)
    except (Artifact.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such artifact") from None


def open_blob(artifact: Artifact):  # type: ignore[no-untyped-def]
    """A binary file object for the artifact's bytes."""
    try:
        return blob_path(artifact.sha256).open("rb")
    except FileNotFoundError:
        raise NotFound("the artifact's content is missing from storage", code="artifact_missing") from None
