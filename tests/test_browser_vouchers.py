"""A voucher generated and sent by the admin, then typed by a guest on a phone-sized splash page.

Real Chromium (one phone-like page, widened to desktop size for the admin's part: Playwright's
sync API runs one browser per test), the demo portal over real HTTP, a
real worker process delivering the SMS to the gateway simulator: the code the guest types is
the one the gateway received. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Voucher
from sms_ext import Kind, Message, Status
from tests.browser import (  # noqa: F401 (browser_page_fixture: the fixture)
    PHONE,
    browser_page_fixture,
    screenshot,
)
from tests.live_portal import log_in
from tests.simulator import GatewaySimulator
from tests.test_browser_splash import (  # noqa: F401 (live_portal: the fixture)
    LivePortal,
    fits_the_phone,
    live_portal,
)

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
CODE = re.compile(r"[2-9A-Z]{4}-[2-9A-Z]{4}")


def voucher_texted_to(simulator: GatewaySimulator, phone: str, timeout: float = 15) -> str:
    """The text the gateway received for ``phone``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in simulator.requests_for("custom"):
            if request.json["to"] == phone:
                return str(request.json["text"])
        time.sleep(0.05)
    raise AssertionError(f"No text to {phone} reached the gateway within {timeout} s.")


def test_voucher_sent_by_sms_and_redeemed_on_a_phone(
    browser_page: Page,
    live_portal: LivePortal,  # noqa: F811
    simulator: GatewaySimulator,
    backend: str,
) -> None:
    admin = guest = browser_page
    base = live_portal.url
    admin.set_viewport_size(DESKTOP)

    # -- the admin generates a batch for the demo location --------------------------------
    log_in(admin, base, "/admin/vouchers", "admin", "pw-123456")
    admin.get_by_label("Count").fill("3")
    admin.get_by_label("Duration").fill("2h")
    admin.get_by_label("Data limit (MB)").fill("500")
    admin.locator("form.generate").get_by_label("Location").select_option("demo")
    admin.get_by_label("Batch label").fill("Front desk")
    admin.get_by_role("button", name="Generate").click()
    expect(admin.locator(".flash.ok")).to_have_text("Generated 3 vouchers in batch 'Front desk'.")
    expect(admin.locator("tbody tr")).to_have_count(3)
    screenshot(admin, f"vouchers-{backend}-1-batch")

    # -- and sends the first one by SMS ---------------------------------------------------
    admin.locator("tbody tr").first.locator("a.code").click()
    listed_code = admin.locator("h1 .code").inner_text()
    admin_voucher_url = admin.url
    admin.get_by_label("Phone number").fill("083 123 4567")
    admin.get_by_role("button", name="Send voucher").click()
    expect(admin.locator(".flash.ok")).to_have_text(
        f"Voucher {listed_code} queued to +27 83 ••• 4567."
    )
    text = voucher_texted_to(simulator, "+27831234567")
    assert text.startswith("Your Wi-Fi voucher for Demo Café: ")
    code = CODE.search(text)[0]
    assert code == listed_code
    admin.reload()
    expect(admin.locator("table").first.locator("tbody tr td").last).to_contain_text("sent")
    screenshot(admin, f"vouchers-{backend}-2-sent")

    # -- the guest types it on the splash page, as the phone shows it ---------------------
    query = (
        f"mac=02:00:00:00:00:07&ip=10.0.0.77&link-login-only={base}/demo/controller-login"
        "&link-orig=http%3A%2F%2Fexample.com%2F%3Fa%3D1%26b%3D2"
    )
    guest.set_viewport_size(PHONE["viewport"])
    guest.goto(f"{base}/s/demo/?{query}")
    voucher_form = guest.locator("form", has=guest.locator('input[name="voucher"]'))
    expect(voucher_form).to_be_visible()
    fits_the_phone(guest)
    screenshot(guest, f"vouchers-{backend}-3-splash")

    voucher_form.locator('input[name="voucher"]').fill("ABCD-EFGH")
    voucher_form.locator('input[name="voucher_terms"]').tap()
    with guest.expect_response(lambda r: r.request.method == "POST") as refused:
        voucher_form.get_by_role("button", name="Connect with voucher").tap()
    assert refused.value.status == 400
    expect(guest.locator("#voucher-error")).to_have_text(
        "This voucher code is not valid. Please check it and try again."
    )
    fits_the_phone(guest)
    screenshot(guest, f"vouchers-{backend}-4-wrong-code")

    voucher_form.locator('input[name="voucher"]').fill(code.lower().replace("-", " "))
    if not voucher_form.locator('input[name="voucher_terms"]').is_checked():
        voucher_form.locator('input[name="voucher_terms"]').tap()
    with guest.expect_response(lambda r: r.request.method == "POST") as accepted:
        voucher_form.get_by_role("button", name="Connect with voucher").tap()
    assert accepted.value.status == 303
    guest.wait_for_url(lambda url: url.startswith(f"{base}/demo/controller-login"))
    assert guest.url == f"{base}/demo/controller-login?{query}"
    rows = guest.locator("table tr")
    expect(rows).to_have_count(4)
    shown = [(row.locator("th").inner_text(), row.locator("td").inner_text()) for row in rows.all()]
    assert shown == parse_qsl(query)
    screenshot(guest, f"vouchers-{backend}-5-controller-login")

    # -- the admin sees the device and the state ------------------------------------------
    admin.set_viewport_size(DESKTOP)
    admin.goto(admin_voucher_url)
    expect(admin.locator("dd").first).to_have_text("used")
    expect(admin.get_by_text("02:00:00:00:00:07")).to_be_visible()
    screenshot(admin, f"vouchers-{backend}-6-used")
    admin.goto(f"{base}/admin/vouchers/sheet?batch=Front+desk")
    expect(admin.locator(".voucher")).to_have_count(2)
    screenshot(admin, f"vouchers-{backend}-7-sheet")

    with live_portal.app.app_context():
        voucher = db.session.scalars(select(Voucher).where(Voucher.code == code)).one()
        assert [device.mac for device in voucher.devices] == ["02:00:00:00:00:07"]
        message = live_portal.app.extensions["sms"].session.get(
            Message, voucher.sends[0].message_id
        )
        assert (message.kind, message.status, message.sent_by) == (
            Kind.VOUCHER,
            Status.SENT,
            "admin",
        )
        assert message.customer_ref == f"voucher:{code}"
