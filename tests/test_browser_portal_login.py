"""The portal's landing page, login throttling and the admin menu's Log out button in a real
Chromium against the real server. Screenshots land in ``tests/artifacts/portal-*.png``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from redis import Redis

from portal.extensions import db
from portal.models import Admin
from tests.browser import chromium_page, screenshot
from tests.live_portal import fresh_portal, serving

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1}
PASSWORD = "correct horse battery"


@pytest.fixture
def desktop_page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(tmp_path / "chromium-profile", **DESKTOP) as page:
        yield page


@pytest.fixture
def base(
    service_urls: tuple[str, str], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The portal (demo mode, CSRF on) with admins ``ops`` and ``boss``, on a real port."""
    app = fresh_portal(service_urls, monkeypatch)
    app.config["PORTAL_LOGIN_LIMIT_USER"] = "3 per 15 minutes"
    with app.app_context():
        for name in ("ops", "boss"):
            admin = Admin(username=name)
            admin.set_password(PASSWORD)
            db.session.add(admin)
        db.session.commit()
    with serving(app, service_urls) as url:
        yield url


def log_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_throttle_page_then_log_out_for_real(desktop_page: Page, base: str, backend: str) -> None:
    page = desktop_page
    page.goto(f"{base}/")
    expect(page.get_by_role("link", name="SMS admin")).to_be_visible()
    expect(page.get_by_role("link", name="Demo SMS inbox")).to_be_visible()
    screenshot(page, f"portal-{backend}-1-landing")

    page.goto(f"{base}/admin/login")
    for n in range(3):
        log_in(page, "ops", f"guess-{n}")
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    log_in(page, "ops", PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("Try again in 15 minutes.")
    screenshot(page, f"portal-{backend}-2-throttled")

    page.goto(f"{base}/sms/admin/")
    log_in(page, "boss", PASSWORD)
    page.wait_for_url(f"{base}/sms/admin/")
    logout = page.get_by_role("button", name="Log out")
    expect(logout).to_be_visible()
    screenshot(page, f"portal-{backend}-3-menu-with-logout")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["session"]
    copied = requests.get(
        f"{base}/sms/admin/", cookies={"session": cookie}, allow_redirects=False, timeout=10
    )
    assert copied.status_code == 200

    logout.click()
    page.wait_for_url(f"{base}/admin/login")
    copied = requests.get(
        f"{base}/sms/admin/", cookies={"session": cookie}, allow_redirects=False, timeout=10
    )
    assert copied.status_code == 302 and "/admin/login" in copied.headers["Location"]


def test_admin_pages_cannot_be_framed(desktop_page: Page, base: str, backend: str) -> None:
    page = desktop_page
    page.set_content(
        f'<h1>Another site</h1><iframe src="{base}/admin/login" width="600" height="400"></iframe>'
    )
    (frame,) = page.main_frame.child_frames  # set_content waited for its load event
    assert frame.locator("input[name=password]").count() == 0, frame.url  # Chromium refused it
    screenshot(page, f"portal-{backend}-4-framing-refused")
