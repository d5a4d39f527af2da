"""Artifacts: files a developer uploads as job input, or a job produces as its result."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class ArtifactQuerySet(models.QuerySet["Artifact"]):
    def owned_by(self, user: object) -> ArtifactQuerySet:
        return self.filter(owner=user)


class Artifact(models.Model):
    """One owner's reference to a content-addressed blob (the blob is shared, the row is not)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="artifacts")
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127, default="application/octet-stream")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ArtifactQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "sha256"], name="artifact_unique_per_owner")]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"
