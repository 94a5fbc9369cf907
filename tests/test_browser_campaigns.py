"""A campaign from start to end in a real Chromium, against the real portal, a real worker
process and the gateway simulator answering after 100 ms.

The admin creates a campaign from a stored template for the portal's guests, previews it
(counts and reasons checked, then again as the script refreshes the panel while typing), sends
a test, schedules it 20 seconds ahead in the venue's timezone and watches the progress page
(which reloads itself) until it is done; every consenting guest gets exactly one SMS, the
opted-out and the non-consenting none. Then a keyboard-only pass saves a draft on a phone-sized
screen. Screenshots: tests/artifacts/campaign-<backend>-*.png at 1280 and 390 px wide.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from portal.extensions import db, sms
from portal.models import Guest, GuestSession, Location
from sms_ext import MessageTemplate
from sms_ext.models import utcnow
from tests.browser import screenshot
from tests.helpers import custom_gateway
from tests.live_portal import log_in
from tests.simulator import GatewaySimulator
from tests.test_browser_admin import (  # noqa: F401  (fixtures)
    DESKTOP,
    LivePortal,
    desktop_page,
    live_portal,
)

pytestmark = pytest.mark.browser

ZONE = "Europe/Madrid"
PHONE_SIZE = {"width": 390, "height": 844}
CONSENTING = {"+34612345601": "Ana", "+34612345602": "Luis", "+34612345603": "Marta"}
NO_CONSENT = "+34612345604"
OPTED_OUT = "+34612345605"
TEST_NUMBER = "+34612345699"
TEMPLATE = "Hi {{ name }}, free dessert at {{ venue }} this weekend. {{ opt_out }}"
AHEAD = timedelta(seconds=20)
DONE_WITHIN_MS = 120_000


@pytest.fixture
def simulator() -> Iterator[GatewaySimulator]:
    """The gateway simulator answering every request after 100 ms, like a real provider."""
    with GatewaySimulator(latency=0.1) as sim:
        yield sim


def seed(app: Flask, simulator: GatewaySimulator) -> None:
    """One venue in Madrid, five guests seen there, a priced gateway and a campaign template."""
    with app.app_context():
        venue = Location(
            slug="harbour", name="Harbour Café", region="ES", language="en", timezone=ZONE
        )
        db.session.add(venue)
        now = utcnow()
        people = {**CONSENTING, NO_CONSENT: "Pablo", OPTED_OUT: "Sofia"}
        for phone, name in people.items():
            guest = Guest(
                phone=phone,
                name=name,
                marketing_consent=phone != NO_CONSENT,
                consent_at=now if phone != NO_CONSENT else None,
                last_seen=now,
                opted_out_at=now if phone == OPTED_OUT else None,
            )
            db.session.add(guest)
            db.session.add(GuestSession(guest=guest, location=venue, phone=phone, started_at=now))
        sms.opt_outs.add(OPTED_OUT, source="admin", note="Asked at the bar", commit=False)
        db.session.add(
            MessageTemplate(name="Weekend offer", kind="campaign", language="en", body=TEMPLATE)
        )
        db.session.commit()
        gateway = custom_gateway(app, simulator, "main")
        gateway.price_per_part, gateway.currency = Decimal("0.04"), "EUR"
        db.session.commit()


def texts_to(simulator: GatewaySimulator) -> dict[str, list[str]]:
    """Every text the gateway answered, by recipient."""
    found: dict[str, list[str]] = {}
    for request in simulator.requests_for("custom"):
        if request.response_status:
            found.setdefault(request.json["to"], []).append(request.json["text"])
    return found


def wait_for_text_to(simulator: GatewaySimulator, phone: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if phone in texts_to(simulator):
            return texts_to(simulator)[phone][0]
        time.sleep(0.1)
    raise AssertionError(f"No text to {phone} reached the gateway within {timeout} s.")


def expect_preview(page: Page, recipients: str, reasons: dict[str, str]) -> None:
    panel = page.locator("#preview-panel")
    expect(panel.locator("#preview-recipients")).to_have_text(recipients)
    for reason, count in reasons.items():
        expect(panel.locator(f'li[data-reason="{reason}"] strong')).to_have_text(count)


def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (and fail if it never gets it)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"no visible focus on {selector}"
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got the focus by Tab")


def test_campaign_from_template_to_done(
    desktop_page: Page,  # noqa: F811
    live_portal: LivePortal,  # noqa: F811
    simulator: GatewaySimulator,
    backend: str,
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    seed(app, simulator)
    log_in(page, base, "/sms/admin/campaigns/")
    expect(page.locator("h1")).to_have_text("Campaigns")
    page.get_by_role("link", name="New campaign").click()
    expect(page.locator("h1")).to_have_text("New campaign")

    # -- from the template, to the venue's guests; Preview without the script's help -------
    page.get_by_label("Name", exact=True).fill("Weekend offer")
    page.get_by_label("Template").select_option(label="Weekend offer (campaign, en)")
    page.get_by_label("Harbour Café").check()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("h1")).to_have_text("New campaign")
    expect_preview(page, "3", {"opted_out": "1", "no_consent": "1"})
    expect(page.locator("#preview-total-parts")).to_have_text("3")
    expect(page.locator("#preview-cost")).to_contain_text("EUR 0.12")
    expect(page.locator("#campaign-zone")).to_have_text(
        f"{ZONE}, UTC{datetime.now(ZoneInfo(ZONE)).strftime('%z')[:3]}:00"
    )
    expect(page.locator(".samples .sample").first).to_contain_text(
        "free dessert at Harbour Café this weekend. Reply STOP to opt out"
    )
    assert "+346123456" not in page.locator("#preview-panel").inner_text()  # masked numbers
    screenshot(page, f"campaign-{backend}-1-preview-1280")

    # -- the script refreshes the panel while the admin types ------------------------------
    page.get_by_label("Allowed regions").fill("GB")
    expect_preview(page, "0", {"outside_regions": "5"})
    page.get_by_label("Allowed regions").fill("ES")
    expect_preview(page, "3", {"opted_out": "1", "no_consent": "1"})

    # -- a test to one number --------------------------------------------------------------
    page.get_by_label("Test number").fill("+34 612 345 699")
    page.get_by_role("button", name="Send test").click()
    expect(page.locator(".flash.ok")).to_contain_text(
        "Test sent to +34 61 \u2022\u2022\u2022 5699 \u2014 see the SMS log"
    )
    assert "free dessert at Harbour Café" in wait_for_text_to(simulator, TEST_NUMBER)
    expect(page.get_by_label("Name", exact=True)).to_have_value("Weekend offer")

    # -- scheduled 20 seconds ahead, in Madrid time ---------------------------------------
    start = (datetime.now(ZoneInfo(ZONE)) + AHEAD).replace(microsecond=0)
    page.get_by_label("At a date and time").check()
    page.get_by_label("Date", exact=True).fill(start.date().isoformat())
    page.get_by_label("Time", exact=True).fill(start.strftime("%H:%M:%S"))
    page.get_by_role("button", name="Schedule / Start").click()
    expect(page.locator("h1")).to_have_text("Weekend offer")
    expect(page.locator(".flash.ok")).to_have_text("Campaign Weekend offer is scheduled.")
    expect(page.locator("#campaign-scheduled")).to_contain_text(
        f"{start:%Y-%m-%d %H:%M:%S} ({ZONE}, UTC"
    )
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(1)
    screenshot(page, f"campaign-{backend}-2-scheduled-1280")

    # -- the page reloads itself until the campaign is done --------------------------------
    expect(page.locator("#campaign-status")).to_have_text("Done", timeout=DONE_WITHIN_MS)
    expect(page.locator("#campaign-bar")).to_have_attribute("value", "100")
    expect(page.locator('[data-count="sent"]')).to_have_text("3")
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)
    simulator.wait_idle()
    sent = texts_to(simulator)
    assert {phone: len(texts) for phone, texts in sent.items()} == {
        TEST_NUMBER: 1,
        **dict.fromkeys(CONSENTING, 1),
    }
    for phone, name in CONSENTING.items():
        assert sent[phone] == [
            f"Hi {name}, free dessert at Harbour Café this weekend. Reply STOP to opt out"
        ]
    due = start.astimezone(UTC).timestamp()
    assert all(
        r.received_at >= due - 1  # RQ's scheduler counts whole seconds
        for r in simulator.requests_for("custom")
        if r.json["to"] in CONSENTING
    )
    screenshot(page, f"campaign-{backend}-3-done-1280")
    page.set_viewport_size(PHONE_SIZE)
    screenshot(page, f"campaign-{backend}-4-done-390")

    page.get_by_role("link", name="All campaigns").click()
    expect(page.locator("#campaign-table tbody tr")).to_have_count(1)
    expect(page.locator("#campaign-table tbody tr")).to_contain_text("Done")
    screenshot(page, f"campaign-{backend}-5-list-390")
    page.get_by_role("link", name="Opt-outs", exact=True).click()
    expect(page.locator("#opt-out-table tbody tr")).to_contain_text(
        "+34 61 \u2022\u2022\u2022 5605"
    )
    screenshot(page, f"campaign-{backend}-6-opt-outs-390")
    page.set_viewport_size(DESKTOP["viewport"])
    screenshot(page, f"campaign-{backend}-7-opt-outs-1280")

    # -- keyboard only, on a phone-sized screen: a draft from the template -------------------
    page.set_viewport_size(PHONE_SIZE)
    page.goto(f"{base}/sms/admin/campaigns/new")
    page.locator("body").focus()
    tab_to(page, "#name")
    page.keyboard.type("Keyboard promo")
    tab_to(page, "#template")
    page.keyboard.press("ArrowDown")  # the first stored template
    tab_to(page, 'input[name="locations"]')
    page.keyboard.press("Space")
    tab_to(page, 'button[value="preview"]')
    page.keyboard.press("Enter")
    expect_preview(page, "3", {"opted_out": "1", "no_consent": "1"})
    screenshot(page, f"campaign-{backend}-8-keyboard-preview-390")
    page.locator("body").focus()
    tab_to(page, 'button[value="save"]')
    page.keyboard.press("Enter")
    expect(page.locator(".flash.ok")).to_have_text("Campaign Keyboard promo saved as a draft.")
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    screenshot(page, f"campaign-{backend}-9-keyboard-draft-390")
