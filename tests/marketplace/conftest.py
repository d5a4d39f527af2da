"""Fixtures for the API suite only (the shared ones live in tests/conftest.py)."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Sign-ups here are fixtures, not the subject: hash with MD5 instead of 1,000,000 PBKDF2 rounds.

    The test that checks how passwords are stored puts the production hashers back.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
