"""Artifacts over the API: content-addressed multipart uploads, downloads, the size limit."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace.models import Artifact
from tests.conftest import upload

ARTIFACTS = "/api/v1/artifacts/"


def blob(sha256: str) -> Path:
    return Path(django_settings.ARTIFACT_ROOT) / sha256[:2] / sha256


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def downloaded(response) -> bytes:
    assert response.status_code == 200
    return b"".join(response.streaming_content)


# --- uploading ---------------------------------------------------------------------------------

def test_it_stores_an_upload_under_its_sha256(developer):
    content = b"block 19000000 as RLP\n" * 100

    response = upload(developer, content, "block.rlp", "application/x-rlp")

    assert response.status_code == 201
    body = response.json()
    sha = hashlib.sha256(content).hexdigest()
    assert {k: body[k] for k in ("sha256", "size", "name", "content_type")} == {
        "sha256": sha, "size": len(content), "name": "block.rlp", "content_type": "application/x-rlp"}
    assert blob(sha).read_bytes() == content
    assert Artifact.objects.get(pk=body["id"]).owner == developer.user


def test_the_same_bytes_twice_give_the_same_artifact(developer):
    first = upload(developer, b"same bytes", "a.bin")

    second = upload(developer, b"same bytes", "b.bin")

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()  # the first name stays
    assert Artifact.objects.count() == 1
    assert len(files_under(Path(django_settings.ARTIFACT_ROOT))) == 1


def test_different_bytes_give_different_artifacts(developer):
    assert upload(developer, b"one").json()["id"] != upload(developer, b"two").json()["id"]
    assert Artifact.objects.count() == 2


def test_two_owners_of_the_same_bytes_get_their_own_rows_and_share_one_blob(developer, other_developer):
    mine = upload(developer, b"shared bytes", "mine.bin")
    theirs = upload(other_developer, b"shared bytes", "theirs.bin")

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert mine.json()["sha256"] == theirs.json()["sha256"]
    assert theirs.json()["name"] == "theirs.bin"
    assert len(files_under(Path(django_settings.ARTIFACT_ROOT))) == 1


def test_an_empty_file_is_an_artifact_too(developer):
    response = upload(developer, b"", "empty")

    assert response.status_code == 201
    assert response.json()["size"] == 0
    assert response.json()["sha256"] == hashlib.sha256(b"").hexdigest()


def test_a_big_upload_streams_through_and_hashes_right(developer, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # forces Django's temporary-file upload handler
    content = os.urandom(3 * 1024 * 1024 + 17)

    response = upload(developer, content)

    assert response.status_code == 201
    assert response.json()["sha256"] == hashlib.sha256(content).hexdigest()
    assert downloaded(developer.client.get(f"{ARTIFACTS}{response.json()['id']}/download/")) == content


@pytest.mark.parametrize(("sent", "kept"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\dave\\block.rlp", "block.rlp"), ("x" * 250 + ".bin", None),
])
def test_it_keeps_only_the_base_name_of_an_upload(developer, sent, kept, tmp_path):
    response = upload(developer, b"content", sent)

    assert response.status_code == 201
    name = response.json()["name"]
    assert "/" not in name and "\\" not in name and 0 < len(name) <= 255
    if kept is not None:
        assert name == kept
    root = Path(django_settings.ARTIFACT_ROOT)
    assert all(root in path.parents for path in files_under(tmp_path))


def test_an_upload_must_be_multipart(developer):
    response = developer.client.post(ARTIFACTS, {"file": "aGVsbG8="}, format="json")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not Artifact.objects.exists()


def test_an_upload_needs_a_file_field(developer):
    response = developer.client.post(ARTIFACTS, {"other": SimpleUploadedFile("a", b"a")}, format="multipart")

    assert response.status_code == 400
    assert not Artifact.objects.exists()


def test_an_upload_refuses_fields_besides_the_file(developer):
    response = developer.client.post(ARTIFACTS, {"file": SimpleUploadedFile("a", b"a"), "name": "b"},
                                     format="multipart")

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_field"
    assert not Artifact.objects.exists()


def test_a_plain_form_value_is_not_a_file(developer):
    response = developer.client.post(ARTIFACTS, {"file": "just text"}, format="multipart")

    assert response.status_code == 400
    assert not Artifact.objects.exists()


# --- the size limit ----------------------------------------------------------------------------

def test_an_upload_of_exactly_the_limit_is_accepted(developer, settings):
    settings.ARTIFACT_MAX_BYTES = 1000
    assert upload(developer, b"x" * 1000).status_code == 201


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_upload_over_the_limit_is_refused_and_leaves_nothing_behind(developer, settings, tmp_path, in_memory):
    settings.ARTIFACT_MAX_BYTES = 1000
    django_temp = tmp_path / "django-uploads"
    django_temp.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(django_temp)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 if in_memory else 100

    response = upload(developer, b"x" * 1001)

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Artifact.objects.exists()
    assert files_under(Path(settings.ARTIFACT_ROOT)) == []
    assert list(django_temp.iterdir()) == []


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(developer, settings):
    settings.ARTIFACT_MAX_BYTES = 1000

    response = upload(developer, b"x" * (1000 + 65 * 1024))

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Artifact.objects.exists()
    assert files_under(Path(settings.ARTIFACT_ROOT)) == []


def test_the_artifact_limit_applies_to_uploads_not_to_other_bodies(developer, settings):
    settings.API_MAX_BODY_BYTES = 2048
    settings.ARTIFACT_MAX_BYTES = 10_000
    assert upload(developer, b"y" * 9000).status_code == 201


# --- reading and downloading -------------------------------------------------------------------

def test_a_developer_downloads_the_exact_bytes(developer):
    content = bytes(range(256)) * 10
    artifact = upload(developer, content, "bytes.bin", "application/x-test").json()

    response = developer.client.get(f"{ARTIFACTS}{artifact['id']}/download/")

    assert downloaded(response) == content
    assert response["Content-Type"] == "application/x-test"
    assert response["Content-Disposition"] == 'attachment; filename="bytes.bin"'
    assert response["ETag"] == f'"{artifact["sha256"]}"'


def test_it_lists_the_callers_artifacts_newest_first(developer, other_developer):
    first, second = upload(developer, b"1").json(), upload(developer, b"2").json()
    upload(other_developer, b"3")

    body = developer.client.get(ARTIFACTS).json()

    assert body["count"] == 2
    assert [a["id"] for a in body["results"]] == [second["id"], first["id"]]


def test_it_reads_one_artifact(developer):
    artifact = upload(developer, b"1", "one.txt").json()
    assert developer.client.get(f"{ARTIFACTS}{artifact['id']}/").json() == artifact


@pytest.mark.parametrize("suffix", ["", "download/"])
def test_another_developers_artifact_is_not_found(developer, other_developer, suffix):
    artifact = upload(developer, b"secret").json()

    response = other_developer.client.get(f"{ARTIFACTS}{artifact['id']}/{suffix}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_an_artifact_whose_blob_vanished_is_reported_missing(developer):
    artifact = upload(developer, b"gone").json()
    blob(artifact["sha256"]).unlink()

    response = developer.client.get(f"{ARTIFACTS}{artifact['id']}/download/")

    assert response.status_code == 404
    assert response.json()["code"] == "artifact_missing"


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("post", ""), ("get", "1/"), ("get", "1/download/")])
def test_artifacts_need_a_token(anon, method, suffix):
    response = getattr(anon, method)(f"{ARTIFACTS}{suffix}")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_an_artifact_cannot_be_deleted_or_replaced_over_the_api(developer):
    artifact = upload(developer, b"keep").json()
    assert developer.client.delete(f"{ARTIFACTS}{artifact['id']}/").status_code == 405
    assert developer.client.put(f"{ARTIFACTS}{artifact['id']}/", {}, format="multipart").status_code == 405
    assert Artifact.objects.filter(pk=artifact["id"]).exists()
