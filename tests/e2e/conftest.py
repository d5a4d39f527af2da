"""Browser fixtures: headless Chromium (Debian's, never a downloaded one) through Playwright's
sync API against pytest-django's ``live_server``, with a full-page screenshot helper.

Nothing here may reach beyond 127.0.0.1: the live server binds it, Chromium's background
services are switched off, host names other than 127.0.0.1 do not resolve, and every request
the page makes elsewhere is aborted and fails the test.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

# Playwright's sync API keeps an asyncio loop in the test thread, so Django's guard would refuse
# the (ordinary, blocking) ORM calls that fixtures and database teardown make from that thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# The live server listens on the loopback address itself, not on whatever "localhost" resolves to.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
LOOPBACK = {"127.0.0.1"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def loopback_page(browser: Browser, base_url: str, *, javascript: bool = True) -> Iterator[Page]:
    """A fresh browser profile (no cookies) whose relative URLs point at ``base_url``; any request
    beyond 127.0.0.1 is aborted and fails the test. ``javascript=False`` checks a page works without it."""
    context: BrowserContext = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800},
                                                  java_script_enabled=javascript)
    outside: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    try:
        yield tab
    finally:
        context.close()
    assert not outside, f"the pages tried to reach beyond 127.0.0.1: {outside}"


@pytest.fixture
def page(browser: Browser, live_server: Any) -> Iterator[Page]:
    """A fresh browser profile on the live server."""
    with loopback_page(browser, live_server.url) as tab:
        yield tab


@pytest.fixture
def snap(request: pytest.FixtureRequest, page: Page) -> Callable[[str], Path]:
    """``snap("step")`` saves a full-page screenshot as ``test-output/screenshots/<test>-<step>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(step: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
