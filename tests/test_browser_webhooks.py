"""The webhook part of a custom gateway's page in a real Chromium at a phone's size: the
mapping is typed and saved with the rest of the form, the full URL is revealed from the
keyboard, and "New token" changes it. Screenshots in ``tests/artifacts/webhooks-*.png``."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from sms_ext import Gateway
from tests.browser import ARTIFACTS, browser_page_fixture, screenshot  # noqa: F401  (fixture)
from tests.helpers import custom_gateway
from tests.live_portal import log_in
from tests.simulator import GatewaySimulator
from tests.test_browser_admin import LivePortal, live_portal  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def test_mapping_reveal_and_new_token_on_a_phone(
    browser_page: Page,
    live_portal: LivePortal,  # noqa: F811
    simulator: GatewaySimulator,
) -> None:
    page, base, app = browser_page, live_portal.url, live_portal.app
    with app.app_context():
        gateway = custom_gateway(app, simulator, "BulkSMS")
        gateway_id, old_token = gateway.id, gateway.hook_token
    log_in(page, base, f"/sms/admin/gateways/{gateway_id}/")

    page.get_by_label("Status", exact=True).fill("stat")
    page.get_by_label("Status mapping").fill("1=delivered\n2=undelivered")
    page.get_by_role("button", name="Save gateway").click()
    expect(page.get_by_text("Gateway BulkSMS saved.")).to_be_visible()
    expect(page.get_by_label("Status mapping")).to_have_value("1=delivered\n2=undelivered")

    webhooks = page.locator("#webhooks")
    expect(webhooks.get_by_text(f"/sms/hooks/custom/{gateway_id}/••••")).to_have_count(2)
    assert old_token not in webhooks.inner_text()
    summary = webhooks.get_by_text("Show the full URL").first
    summary.focus()
    page.keyboard.press("Enter")  # <details> opens from the keyboard
    full = webhooks.get_by_label("Delivery receipts: full URL")
    expect(full).to_be_visible()
    expect(full).to_have_value(f"{base}/sms/hooks/custom/{gateway_id}/{old_token}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1, "the page scrolls sideways on a phone"
    screenshot(page, "webhooks-phone")
    webhooks.screenshot(path=ARTIFACTS / "webhooks-urls-phone.png")
    page.locator("#webhook-fields").screenshot(path=ARTIFACTS / "webhooks-fields-phone.png")

    webhooks.get_by_role("button", name="New token").click()
    expect(page.get_by_text("new webhook token")).to_be_visible()
    with app.app_context():
        session = app.extensions["sms"].session
        session.expire_all()
        new_token = session.get(Gateway, gateway_id).hook_token
    assert new_token and new_token != old_token
    screenshot(page, "webhooks-new-token")
