"""A balance check in a real Chromium: configure it on a custom gateway, run it with "Check
now" (mouse, then keyboard), see the history chart, its table and the low-balance banner, on a
desktop and on a phone-sized screen. Screenshots land in ``tests/artifacts/balance-*.png``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from sms_ext import Gateway
from tests.balance_servers import BalanceProvider, provider_server
from tests.browser import ARTIFACTS, screenshot
from tests.live_portal import log_in
from tests.test_browser_admin import (  # noqa: F401  (fixtures)
    LivePortal,
    desktop_page,
    live_portal,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def provider() -> Iterator[BalanceProvider]:
    yield from provider_server()


def test_configure_check_see_history_and_banner(
    desktop_page: Page,  # noqa: F811
    live_portal: LivePortal,  # noqa: F811
    provider: BalanceProvider,
    backend: str,
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    log_in(page, base, "/sms/admin/")
    page.goto(f"{base}/sms/admin/gateways/new?type=custom")
    page.get_by_label("Name", exact=True).fill("Venue SMS")
    page.get_by_label("URL", exact=True).fill(f"{provider.url}/send")
    page.get_by_label("Payload").fill("to={phone}&text={message}&key={api_key}")
    page.get_by_label("API key").fill("key-for-the-browser-test")
    page.get_by_label("Check the balance on schedule").check()
    page.get_by_label("How often").select_option("15min")
    page.get_by_label("Minimum balance").fill("50")
    page.get_by_label("Currency").fill("USD")
    page.locator("#balance-check summary").click()
    page.get_by_label("Check URL").fill(f"{provider.url}/balance?key={{api_key}}")
    page.get_by_label("Balance field").fill("data.account")  # a typo first
    page.get_by_label("Balance field").fill("data..balance")
    page.get_by_role("button", name="Save gateway").click()
    expect(page.locator("#balance-field-error")).to_contain_text("dotted path")
    expect(page.get_by_label("Balance field")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("API key").fill("key-for-the-browser-test")
    page.get_by_label("Balance field").fill("data.balance")
    page.get_by_role("button", name="Save gateway").click()
    expect(page.get_by_text("Gateway Venue SMS saved.")).to_be_visible()
    with app.app_context():
        gateway = app.extensions["sms"].session.scalar(select(Gateway))
        assert gateway.balance_check["field"] == "data.balance"
        assert gateway.balance_check["period"] == "15min"

    provider.say('{"data": {"balance": 120}}')
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_text("Venue SMS: balance 120.")).to_be_visible()
    expect(page.locator(".balance-alert")).to_have_count(0)
    provider.say('{"data": {"balance": 30.5}}')
    page.get_by_role("button", name="Check now").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Venue SMS: balance 30.5.")).to_be_visible()
    banner = page.locator(".balance-alert")
    expect(banner).to_contain_text("Venue SMS is below its minimum (30.5 USD)")
    chart = page.locator("#balance svg[role=img]")
    expect(chart).to_be_visible()
    assert chart.locator("polyline").get_attribute("points").count(",") == 2
    page.locator("#balance summary").click()
    expect(page.locator("#balance table")).to_contain_text("30.5 USD")
    expect(page.locator("#balance table")).to_contain_text("120 USD")
    page.locator("#balance").scroll_into_view_if_needed()
    screenshot(page, f"balance-gateway-page-desktop-{backend}")

    provider.say("<html>down</html>", content_type="text/html")
    page.get_by_role("button", name="Check now").click()
    expect(page.locator("#balance-error")).to_contain_text(
        "the answer is not JSON, so it has no field data.balance"
    )
    page.goto(f"{base}/sms/admin/")
    expect(page.locator(".balance-alert")).to_contain_text("below its minimum")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, f"balance-dashboard-banner-phone-{backend}")
    page.goto(f"{base}/sms/admin/gateways/{gateway.id}/#balance")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] <= 390
    screenshot(page, f"balance-gateway-page-phone-{backend}")
    page.locator("#balance summary").click()
    page.locator("#balance").screenshot(path=ARTIFACTS / f"balance-section-phone-{backend}.png")
