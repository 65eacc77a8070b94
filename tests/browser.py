"""Playwright driving Debian's chromium. Playwright cannot download browsers here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"

# The closed network refuses Chromium's background calls home; these flags stop them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        message = (
            f"chromium is not installed at {CHROMIUM}; the browser tests need Debian's "
            "chromium package (.ci/run installs it)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return request.param


def _open_page(browser: Any, viewport: dict[str, int], *, javascript: bool) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def page(browser: Any, viewport: dict[str, int]) -> Iterator[Any]:
    yield from _open_page(browser, viewport, javascript=True)


@pytest.fixture
def no_script_page(browser: Any, viewport: dict[str, int]) -> Iterator[Any]:
    """A page in a browser with JavaScript switched off: the plain-HTML path."""
    yield from _open_page(browser, viewport, javascript=False)


def assert_fits_viewport(page: Any, where: str = "") -> None:
    """Nothing on the page reaches past the window's width: no sideways scrolling."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, where or page.url
