"""Real-browser tests: Debian's Chromium driven by Playwright, at a phone's size.

The browser is the system's (``apt-get install chromium``; ``SMS_TEST_CHROMIUM`` names another
binary), never one Playwright downloads. Tests marked ``browser`` are deselected when no binary
is found, unless ``SMS_TEST_CHROMIUM`` or ``CI`` is set: then a missing browser fails them, so
CI cannot pass by running none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The test machine's network is closed: no update checks, field trials or sync to wait on.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
"""A common phone (iPhone 12 to 15 class) in CSS pixels."""
TIMEOUT_MS = 15_000
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
"""Screenshots of browser tests (git-ignored)."""


def chromium_path() -> str:
    """The Chromium binary the browser tests use."""
    return os.environ.get("SMS_TEST_CHROMIUM") or DEFAULT_CHROMIUM


def chromium_found() -> bool:
    path = chromium_path()
    return os.path.isfile(path) and os.access(path, os.X_OK)


def browser_required() -> bool:
    """CI (or whoever names a binary) wants the browser tests run, never silently dropped."""
    return bool(os.environ.get("SMS_TEST_CHROMIUM") or os.environ.get("CI"))


def browser_status() -> str:
    """One line for the pytest header: which browser, or why browser tests are deselected."""
    if chromium_found():
        return f"browser: {chromium_path()}"
    if browser_required():
        return f"browser: no Chromium at {chromium_path()}: browser tests will FAIL"
    return (
        f"browser: no Chromium at {chromium_path()}: tests marked 'browser' deselected "
        "(apt-get install chromium, or set SMS_TEST_CHROMIUM)"
    )


@contextmanager
def chromium_page(profile: Path, **context_options: Any) -> Iterator[Page]:
    """A page of Debian's Chromium with a fresh profile; fails clearly when there is none.

    ``context_options`` go to Playwright's context (``locale="es-ES"`` for another language)."""
    if not chromium_found():
        pytest.fail(
            f"No Chromium executable at {chromium_path()}. Install Debian's "
            "(apt-get install chromium) or set SMS_TEST_CHROMIUM to a Chromium binary; "
            "Playwright browser downloads are not used.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path(),
            headless=True,
            args=list(CHROMIUM_ARGS),
            **{"locale": "en-US", "color_scheme": "light", **context_options},
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture(name="browser_page")
def browser_page_fixture(tmp_path: Path) -> Iterator[Page]:
    """``browser_page``: a fresh Chromium profile with one page, phone-sized, touch, 2x pixels.

    Import it into the test module that uses it (``name=`` keeps the argument from shadowing
    the import).
    """
    with chromium_page(tmp_path / "chromium-profile", **PHONE) as page:
        yield page


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``tests/artifacts/<name>.png`` and return the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
