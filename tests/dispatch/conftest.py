"""Fixtures for the dispatch tests: the whole marketplace from real parts (see `harness`).

Module-scoped, because it takes ~30 s to start: a Redis server, the web app (gunicorn) and a
Celery worker with beat, all on the test database; a Ray head; and two provider nodes joined
through the real agent. The tests talk to it over HTTP and read the database directly. Every
process is stopped at the end, even after a failure, and the tables are emptied for later tests.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.dispatch.harness import Stack, running_stack


def _test_database_url() -> str:
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@contextmanager
def stack_on_test_database(django_db_blocker: Any, **options: Any) -> Iterator[Stack]:
    """`running_stack` on the test database (``options`` go to it); the tables are emptied after."""
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    try:
        with running_stack(database_url, db_access=django_db_blocker.unblock, **options) as running:
            yield running
    finally:
        with django_db_blocker.unblock():
            from django.core.management import call_command

            call_command("flush", interactive=False, verbosity=0)  # later tests expect empty tables


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any) -> Iterator[Stack]:
    with stack_on_test_database(django_db_blocker) as running:
        yield running


@pytest.fixture
def db_access(django_db_blocker: Any) -> Iterator[None]:
    """Read the shared test database from the test itself (the stack's processes write it)."""
    with django_db_blocker.unblock():
        yield
